# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Recover the pg_dump archive from an encrypted payments.deploy backup, without Ansible or the collection.

Needs Python 3.9+ with the ``cryptography`` package, and either the ``zstandard`` package or the ``zstd`` program.
The key is read from an environment variable (default ENCRYPTION_KEY) or a file, never from the command line.

    ENCRYPTION_KEY=... payments_backup_recover.py --object ID.dump.zst.enc --manifest ID.manifest.json --output ID.dump
    pg_restore --exit-on-error --no-owner -d NEW_DB ID.dump

Checks, in this order, before anything is written: the manifest's MAC, the object's size and sha256 against the
manifest, the header (magic, version, algorithm, key id, the context computed from the manifest); then every chunk is
authenticated with its associated data while it is decrypted and decompressed. Output goes to a temporary file
renamed into place only once everything passed; with ``--output -`` only authenticated bytes reach stdout.
See README.md beside this file for the format and the exit statuses.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import typing as t

EXIT_OK = 0
EXIT_IO = 1
EXIT_USAGE = 2
EXIT_KEY = 3
EXIT_WRONG_KEY = 4
EXIT_MANIFEST = 5
EXIT_MISMATCH = 6
EXIT_DAMAGED = 7
EXIT_MISSING_LIBRARY = 8

MAGIC = b"PAYBAK"
VERSION_BOUND = 2          # header ends with the 32-byte context
VERSION_UNBOUND = 1        # written by older releases: no context, cannot be tied to a manifest
ALGORITHM = 1              # AES-256-GCM, key from HKDF-SHA256
FIXED_HEADER = struct.Struct(">6sBBI16s4s8s")   # magic, version, algorithm, chunk_size, salt, nonce_prefix, key_id
CONTEXT_BYTES = 32
TAG_BYTES = 16
LARGEST_CHUNK = 64 << 20
CHUNK_KEY_INFO = b"payments.deploy backup v1 AES-256-GCM"
MANIFEST_KEY_INFO = b"payments.deploy backup manifest v1 HMAC-SHA256"
CONTEXT_LABEL = b"payments.deploy backup context v1\0"
# how far from its position a misplaced chunk is looked for, to tell "reordered" from "modified"
SEARCH_WINDOW = 64
READ_SIZE = 1 << 20


