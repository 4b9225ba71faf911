# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Verify detached minisign signatures (https://jedisct1.github.io/minisign/) with Ed25519 from ``cryptography``.

Private to the payments.deploy collection: the interface may change without notice.

Formats (base64 lines; the other lines are comments)::

    public key  = "Ed" | key_id 8 | ed25519 public key 32
    signature   = untrusted comment line
                  base64("Ed" or "ED" | key_id 8 | signature 64)
                  "trusted comment: " text
                  base64(global signature 64)

``Ed`` (legacy) signs the file itself, ``ED`` signs the BLAKE2b-512 digest of the file. The global signature covers the
file signature followed by the trusted comment's text, so the trusted comment cannot be changed either. Key ids are
shown the way minisign shows them: the 8 bytes as a little-endian integer in upper-case hex.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import traceback
import typing as t

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None

TRUSTED_PREFIX = "trusted comment: "
UNTRUSTED_PREFIX = "untrusted comment:"
LEGACY, PREHASHED = b"Ed", b"ED"
CHUNK = 1 << 20


class SignatureError(Exception):
    """The signature or a key is malformed, or the signature does not verify."""


class PublicKey(t.NamedTuple):
    key_id: bytes
    key: bytes


class Signature(t.NamedTuple):
    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes


class Verified(t.NamedTuple):
    key_id: str
    algorithm: str
    trusted_comment: str


def key_id_text(key_id: bytes) -> str:
    """The key id as minisign prints it."""
    return f"{int.from_bytes(key_id, 'little'):X}"


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise SignatureError(f"{what} is not valid base64") from error


def parse_public_key(text: str) -> PublicKey:
    """A public key: the base64 line alone, or a whole minisign.pub (its comment line is skipped)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.lower().startswith(UNTRUSTED_PREFIX)]
    if len(lines) != 1:
        raise SignatureError("a public key must be one base64 line (optionally after its untrusted comment)")
    raw = _b64(lines[0], "the public key")
    if len(raw) != 42 or raw[:2] != LEGACY:
        raise SignatureError("the public key is not a minisign Ed25519 key (42 bytes starting with 'Ed')")
    return PublicKey(raw[2:10], raw[10:])


def parse_signature(text: str) -> Signature:
    """A .minisig file's four lines."""
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    if len(lines) != 4 or not lines[0].startswith(UNTRUSTED_PREFIX) or not lines[2].startswith(TRUSTED_PREFIX):
        raise SignatureError("the signature file is not in minisign format (untrusted comment, signature, "
                             "trusted comment, global signature)")
    raw = _b64(lines[1], "the signature")
    if len(raw) != 74:
        raise SignatureError("the signature line does not hold 74 bytes")
    if raw[:2] not in (LEGACY, PREHASHED):
        raise SignatureError(f"unsupported signature algorithm {raw[:2]!r} (expected 'Ed' or 'ED')")
    global_signature = _b64(lines[3], "the global signature")
    if len(global_signature) != 64:
        raise SignatureError("the global signature does not hold 64 bytes")
    return Signature(raw[:2], raw[2:10], raw[10:], lines[2][len(TRUSTED_PREFIX):], global_signature)


def _signed_message(path: str, algorithm: bytes) -> bytes:
    if algorithm == LEGACY:
        with open(path, "rb") as handle:
            return handle.read()
    digest = hashlib.blake2b(digest_size=64)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.digest()


def verify_file(path: str, signature_text: str, public_keys: t.Sequence[str]) -> Verified:
    """Check ``path`` against a minisign signature made by one of ``public_keys``; raise SignatureError otherwise.

    Both the file signature and the global signature (over the trusted comment) must verify.
    """
    if not HAS_CRYPTOGRAPHY:
        raise RuntimeError("the cryptography package is required")
    signature = parse_signature(signature_text)
    keys = [parse_public_key(key) for key in public_keys]
    matching = [key for key in keys if key.key_id == signature.key_id]
    if not matching:
        known = ", ".join(key_id_text(key.key_id) for key in keys) or "none"
        raise SignatureError(f"the signature was made with key {key_id_text(signature.key_id)}, "
                             f"which is not a trusted key (trusted: {known})")
    public = Ed25519PublicKey.from_public_bytes(matching[0].key)
    try:
        public.verify(signature.signature, _signed_message(path, signature.algorithm))
    except InvalidSignature as error:
        raise SignatureError(f"the signature of key {key_id_text(signature.key_id)} does not match the file's "
                             "content") from error
    try:
        public.verify(signature.global_signature, signature.signature + signature.trusted_comment.encode("utf-8"))
    except InvalidSignature as error:
        raise SignatureError("the global signature does not match the trusted comment (it was changed)") from error
    return Verified(key_id_text(signature.key_id), signature.algorithm.decode("ascii"), signature.trusted_comment)
