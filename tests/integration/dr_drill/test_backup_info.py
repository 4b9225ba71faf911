"""payments.deploy.backup_info against a real store of real pg_backup backups: an empty store, the newest of several
chosen, a tampered manifest or object skipped as unverified (and named), and a max_age the newest backup exceeds
failing with the age and the limit; a missing object skipped as unverified, and fail_on_stale=false returning what is
stale without failing."""

from __future__ import annotations

import json
import time
from pathlib import Path

from drill_world import PostgresCluster, backup_info, take_backup


def info_args(workdir: Path, database: str, key: str, **extra: object) -> dict[str, object]:
    return {"database": database, "src_dir": str(workdir / "backups"), "encryption_key": key, **extra}


def test_an_empty_store_has_no_backup(collections_dir: Path, workdir: Path, key: str) -> None:
    (workdir / "backups").mkdir()
    result = backup_info(collections_dir, info_args(workdir, "payments", key))
    assert result.get("failed") is not True, result
    assert result["backup"] is None and result["manifests_found"] == 0
    stale = backup_info(collections_dir, info_args(workdir, "payments", key, max_age="26h"))
    assert stale.get("failed") is True and "payments" in stale["msg"]


def test_the_newest_verified_backup_is_chosen_and_a_tampered_one_is_named(
        collections_dir: Path, cluster: PostgresCluster, service_db: str, workdir: Path, key: str) -> None:
    older = take_backup(collections_dir, cluster, service_db, workdir / "backups", key)
    time.sleep(1.1)  # backup ids carry the second
    newest = take_backup(collections_dir, cluster, service_db, workdir / "backups", key)
    result = backup_info(collections_dir, info_args(workdir, service_db, key))
    assert result.get("failed") is not True, result
    assert result["manifests_found"] == 2
    assert result["backup"]["backup_id"] == newest["backup_id"] and result["unverified"] == []
    assert result["backup"]["sha256"] == newest["sha256"] and 0 <= result["backup"]["age_seconds"] < 600

    # a manifest edited after the fact fails its MAC: the older, intact backup is the newest verified one
    [manifest] = [path for path in (workdir / "backups").rglob("*.json") if newest["backup_id"] in path.name]
    data = json.loads(manifest.read_text())
    data["row_counts"] = {name: count + 1 for name, count in (data.get("row_counts") or {"public.payments": 0}).items()}
    manifest.write_text(json.dumps(data))
    result = backup_info(collections_dir, info_args(workdir, service_db, key))
    assert result["backup"]["backup_id"] == older["backup_id"]
    assert [entry["backup_id"] for entry in result["unverified"]] == [newest["backup_id"]]


def test_a_backup_older_than_max_age_fails_naming_its_age_and_the_limit(
        collections_dir: Path, cluster: PostgresCluster, service_db: str, workdir: Path, key: str) -> None:
    take_backup(collections_dir, cluster, service_db, workdir / "backups", key)
    time.sleep(2)
    result = backup_info(collections_dir, info_args(workdir, service_db, key, max_age="1s"))
    assert result.get("failed") is True, result
    assert "1s" in result["msg"] or "1 s" in result["msg"] or "second" in result["msg"], result["msg"]
    fresh = backup_info(collections_dir, info_args(workdir, service_db, key, max_age="1h"))
    assert fresh.get("failed") is not True and fresh["stale"] == [], fresh


def test_a_backup_whose_object_is_missing_is_unverified_and_named(
        collections_dir: Path, cluster: PostgresCluster, service_db: str, workdir: Path, key: str) -> None:
    older = take_backup(collections_dir, cluster, service_db, workdir / "backups", key)
    time.sleep(1.1)  # backup ids carry the second
    newest = take_backup(collections_dir, cluster, service_db, workdir / "backups", key)
    [stored] = [path for path in (workdir / "backups").iterdir()
                if path.name.startswith(newest["backup_id"]) and not path.name.endswith(".json")]
    stored.unlink()
    result = backup_info(collections_dir, info_args(workdir, service_db, key))
    assert result.get("failed") is not True, result
    assert result["backup"]["backup_id"] == older["backup_id"] and result["manifests_found"] == 2
    [skipped] = result["unverified"]
    assert skipped["backup_id"] == newest["backup_id"]
    assert "missing" in skipped["reason"] and str(stored) in skipped["reason"], skipped


def test_fail_on_stale_false_reports_every_stale_backup_without_failing(
        collections_dir: Path, cluster: PostgresCluster, service_db: str, workdir: Path, key: str) -> None:
    # the daily maintenance report collects its breaches this way and fails only at its end
    (workdir / "backups").mkdir()
    empty = backup_info(collections_dir, info_args(workdir, service_db, key, max_age="26h", fail_on_stale=False))
    assert empty.get("failed") is not True, empty
    assert empty["backup"] is None and len(empty["stale"]) == 1 and service_db in empty["stale"][0]
    take_backup(collections_dir, cluster, service_db, workdir / "backups", key)
    time.sleep(2)
    old = backup_info(collections_dir, info_args(workdir, service_db, key, max_age="1s", fail_on_stale=False))
    assert old.get("failed") is not True and old["backup"] is not None, old
    assert len(old["stale"]) == 1 and "1s" in old["stale"][0] and service_db in old["stale"][0], old["stale"]
    assert old["backup"]["age_seconds"] >= 2
    assert key not in json.dumps(old) and key not in json.dumps(empty)
