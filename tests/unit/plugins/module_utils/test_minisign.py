"""Minisign verification against keys and signatures made by the real minisign program at test time: both formats
(legacy 'Ed' and prehashed 'ED') pass; a changed file, another key, a changed trusted comment and malformed input
fail."""

from __future__ import annotations

import re
import shutil
import subprocess
import typing as t
from pathlib import Path

import pytest

from ansible_collections.payments.deploy.plugins.module_utils import _minisign as minisign

MINISIGN = shutil.which("minisign")
pytestmark = pytest.mark.skipif(
    MINISIGN is None, reason="the minisign program is not installed (apt-get install minisign; make system-packages)")


class KeyPair(t.NamedTuple):
    public: str  # the whole minisign.pub
    secret: Path
    key_id: str  # as minisign prints it in the public key's comment


def make_key(directory: Path, name: str) -> KeyPair:
    public, secret = directory / f"{name}.pub", directory / f"{name}.key"
    subprocess.run([MINISIGN, "-G", "-W", "-p", str(public), "-s", str(secret)], check=True, capture_output=True)
    text = public.read_text()
    [key_id] = re.findall(r"minisign public key ([0-9A-F]+)", text)
    return KeyPair(text, secret, key_id)


def sign(path: Path, key: KeyPair, *, legacy: bool = False, comment: str = "release") -> str:
    signature = path.with_name(path.name + (".legacy" if legacy else "") + ".minisig")
    subprocess.run([MINISIGN, "-S", *(["-l"] if legacy else []), "-s", str(key.secret), "-m", str(path),
                    "-x", str(signature), "-t", comment], check=True, capture_output=True)
    return signature.read_text()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair]:
    directory = tmp_path_factory.mktemp("minisign-keys")
    return make_key(directory, "release"), make_key(directory, "other")


@pytest.fixture()
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "payment-service-1.1.0.tar.gz"
    path.write_bytes(bytes(range(256)) * 64)
    return path


@pytest.mark.parametrize(("legacy", "algorithm"), [(False, "ED"), (True, "Ed")])
def test_signatures_of_both_formats_verify(keys, artifact, legacy, algorithm):
    release, other = keys
    verified = minisign.verify_file(str(artifact), sign(artifact, release, legacy=legacy, comment="v1.1.0"),
                                    [other.public, release.public])
    assert verified == minisign.Verified(release.key_id, algorithm, "v1.1.0")


def test_bare_base64_key_line_is_accepted(keys, artifact):
    release = keys[0]
    key_line = release.public.strip().splitlines()[-1]
    assert minisign.verify_file(str(artifact), sign(artifact, release), [key_line]).key_id == release.key_id


@pytest.mark.parametrize("legacy", [False, True])
def test_changed_file_is_refused(keys, artifact, legacy):
    release = keys[0]
    signature = sign(artifact, release, legacy=legacy)
    data = bytearray(artifact.read_bytes())
    data[100] ^= 1
    artifact.write_bytes(bytes(data))
    with pytest.raises(minisign.SignatureError, match="does not match the file's content"):
        minisign.verify_file(str(artifact), signature, [release.public])


def test_signature_of_an_untrusted_key_is_refused(keys, artifact):
    release, other = keys
    with pytest.raises(minisign.SignatureError, match=f"made with key {other.key_id}, which is not a trusted key "
                                                      rf"\(trusted: {release.key_id}\)"):
        minisign.verify_file(str(artifact), sign(artifact, other), [release.public])


def test_key_id_swapped_into_a_signature_is_refused(keys, artifact):
    """Another key's signature relabelled with the trusted key's id still fails: the Ed25519 check decides."""
    release, other = keys
    lines = sign(artifact, other).splitlines()
    raw = bytearray(minisign.base64.b64decode(lines[1]))
    raw[2:10] = minisign.parse_public_key(release.public).key_id
    lines[1] = minisign.base64.b64encode(bytes(raw)).decode()
    with pytest.raises(minisign.SignatureError, match="does not match the file's content"):
        minisign.verify_file(str(artifact), "\n".join(lines) + "\n", [release.public])


def test_changed_trusted_comment_is_refused(keys, artifact):
    release = keys[0]
    signature = sign(artifact, release, comment="release 1.1.0").replace("release 1.1.0", "release 9.9.9")
    with pytest.raises(minisign.SignatureError, match="global signature does not match the trusted comment"):
        minisign.verify_file(str(artifact), signature, [release.public])


def test_untrusted_comment_is_not_covered(keys, artifact):
    release = keys[0]
    lines = sign(artifact, release).splitlines()
    lines[0] = "untrusted comment: anything at all"
    assert minisign.verify_file(str(artifact), "\n".join(lines), [release.public]).key_id == release.key_id


@pytest.mark.parametrize(("text", "message"), [
    ("", "not in minisign format"),
    ("untrusted comment: x\nAAAA\ntrusted comment: y\n", "not in minisign format"),
    ("untrusted comment: x\n!!!\ntrusted comment: y\nAAAA\n", "not valid base64"),
    ("untrusted comment: x\nAAAA\ntrusted comment: y\nAAAA\n", "does not hold 74 bytes"),
])
def test_malformed_signatures_are_refused(keys, artifact, text, message):
    with pytest.raises(minisign.SignatureError, match=message):
        minisign.verify_file(str(artifact), text, [keys[0].public])


def test_unknown_algorithm_is_refused(keys, artifact):
    release = keys[0]
    lines = sign(artifact, release).splitlines()
    raw = bytearray(minisign.base64.b64decode(lines[1]))
    raw[0:2] = b"XX"
    lines[1] = minisign.base64.b64encode(bytes(raw)).decode()
    with pytest.raises(minisign.SignatureError, match="unsupported signature algorithm"):
        minisign.verify_file(str(artifact), "\n".join(lines), [release.public])


@pytest.mark.parametrize("key", ["not base64!", "AAAA", "untrusted comment: a\nRWQ=\nRWQ=\n"])
def test_malformed_public_keys_are_refused(key):
    with pytest.raises(minisign.SignatureError):
        minisign.parse_public_key(key)
