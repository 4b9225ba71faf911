"""release_signature: what a missing signature or key means with and without `required`, and a real minisign signature
passing; release_unpack: check mode writes nothing, a wrong manifest leaves no staging directory, a re-run re-checks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
import grp
import shutil
import subprocess
import tarfile
import typing as t
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.modules import release_signature, release_unpack

MINISIGN = shutil.which("minisign")
KEY = "RWQIhIIqHrFUUwsmeu2tQvX0DI2kXbZRvCM5DQutUAOYcSdWxxHYWAcs"


def run(capsys: pytest.CaptureFixture[str], main: t.Callable[[], None], args: dict[str, t.Any],
        check: bool = False) -> dict[str, t.Any]:
    args = {**args, "_ansible_check_mode": check}
    with patch_module_args(args), pytest.raises(SystemExit):
        main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture()
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "payment-service-1.0.0.tar.gz"
    path.write_bytes(b"release bytes")
    return path


@pytest.mark.parametrize(("args", "failed", "message"), [
    ({"required": True, "public_keys": [KEY]}, True, "has no signature (.minisig), and a signature is required"),
    ({"required": True, "public_keys": [], "signature": "x"}, True, "no public key is configured"),
    ({"required": False, "public_keys": [KEY]}, False, "is not signed (no signature required)"),
    ({"required": False, "public_keys": [], "signature": "x"}, False, "the signature was not checked"),
    ({"required": False, "public_keys": [KEY], "signature": "garbage"}, True, "not in minisign format"),
])
def test_missing_signature_or_key(capsys, artifact, args, failed, message):
    result = run(capsys, release_signature.main, {"path": str(artifact), **args})
    assert bool(result.get("failed")) is failed
    assert message in result["msg"]
    assert result["verified"] is False


@pytest.mark.skipif(MINISIGN is None, reason="the minisign program is not installed")
def test_signature_made_by_minisign_verifies_in_check_mode_too(capsys, artifact, tmp_path):
    subprocess.run([MINISIGN, "-G", "-W", "-p", str(tmp_path / "k.pub"), "-s", str(tmp_path / "k.key")], check=True,
                   capture_output=True)
    subprocess.run([MINISIGN, "-S", "-s", str(tmp_path / "k.key"), "-m", str(artifact)], check=True,
                   capture_output=True)
    args = {"path": str(artifact), "signature_path": f"{artifact}.minisig",
            "public_keys": [(tmp_path / "k.pub").read_text()]}
    for check in (False, True):
        result = run(capsys, release_signature.main, args, check=check)
        assert result["verified"] is True and result["algorithm"] == "ED" and not result["changed"]


def release(path: Path, name: str = "payment-service", version: str = "1.0.0") -> str:
    manifest = json.dumps({"name": name, "version": version, "start_command": "run {port}"}).encode()
    with tarfile.open(path, "w:gz") as tar:
        top = tarfile.TarInfo(f"{name}-{version}")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        info = tarfile.TarInfo(f"{name}-{version}/manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unpack_args(tmp_path: Path, sha256: str) -> dict[str, t.Any]:
    return {"src": str(tmp_path / "a.tar.gz"), "dest": str(tmp_path / "releases" / "1.0.0"), "sha256": sha256,
            "name": "payment-service", "version": "1.0.0", "owner": pwd.getpwuid(os.geteuid()).pw_name,
            "group": grp.getgrgid(os.getegid()).gr_name, "signature_key_id": "ABC"}


def test_unpack_in_check_mode_writes_nothing_then_unpacks_then_rechecks(capsys, tmp_path):
    (tmp_path / "releases").mkdir()
    args = unpack_args(tmp_path, release(tmp_path / "a.tar.gz"))
    result = run(capsys, release_unpack.main, args, check=True)
    assert result["changed"] and list((tmp_path / "releases").iterdir()) == []
    result = run(capsys, release_unpack.main, args)
    assert result["changed"] and result["manifest"]["version"] == "1.0.0" and result["entries"] == 2
    assert sorted(path.name for path in (tmp_path / "releases").iterdir()) == ["1.0.0"]
    result = run(capsys, release_unpack.main, args, check=True)
    assert not result["changed"] and result["signature_key_id"] == "ABC"
    result = run(capsys, release_unpack.main, {**args, "sha256": "b" * 64})
    assert result["failed"] and f"not from the verified artifact {'b' * 64}" in result["msg"]


def test_archive_of_another_release_leaves_nothing_behind(capsys, tmp_path):
    (tmp_path / "releases").mkdir()
    args = unpack_args(tmp_path, release(tmp_path / "a.tar.gz", version="2.0.0"))
    result = run(capsys, release_unpack.main, args)
    assert result["failed"] and "the archive holds payment-service 2.0.0, not payment-service 1.0.0" in result["msg"]
    assert list((tmp_path / "releases").iterdir()) == []


def test_malformed_sha256_is_refused(capsys, tmp_path):
    result = run(capsys, release_unpack.main, unpack_args(tmp_path, "not-a-digest"))
    assert result["failed"] and "is not a sha256 hex digest" in result["msg"]
