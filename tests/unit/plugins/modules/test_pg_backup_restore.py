"""Unit tests of pg_restore_backup's input checks: bad input fails before anything is read, connected to or run."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg
from ansible_collections.payments.deploy.plugins.modules import pg_restore_backup

KEY = "a1" * 32


@pytest.fixture(autouse=True)
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise AssertionError(f"nothing may run, but it was called with {args!r}")

    monkeypatch.setattr(pg.psycopg, "connect", forbidden)
    monkeypatch.setattr(pg.subprocess, "Popen", forbidden)
    monkeypatch.setattr(pg.subprocess, "run", forbidden)
    monkeypatch.delenv("ENCRYPTION_KEY", raising=False)


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any]) -> dict[str, t.Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        pg_restore_backup.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("args", "problems"), [
    ({"backup_id": "pay-1", "src_dir": "/b"}, ["encryption_key is missing"]),
    ({"encryption_key": KEY}, ["set exactly one of backup_id and manifest"]),
    ({"encryption_key": KEY, "backup_id": "pay-1", "manifest": "/b/pay-1.manifest.json"}, ["set exactly one of backup_id and manifest"]),
    ({"encryption_key": KEY, "backup_id": "pay-1"}, ["backup_id needs a source: src_dir or s3_bucket"]),
    ({"encryption_key": KEY, "backup_id": "latest", "src_dir": "/b"}, ["backup_id=latest needs target_db"]),
    ({"encryption_key": KEY, "backup_id": "pay-1", "src_dir": "/b", "s3_bucket": "x"}, ["set only one source"]),
    ({"encryption_key": "short", "manifest": "/m.json", "jobs": 0},
     ["encryption_key must be 64 hexadecimal characters (32 bytes) but has 5 characters", "jobs must be at least 1"]),
], ids=["no-key", "no-backup", "both", "no-source", "latest-without-db", "two-sources", "several"])
def test_bad_input_fails_before_anything_runs(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], problems: list[str]) -> None:
    result = run(capsys, args)
    assert result["failed"] is True
    for problem in problems:
        assert problem in result["msg"]
    assert result["commands"] == [] and result["queries"] == []
    assert "short" not in result["msg"]


def test_unreadable_manifest_is_named_and_nothing_is_touched(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = tmp_path / "pay-1.manifest.json"
    manifest.write_text('{"backup_id": "pay-1"}')
    result = run(capsys, {"encryption_key": KEY, "manifest": str(manifest)})
    assert result["msg"] == f"manifest {manifest} lacks database, object, sha256, encryption: not a pg_backup manifest; no database was touched"
    manifest.write_text("{")
    result = run(capsys, {"encryption_key": KEY, "manifest": str(manifest)})
    assert result["msg"].startswith(f"manifest {manifest} is not valid JSON")


def test_target_must_not_be_the_database_connected_to(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = tmp_path / "pay-1.manifest.json"
    manifest.write_text(json.dumps({"backup_id": "pay-1", "database": "payments", "object": "pay-1.dump.zst.enc", "sha256": "0",
                                    "encryption": {}}))
    result = run(capsys, {"encryption_key": KEY, "manifest": str(manifest), "db": "payments"})
    assert "must not be target_db payments" in result["msg"]
