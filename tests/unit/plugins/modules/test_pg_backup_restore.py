"""Unit tests of pg_restore_backup's input checks: bad input fails before anything is read, connected to or run."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _crypto as crypto
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
    ({"encryption_key": KEY, "backup_id": "latest", "src_dir": "/b", "target_db": "host=127.0.0.1 port=5 dbname=x"},
     ["target_db 'host=127.0.0.1 port=5 dbname=x' is not a plain database name", "read as a connection string"]),
    ({"encryption_key": KEY, "backup_id": "latest", "src_dir": "/b", "target_db": "postgresql://evil/x"},
     ["target_db 'postgresql://evil/x' is not a plain database name"]),
    ({"encryption_key": KEY, "backup_id": "../../etc/x", "src_dir": "/b"}, ["backup_id '../../etc/x' is not a backup id"]),
], ids=["no-key", "no-backup", "both", "no-source", "latest-without-db", "two-sources", "several", "conninfo-target", "uri-target",
        "path-id"])
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
    assert result["msg"] == (f"manifest {manifest} refused: it lacks database, created_at, sha256, encryption: not a pg_backup manifest; "
                             "no database was touched")
    manifest.write_text("{")
    result = run(capsys, {"encryption_key": KEY, "manifest": str(manifest)})
    assert result["msg"].startswith(f"manifest {manifest} is not valid JSON")


def test_target_must_not_be_the_database_connected_to(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = tmp_path / "payments-20250101T000000Z-000001.manifest.json"
    manifest.write_text(json.dumps(signed({"backup_id": "payments-20250101T000000Z-000001", "database": "payments", "sha256": "0" * 64,
                                           "created_at": "2025-01-01T00:00:00.000000Z", "encryption": {}})))
    result = run(capsys, {"encryption_key": KEY, "manifest": str(manifest), "db": "payments"})
    assert "must not be target_db payments" in result["msg"]


def signed(manifest: dict[str, t.Any], key: str = KEY) -> dict[str, t.Any]:
    return {**manifest, "mac": crypto.manifest_mac(bytes.fromhex(key), manifest)}


GOOD = {"backup_id": "payments-20250101T000000Z-000001", "database": "payments", "sha256": "0" * 64,
        "created_at": "2025-01-01T00:00:00.000000Z", "encryption": {"key_id": "00" * 8}, "row_counts": {"public.t": 1}}


@pytest.mark.parametrize(("manifest", "problem"), [
    ([GOOD], "it is a JSON list, not an object"),
    ({**GOOD, "encryption": "AES-256-GCM"}, "encryption is not an object"),
    ({**GOOD, "row_counts": {"public.t": None}}, "row_counts is not an object of table names and non-negative integers"),
    ({**GOOD, "database": "host=127.0.0.1 dbname=payments"}, "database 'host=127.0.0.1 dbname=payments' is not a plain database name"),
    ({**GOOD, "backup_id": "../payments-20250101T000000Z-000001"}, "backup_id '../payments-20250101T000000Z-000001' is not an id"),
], ids=["list", "encryption", "null-count", "conninfo-database", "path-id"])
def test_malformed_manifest_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path, manifest: t.Any,
                                                            problem: str) -> None:
    path = tmp_path / "payments-20250101T000000Z-000001.manifest.json"
    path.write_text(json.dumps(manifest))
    result = run(capsys, {"encryption_key": KEY, "manifest": str(path)})
    assert result["failed"] is True
    assert result["msg"].startswith(f"manifest {path} refused: ") and problem in result["msg"], result["msg"]
    assert result["msg"].endswith("no database was touched") and "exception" not in result
    assert result["commands"] == [] and result["queries"] == []


@pytest.mark.parametrize(("edit", "kind", "message"), [
    (lambda m: m.pop("mac"), "unauthenticated", "its manifest carries no authentication code: it was written before manifests were "
                                                "authenticated"),
    (lambda m: m.update(sha256="1" * 64), "tampered", "its manifest failed authentication: it was modified"),
    (lambda m: m.update(created_at="2099-01-01T00:00:00.000000Z"), "tampered", "its manifest failed authentication"),
    (lambda m: m.update(mac=crypto.manifest_mac(bytes(32), {k: v for k, v in m.items() if k != "mac"})), "tampered",
     "its manifest failed authentication"),
    (lambda m: m["encryption"].update(key_id="00" * 8), "wrong_key", "wrong key: backup payments-20250101T000000Z-000001 was "
                                                                     "encrypted with the key whose id is 0000000000000000"),
], ids=["legacy", "sha256", "created_at", "other-key", "key-id"])
def test_unauthenticated_manifest_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                                  edit: t.Callable[[dict[str, t.Any]], t.Any], kind: str, message: str) -> None:
    manifest = signed({**GOOD, "encryption": {"key_id": crypto.key_id(bytes.fromhex(KEY))}})
    edit(manifest)
    path = tmp_path / "payments-20250101T000000Z-000001.manifest.json"
    path.write_text(json.dumps(manifest))
    result = run(capsys, {"encryption_key": KEY, "manifest": str(path)})
    assert result["msg"].startswith(f"backup payments-20250101T000000Z-000001 refused: {message}"), result["msg"]
    assert result["integrity_failure"] == kind and result["msg"].endswith("no database was touched")
    assert result["commands"] == [] and result["queries"] == []


def test_latest_ignores_manifests_it_cannot_authenticate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    forged = {**GOOD, "backup_id": "payments-20990101T000000Z-000002", "created_at": "2099-01-01T00:00:00.000000Z"}
    (tmp_path / "payments-20990101T000000Z-000002.manifest.json").write_text(json.dumps(forged))
    (tmp_path / "payments-20990101T000000Z-000003.manifest.json").write_text(
        json.dumps(signed({**forged, "backup_id": "payments-20990101T000000Z-000003"}, key="b2" * 32)))
    result = run(capsys, {"encryption_key": KEY, "backup_id": "latest", "src_dir": str(tmp_path), "target_db": "payments"})
    assert result["msg"] == (f"no authenticated backup of payments in {tmp_path} (2 manifest(s) there fail authentication with this key "
                             "and were ignored); no database was touched")
