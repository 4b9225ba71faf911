"""Retention, check mode, the manifest's schema fingerprint and migration head, and verification by a real restore."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from pg_backup_helpers import ansible, files_in, run_module, table_contents
from pg_backup_servers import PG_BIN, MotoS3, PostgresCluster


def backup(cluster: PostgresCluster, collections_dir: Path, database: str, key: str, dest: Path, *flags: str, **extra: object) -> dict:
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, "dest_dir": str(dest),
                                                       **extra}, *flags)
    assert result.get("failed") is not True, result.get("msg")
    return result


def test_retention_keeps_the_newest_and_reports_what_it_deleted(cluster: PostgresCluster, small_db: str, workdir: Path, key: str,
                                                                collections_dir: Path) -> None:
    made = [backup(cluster, collections_dir, small_db, key, workdir, verify=False)["backup_id"] for _unused in range(3)]
    # a backup of another database whose name starts the same way is not this database's
    other = {"backup_id": f"{small_db}-archive-20200101T000000Z-000000", "database": f"{small_db}-archive", "created_at": "2020-01-01T00:00:00.000000Z"}
    (workdir / f"{other['backup_id']}.manifest.json").write_text(json.dumps(other))
    assert len(files_in(workdir)) == 7

    check = backup(cluster, collections_dir, small_db, key, workdir, "--check", "--diff", keep=2)
    assert [d["backup_id"] for d in check["deleted"]] == made[:2][::-1]
    assert len(files_in(workdir)) == 7, "check mode deletes nothing"

    newest = backup(cluster, collections_dir, small_db, key, workdir, keep=2)
    assert [d["backup_id"] for d in newest["deleted"]] == [made[1], made[0]]
    assert newest["deleted"][0]["locations"] == [str(workdir / f"{made[1]}.manifest.json"), str(workdir / f"{made[1]}.dump.zst.enc")]
    assert files_in(workdir) == sorted([f"{made[2]}.dump.zst.enc", f"{made[2]}.manifest.json",
                                        f"{newest['backup_id']}.dump.zst.enc", f"{newest['backup_id']}.manifest.json",
                                        f"{other['backup_id']}.manifest.json"])

    again = backup(cluster, collections_dir, small_db, key, workdir, keep=1)
    assert [d["backup_id"] for d in again["deleted"]] == [newest["backup_id"], made[2]]
    assert f"{again['backup_id']}.dump.zst.enc" in files_in(workdir), "the new backup is never deleted"


def test_retention_in_s3(cluster: PostgresCluster, small_db: str, key: str, s3_server: MotoS3, bucket: str, collections_dir: Path) -> None:
    s3 = {"s3_bucket": bucket, "s3_endpoint_url": s3_server.endpoint, "s3_region": "us-east-1",
          "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "verify": False}
    first = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": small_db, "encryption_key": key, **s3})
    second = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": small_db, "encryption_key": key, "keep": 1, **s3})
    assert [d["backup_id"] for d in second["deleted"]] == [first["backup_id"]]
    keys = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"{second['backup_id']}.dump.zst.enc", f"{second['backup_id']}.manifest.json"]


def test_check_mode_changes_nothing(cluster: PostgresCluster, database: str, workdir: Path, key: str, s3_server: MotoS3, bucket: str,
                                    collections_dir: Path) -> None:
    databases = cluster.databases()
    dest = workdir / "dest"
    result = ansible(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, "dest_dir": str(dest),
                                                    "s3_bucket": bucket, "s3_endpoint_url": s3_server.endpoint, "s3_region": "us-east-1",
                                                    "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                                                    "verify_restore": True}, "--check")
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert [c[1] for c in result["commands"]] == ["--schema-only", "--format=custom", "--no-password"]
    assert result["commands"][2][-1] == f"--dbname=dbname='{database}_verify_<random>'"
    assert not dest.exists(), "not even the destination directory is created"
    assert s3_server.client().list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert cluster.databases() == databases
    assert "sha256" not in result

    # and the restore in check mode verifies the backup completely but changes no database
    made = backup(cluster, collections_dir, database, key, workdir)
    contents = table_contents(cluster, database)
    check = ansible(collections_dir, "pg_restore_backup", {**cluster.login(), "backup_id": made["backup_id"], "src_dir": str(workdir),
                                                           "encryption_key": key}, "--check", "--diff")
    assert check.get("failed") is not True, check.get("msg")
    assert check["verification"]["archive_parsed"] is True and check["verification"]["sha256"] == made["sha256"]
    assert check["kept_database"].startswith(f"{database}_before_restore_")
    assert check["diff"]["after"].startswith(f"{database}: restored from {made['backup_id']}")
    assert cluster.databases() == databases
    assert table_contents(cluster, database) == contents


def test_schema_fingerprint_is_stable_across_runs_and_follows_schema_changes(
        cluster: PostgresCluster, small_db: str, workdir: Path, key: str, collections_dir: Path) -> None:
    env = {**os.environ, "PGPASSWORD": cluster.password}
    raw = [subprocess.run([str(PG_BIN / "pg_dump"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "--schema-only",
                           "-d", small_db], env=env, capture_output=True, text=True, check=True).stdout for _unused in range(2)]
    version = subprocess.run([str(PG_BIN / "pg_dump"), "--version"], capture_output=True, text=True, check=True).stdout
    if tuple(int(n) for n in version.split()[2].split(".")[:2]) >= (15, 14):  # a random \restrict key in every plain dump
        assert "\\restrict " in raw[0] and raw[0] != raw[1]
    first = backup(cluster, collections_dir, small_db, key, workdir, verify=False)
    cluster.execute("INSERT INTO customers (id, email) VALUES (999999, 'new@example.com')", dbname=small_db)
    second = backup(cluster, collections_dir, small_db, key, workdir, verify=False)
    assert first["manifest"]["schema_fingerprint"] == second["manifest"]["schema_fingerprint"]
    assert first["manifest"]["schema_fingerprint"].startswith("sha256:")
    cluster.execute("ALTER TABLE customers ADD COLUMN deleted_at timestamptz", dbname=small_db)
    third = backup(cluster, collections_dir, small_db, key, workdir, verify=False)
    assert third["manifest"]["schema_fingerprint"] != second["manifest"]["schema_fingerprint"]


def test_migration_head_from_the_registry_in_the_dump_snapshot(
        cluster: PostgresCluster, small_db: str, workdir: Path, key: str, collections_dir: Path) -> None:
    cluster.execute("CREATE SCHEMA payments_deploy; CREATE TABLE payments_deploy.changes (name text PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL); INSERT INTO payments_deploy.changes VALUES "
                    "('0001_init', '2025-01-01'), ('0002_refunds', '2025-02-01'), ('0003_index', '2025-03-01')", dbname=small_db)
    result = backup(cluster, collections_dir, small_db, key, workdir, verify=False, migration_registry_table="payments_deploy.changes")
    assert result["manifest"]["migration_head"] == "0003_index" == result["migration_head"]
    assert result["manifest"]["row_counts"]["payments_deploy.changes"] == 3

    given = backup(cluster, collections_dir, small_db, key, workdir, verify=False, migration_head="0004_manual")
    assert given["manifest"]["migration_head"] == "0004_manual"

    missing = backup(cluster, collections_dir, small_db, key, workdir, verify=False, migration_registry_table="public.nothing_here")
    assert missing["manifest"]["migration_head"] is None
    assert any("public.nothing_here does not exist" in w for w in missing.get("warnings", []))


def test_verify_restore_restores_into_a_scratch_database_and_drops_it(cluster: PostgresCluster, database: str, workdir: Path,
                                                                      key: str, collections_dir: Path) -> None:
    result = backup(cluster, collections_dir, database, key, workdir, verify_restore=True)
    verification = result["verification"]
    assert verification["restored_into"].startswith(f"{database}_verify_")
    assert verification["row_counts_match"] is True and verification["archive_parsed"] is True
    assert verification["restored_into"] not in cluster.databases()
    assert f"--dbname=dbname='{verification['restored_into']}'" in result["commands"][-1]
    assert f'DROP DATABASE IF EXISTS "{verification["restored_into"]}" WITH (FORCE)' in result["queries"]