class Refused(Exception):
    """The backup cannot be recovered; ``status`` is the exit status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def load_crypto() -> tuple[t.Any, t.Any, t.Any, t.Any]:
    try:
        from cryptography.exceptions import InvalidTag  # pylint: disable=import-outside-toplevel
        from cryptography.hazmat.primitives import hashes  # pylint: disable=import-outside-toplevel
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # pylint: disable=import-outside-toplevel
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise Refused(EXIT_MISSING_LIBRARY, "the Python package 'cryptography' is required "
                                            "(pip install cryptography, or apt-get install python3-cryptography)") from None
    return InvalidTag, hashes, AESGCM, HKDF


def hkdf_sha256(key: bytes, salt: bytes | None, info: bytes) -> bytes:
    primitives = load_crypto()
    hashes, hkdf = primitives[1], primitives[3]
    return hkdf(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def read_key(env_name: str, key_file: str | None) -> bytes:
    """32 bytes from 64 hex characters; messages never show the value."""
    if key_file:
        try:
            with open(key_file, encoding="ascii", errors="replace") as handle:
                value, origin = handle.read(), f"key file {key_file}"
        except OSError as exc:
            raise Refused(EXIT_KEY, f"cannot read the key file: {exc.strerror}: {key_file}") from None
    else:
        value, origin = os.environ.get(env_name, ""), f"environment variable {env_name}"
    value = value.strip()
    if not value:
        raise Refused(EXIT_KEY, f"no encryption key: {origin} is empty or unset (64 hexadecimal characters expected)")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(value) != 64 or len(key) != 32:
        raise Refused(EXIT_KEY, f"the encryption key in {origin} is not 64 hexadecimal characters (it has {len(value)} characters)")
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).digest()[:8].hex()


def canonical_json(manifest: dict[str, t.Any]) -> bytes:
    body = {name: value for name, value in manifest.items() if name != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def backup_context(manifest: dict[str, t.Any]) -> bytes:
    # json.dumps' default separators (", "): the bytes must be exactly those the writer hashed
    names = json.dumps([manifest["backup_id"], manifest["database"], manifest["created_at"]]).encode()
    return hashlib.sha256(CONTEXT_LABEL + names).digest()


def load_manifest(path: str) -> dict[str, t.Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except OSError as exc:
        raise Refused(EXIT_IO, f"cannot read the manifest: {exc.strerror}: {path}") from None
    except ValueError as exc:
        raise Refused(EXIT_MANIFEST, f"the manifest {path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise Refused(EXIT_MANIFEST, f"the manifest {path} is not a JSON object")
    problems = [name for name in ("backup_id", "database", "created_at", "sha256", "mac") if not isinstance(manifest.get(name), str)]
    encryption = manifest.get("encryption")
    if not isinstance(encryption, dict) or not isinstance(encryption.get("key_id"), str):
        problems.append("encryption.key_id")
    if problems:
        raise Refused(EXIT_MANIFEST, f"the manifest {path} lacks {', '.join(problems)}: not a payments.deploy backup manifest "
                                     "(manifests written before they carried a MAC cannot be authenticated)")
    return manifest


def authenticate_manifest(manifest: dict[str, t.Any], key: bytes) -> None:
    expected = manifest["encryption"]["key_id"]
    if expected != key_id(key):
        raise Refused(EXIT_WRONG_KEY, f"wrong key: backup {manifest['backup_id']} was encrypted with the key whose id is {expected}, "
                                      f"but the given key has id {key_id(key)}")
    mac_key = hkdf_sha256(key, None, MANIFEST_KEY_INFO)
    wanted = "hmac-sha256:" + hmac.new(mac_key, canonical_json(manifest), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(manifest["mac"], wanted):
        raise Refused(EXIT_MANIFEST, f"the manifest of backup {manifest['backup_id']} failed authentication (MAC): "
                                     "it was modified after the backup was written")


def check_object_size(path: str, manifest: dict[str, t.Any]) -> None:
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise Refused(EXIT_IO, f"cannot read the object: {exc.strerror}: {path}") from None
    stored = (manifest.get("sizes") or {}).get("stored_bytes")
    if isinstance(stored, int) and size != stored:
        raise Refused(EXIT_MISMATCH, f"the object {path} has {size} bytes, but the manifest of backup {manifest['backup_id']} "
                                     f"records {stored}: truncated, extended or another backup's object")


def check_object_digest(path: str, digest: str, manifest: dict[str, t.Any]) -> None:
    if digest != manifest["sha256"]:
        raise Refused(EXIT_MISMATCH, f"sha256 of {path} is {digest}, but the manifest of backup {manifest['backup_id']} "
                                     f"records {manifest['sha256']}: the object was modified or is another backup's object")


def check_object_file(path: str, manifest: dict[str, t.Any]) -> None:
    """Size and sha256 against the manifest, before a byte is decrypted (a pass of its own: about a tenth of the time of
    the decryption and decompression that follow)."""
    check_object_size(path, manifest)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(READ_SIZE), b""):
                digest.update(block)
    except OSError as exc:
        raise Refused(EXIT_IO, f"cannot read the object: {exc.strerror}: {path}") from None
    check_object_digest(path, digest.hexdigest(), manifest)


class ChunkOpener:
    """Decrypts the records of one object in order, authenticating each with header | index u64 | last flag u8."""

    def __init__(self, key: bytes, header: bytes, salt: bytes, nonce_prefix: bytes) -> None:
        primitives = load_crypto()
        self.invalid_tag = primitives[0]
        self.aead = primitives[2](hkdf_sha256(key, salt, CHUNK_KEY_INFO))
        self.header = header
        self.prefix = nonce_prefix

    def attempt(self, sealed: bytes, index: int, last: bool) -> bytes | None:
        nonce = self.prefix + struct.pack(">Q", index)
        try:
            return self.aead.decrypt(nonce, sealed, self.header + struct.pack(">QB", index, 1 if last else 0))
        except self.invalid_tag:
            return None

    def open(self, sealed: bytes, index: int, last: bool) -> bytes:
        plain = self.attempt(sealed, index, last)
        if plain is not None:
            return plain
        if last and self.attempt(sealed, index, False) is not None:
            raise Refused(EXIT_DAMAGED, f"the object is truncated: it ends after chunk {index}, which is intact but is not the last chunk")
        for other in range(max(0, index - SEARCH_WINDOW), index + SEARCH_WINDOW):
            for flag in (False, True):
                if (other, flag) != (index, last) and self.attempt(sealed, other, flag) is not None:
                    raise Refused(EXIT_DAMAGED, f"chunk {other} was found at position {index}: chunks were reordered, duplicated or removed")
        raise Refused(EXIT_DAMAGED, f"chunk {index} failed authentication: the object was modified or is corrupt")


def read_header(handle: t.BinaryIO, manifest: dict[str, t.Any], key: bytes) -> tuple[bytes, int, bytes, bytes]:
    fixed = handle.read(FIXED_HEADER.size)
    if len(fixed) < FIXED_HEADER.size:
        raise Refused(EXIT_DAMAGED, f"the object is truncated: {len(fixed)} bytes, shorter than a header")
    magic, version, algorithm, chunk_size, salt, prefix, kid = FIXED_HEADER.unpack(fixed)
    if magic != MAGIC:
        raise Refused(EXIT_DAMAGED, "the object is not a payments.deploy encrypted backup (bad magic bytes)")
    if version == VERSION_UNBOUND:
        raise Refused(EXIT_MISMATCH, "the object is in format version 1, which does not bind it to its backup: "
                                     "it cannot be told apart from another backup's object")
    if version != VERSION_BOUND or algorithm != ALGORITHM:
        raise Refused(EXIT_DAMAGED, f"unsupported format version {version} / algorithm {algorithm} (this script reads version 2, algorithm 1)")
    if not 1 <= chunk_size <= LARGEST_CHUNK:
        raise Refused(EXIT_DAMAGED, f"the header declares an impossible chunk size {chunk_size}: modified or corrupt")
    if kid.hex() != key_id(key):
        raise Refused(EXIT_WRONG_KEY, f"wrong key: the object was encrypted with the key whose id is {kid.hex()}, "
                                      f"but the given key has id {key_id(key)}")
    context = handle.read(CONTEXT_BYTES)
    if len(context) < CONTEXT_BYTES:
        raise Refused(EXIT_DAMAGED, "the object is truncated inside its header")
    if not hmac.compare_digest(context, backup_context(manifest)):
        raise Refused(EXIT_MISMATCH, f"the object was made for another backup than {manifest['backup_id']} (its header binds a "
                                     "different backup id, database or creation time): objects were swapped or copied")
    return fixed + context, chunk_size, salt, prefix


def read_record(handle: t.BinaryIO, index: int, chunk_size: int) -> bytes | None:
    """The sealed bytes of the next record, None at the end of the object."""
    length_bytes = handle.read(4)
    if not length_bytes:
        return None
    if len(length_bytes) < 4:
        raise Refused(EXIT_DAMAGED, f"the object is truncated in the length of chunk {index}")
    (length,) = struct.unpack(">I", length_bytes)
    if not TAG_BYTES <= length <= chunk_size + TAG_BYTES:
        raise Refused(EXIT_DAMAGED, f"chunk {index} declares an impossible length {length}: the object was modified or is corrupt")
    sealed = handle.read(length)
    if len(sealed) < length:
        raise Refused(EXIT_DAMAGED, f"the object is truncated in the middle of chunk {index} ({len(sealed)} of {length} bytes present)")
    return sealed


def decrypted_chunks(handle: t.BinaryIO, manifest: dict[str, t.Any], key: bytes) -> t.Iterator[bytes]:
    """Authenticated plaintext (the zstd stream), chunk by chunk; a record is opened once the next one shows whether it is last."""
    header, chunk_size, salt, prefix = read_header(handle, manifest, key)
    opener = ChunkOpener(key, header, salt, prefix)
    index = 0
    pending = read_record(handle, index, chunk_size)
    if pending is None:
        raise Refused(EXIT_DAMAGED, "the object is truncated: it holds a header but no chunk")
    while True:
        following = read_record(handle, index + 1, chunk_size)
        if following is None:
            yield opener.open(pending, index, last=True)
            break
        if len(pending) != chunk_size + TAG_BYTES:
            raise Refused(EXIT_DAMAGED, f"chunk {index} is shorter than a full chunk but is not the last one: the object was modified or spliced")
        yield opener.open(pending, index, last=False)
        index += 1
        pending = following
    chunks = manifest["encryption"].get("chunks")
    if isinstance(chunks, int) and chunks != index + 1:
        raise Refused(EXIT_MISMATCH, f"the object holds {index + 1} chunks, but the manifest records {chunks}")


class Decompressor:
    """zstd stream -> ``out``: the zstandard package, else the zstd program (its own process writing to ``out``)."""

    def __init__(self, out: t.BinaryIO) -> None:
        self.out = out
        self.written = 0
        try:
            import zstandard  # pylint: disable=import-outside-toplevel
        except ImportError:
            zstandard = None
        self.zstandard = zstandard
        if zstandard is not None:
            self.stream = zstandard.ZstdDecompressor().decompressobj()
            self.process = None
        else:
            program = shutil.which("zstd")
            if program is None:
                raise Refused(EXIT_MISSING_LIBRARY, "neither the Python package 'zstandard' nor the 'zstd' program is installed")
            out.flush()
            self.process = subprocess.Popen([program, "-d", "-q", "-c"], stdin=subprocess.PIPE, stdout=out)  # pylint: disable=consider-using-with

    def write(self, compressed: bytes) -> None:
        if self.process is not None:
            self.process.stdin.write(compressed)
            return
        try:
            data = self.stream.decompress(compressed)
        except self.zstandard.ZstdError as exc:
            raise Refused(EXIT_DAMAGED, f"the decrypted data is not a valid zstd stream: {exc}") from None
        self.written += len(data)
        self.out.write(data)

    def close(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            if self.process.wait() != 0:
                raise Refused(EXIT_DAMAGED, f"zstd -d failed with status {self.process.returncode}: the decrypted data is not a valid zstd stream")
            return
        if not self.stream.eof:
            raise Refused(EXIT_DAMAGED, "the decrypted zstd stream ends before its end-of-frame mark")

    def abort(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def recover_into(out: t.BinaryIO, object_path: str, manifest: dict[str, t.Any], key: bytes) -> int:
    decompressor = Decompressor(out)
    try:
        with open(object_path, "rb", buffering=READ_SIZE) as handle:
            for plain in decrypted_chunks(handle, manifest, key):
                decompressor.write(plain)
        decompressor.close()
    except BaseException:
        decompressor.abort()
        raise
    return decompressor.written


def write_atomically(output: str, object_path: str, manifest: dict[str, t.Any], key: bytes) -> int:
    """Into a temporary file beside ``output`` (mode 0600), renamed only once the whole object passed."""
    directory = os.path.dirname(os.path.abspath(output))
    if os.path.exists(output):
        raise Refused(EXIT_USAGE, f"{output} exists already: remove it or choose another --output")
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(output)}.", suffix=".partial", dir=directory)
    except OSError as exc:
        raise Refused(EXIT_IO, f"cannot create a file in {directory}: {exc.strerror}") from None
    try:
        with os.fdopen(descriptor, "wb") as out:
            written = recover_into(out, object_path, manifest, key)
            out.flush()
            os.fsync(out.fileno())
        written = written or os.stat(temporary).st_size
        expected = (manifest.get("sizes") or {}).get("dump_bytes")
        if isinstance(expected, int) and written != expected:
            raise Refused(EXIT_MISMATCH, f"the recovered archive has {written} bytes, but the manifest records {expected}")
        with open(temporary, "rb") as check:
            if check.read(5) != b"PGDMP":
                raise Refused(EXIT_DAMAGED, "the recovered data is not a pg_dump custom-format archive (no PGDMP signature)")
        os.rename(temporary, output)
    except OSError as exc:
        os.unlink(temporary)
        raise Refused(EXIT_IO, f"cannot write {output}: {exc.strerror}") from None
    except BaseException:
        os.unlink(temporary)
        raise
    return written


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check and decrypt a payments.deploy backup object into the pg_dump custom-format archive it holds.",
        epilog="Exit status: 0 recovered, 1 I/O error, 2 usage, 3 key missing or malformed, 4 wrong key, "
               "5 manifest not authentic, 6 object does not belong to the manifest, 7 object damaged, 8 library missing.")
    parser.add_argument("--object", required=True, help="the backup object, <backup id>.dump.zst.enc")
    parser.add_argument("--manifest", required=True, help="its manifest, <backup id>.manifest.json")
    parser.add_argument("--output", help="where to write the pg_dump archive ('-' for stdout); without it, only check")
    parser.add_argument("--key-env", default="ENCRYPTION_KEY", metavar="NAME",
                        help="environment variable holding the key as 64 hex characters (default: ENCRYPTION_KEY)")
    parser.add_argument("--key-file", metavar="PATH", help="file holding the key as 64 hex characters (instead of --key-env)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        key = read_key(args.key_env, args.key_file)
        manifest = load_manifest(args.manifest)
        authenticate_manifest(manifest, key)
        check_object_file(args.object, manifest)
        if args.output == "-":
            written = recover_into(sys.stdout.buffer, args.object, manifest, key)
            sys.stdout.buffer.flush()
        elif args.output:
            written = write_atomically(args.output, args.object, manifest, key)
        else:
            with open(os.devnull, "wb") as sink:
                written = recover_into(sink, args.object, manifest, key)
    except Refused as exc:
        print(f"payments_backup_recover: backup refused: {exc}", file=sys.stderr)
        return exc.status
    except OSError as exc:
        print(f"payments_backup_recover: I/O error: {exc}", file=sys.stderr)
        return EXIT_IO
    where = args.output if args.output and args.output != "-" else ("stdout" if args.output else "nowhere (check only)")
    amount = f"{written} bytes of pg_dump archive" if written else "the pg_dump archive (decompressed by zstd)"
    print(f"payments_backup_recover: backup {manifest['backup_id']} of database {manifest['database']} authenticated; "
          f"{amount} written to {where}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
