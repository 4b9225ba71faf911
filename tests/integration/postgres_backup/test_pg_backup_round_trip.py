"""Backup -> restore round trips (the first through the ``ansible`` CLI): the restored database holds exactly the backed-up data,
the replaced one is kept with what it held."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

from pg_backup_helpers import ansible, files_in, run_module, table_contents
from pg_backup_servers import MotoS3, PostgresCluster


def change_data(cluster: PostgresCluster, dbname: str) -> None:
    """What happens after a backup: new payments, a refund, a deleted customer."""
    cluster.execute("INSERT INTO payments (customer_id, intent, amount, currency, status, metadata, created_at) "
                    "VALUES (1, 'pi_after_backup', 9.99, 'usd', 'succeeded', '{}', now())", dbname=dbname)
    cluster.execute("UPDATE payments SET status = 'refunded' WHERE id = 7", dbname=dbname)
    cluster.execute("DELETE FROM receipts WHERE id > 790", dbname=dbname)


def test_local_round_trip_restores_identical_data_and_keeps_the_replaced_database(
        cluster: PostgresCluster, database: str, workdir: Path, key: str, collections_dir: Path) -> None:
    before = table_contents(cluster, database)
    backup = ansible(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key,
                                                    "dest_dir": str(workdir)})
    assert backup.get("failed") is not True, backup.get("msg")
    assert backup["changed"] is True and backup["verified"] is True
    backup_id = backup["backup_id"]
    assert files_in(workdir) == sorted([f"{backup_id}.dump.zst.enc", f"{backup_id}.manifest.json"])
    manifest = json.loads((workdir / f"{backup_id}.manifest.json").read_text())
    assert manifest == backup["manifest"]
    assert manifest["database"] == database and manifest["encryption"]["algorithm"] == "AES-256-GCM"
    assert manifest["encryption"]["chunks"] > 3, "the test data should span several chunks"
    assert manifest["row_counts"] == {"public.customers": 2000, "public.payments": 20000, "public.receipts": 800}
    assert manifest["sizes"]["stored_bytes"] == (workdir / f"{backup_id}.dump.zst.enc").stat().st_size
    assert manifest["sha256"] == backup["sha256"]
    assert key not in json.dumps(manifest)
    assert backup["verification"]["archive_parsed"] is True

    change_data(cluster, database)
    changed = table_contents(cluster, database)
    assert changed != before

    temp = workdir / "tmp"
    temp.mkdir()
    restore = ansible(collections_dir, "pg_restore_backup", {**cluster.login(), "backup_id": backup_id, "src_dir": str(workdir),
                                                             "target_db": database, "encryption_key": key, "temp_dir": str(temp)})
    assert restore.get("failed") is not True, restore.get("msg")
    assert files_in(temp) == [], "the decrypted dump is removed"
    assert restore["verification"]["streamed"] is True, "by default the chunks go straight into pg_restore"
    assert "fetch_and_decrypt" not in restore["timings"] and restore["timings"]["pg_restore"] > 0
    # every restored table was analyzed before the swap (the planner has statistics from the first query)
    analyzed = cluster.execute("SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables ORDER BY 1", dbname=database)
    assert analyzed == [("customers", True), ("payments", True), ("receipts", True)], analyzed
    assert "ANALYZE each of the 3 tables above, 2 sessions at once" in restore["queries"]
    assert restore["sizes"]["dump_bytes"] == manifest["sizes"]["dump_bytes"]
    kept = restore["kept_database"]
    assert kept.startswith(f"{database}_before_restore_")
    assert restore["restored_database"] == database
    assert restore["verification"]["row_counts_match"] is True
    assert table_contents(cluster, database) == before
    assert table_contents(cluster, kept) == changed
    assert not [d for d in cluster.databases() if "_restore_" in d and "_before_" not in d], "the temporary name is gone"
    assert [argv[0].rsplit("/", 1)[-1] for argv in restore["commands"]] == ["pg_restore"]


def test_s3_round_trip_with_server_side_encryption(cluster: PostgresCluster, database: str, key: str, s3_server: MotoS3,
                                                   bucket: str, collections_dir: Path) -> None:
    s3 = {"s3_bucket": bucket, "s3_prefix": "prod/pg", "s3_endpoint_url": s3_server.endpoint, "s3_region": "us-east-1",
          "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    before = table_contents(cluster, database)
    backup = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, **s3,
                                                       "s3_part_size_mb": 5})
    assert backup.get("failed") is not True, backup.get("msg")
    backup_id = backup["backup_id"]
    client = s3_server.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == [f"prod/pg/{backup_id}.dump.zst.enc", f"prod/pg/{backup_id}.manifest.json"]
    head = client.head_object(Bucket=bucket, Key=f"prod/pg/{backup_id}.dump.zst.enc")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentLength"] == backup["sizes"]["stored_bytes"] > 5 * 1024 * 1024, "a multipart upload of several parts"
    assert backup["locations"] == [f"s3://{bucket}/prod/pg/{backup_id}.dump.zst.enc"]
    assert backup["verification"]["sha256_checked"] == backup["locations"]

    change_data(cluster, database)
    restore = run_module(collections_dir, "pg_restore_backup", {**cluster.login(), "backup_id": "latest", "target_db": database,
                                                                "encryption_key": key, **s3})
    assert restore.get("failed") is not True, restore.get("msg")
    assert restore["backup_id"] == backup_id
    assert table_contents(cluster, database) == before


def test_both_destinations_hold_the_same_verified_object(cluster: PostgresCluster, database: str, workdir: Path, key: str,
                                                         s3_server: MotoS3, bucket: str, collections_dir: Path) -> None:
    backup = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key,
                                                       "dest_dir": str(workdir), "s3_bucket": bucket, "s3_endpoint_url": s3_server.endpoint,
                                                       "s3_region": "us-east-1", "aws_access_key_id": "testing",
                                                       "aws_secret_access_key": "testing"})
    assert backup.get("failed") is not True, backup.get("msg")
    name = f"{backup['backup_id']}.dump.zst.enc"
    local = (workdir / name).read_bytes()
    remote = s3_server.client().get_object(Bucket=bucket, Key=name)["Body"].read()
    assert local == remote
    assert len(backup["verification"]["sha256_checked"]) == 2


def test_restore_into_a_database_that_does_not_exist_keeps_nothing(
        cluster: PostgresCluster, database: str, workdir: Path, key: str, collections_dir: Path) -> None:
    before = table_contents(cluster, database)
    backup = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, "dest_dir": str(workdir)})
    assert backup.get("failed") is not True, backup.get("msg")
    manifest = workdir / f"{backup['backup_id']}.manifest.json"
    restore = run_module(collections_dir, "pg_restore_backup", {**cluster.login(), "manifest": str(manifest), "encryption_key": key,
                                                                "target_db": f"{database}_copy", "jobs": 2})
    assert restore.get("failed") is not True, restore.get("msg")
    assert restore["kept_database"] is None
    assert table_contents(cluster, f"{database}_copy") == before


def database_settings(cluster: PostgresCluster, dbname: str) -> dict[str, object]:
    row = cluster.execute(f"""SELECT pg_get_userbyid(d.datdba), d.datacl::text, d.datallowconn,
                                     (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0)
                              FROM pg_database d WHERE d.datname = '{dbname}'""")[0]
    acl = sorted(row[1].strip("{}").split(",")) if row[1] else None
    return {"owner": row[0], "acl": acl, "allow_connections": row[2], "settings": row[3]}


def test_restore_terminates_sessions_and_keeps_owner_privileges_and_settings(
        cluster: PostgresCluster, database: str, workdir: Path, key: str, collections_dir: Path) -> None:
    cluster.execute("DO $$ BEGIN CREATE ROLE payments_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    cluster.execute(f'ALTER DATABASE "{database}" OWNER TO payments_app')
    cluster.execute(f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC')
    cluster.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO payments_app')
    cluster.execute(f'ALTER DATABASE "{database}" SET search_path = "$user", public')
    cluster.execute(f"ALTER DATABASE \"{database}\" SET statement_timeout = '5s'")
    settings = database_settings(cluster, database)
    backup = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, "dest_dir": str(workdir)})
    assert backup.get("failed") is not True, backup.get("msg")

    with cluster.connect(database) as session:  # an application still connected to the database
        refused = run_module(collections_dir, "pg_restore_backup", {**cluster.login(), "backup_id": backup["backup_id"],
                                                                    "src_dir": str(workdir), "encryption_key": key,
                                                                    "terminate_connections": False})
        assert refused.get("failed") is True
        # At least the application's session; the backup's own pg_dump backend may still be ending.
        connected = re.search(r"(\d+) session\(s\) are connected to", refused["msg"])
        assert connected and int(connected.group(1)) >= 1 and "no database was touched" in refused["msg"], refused["msg"]
        assert session.execute("SELECT 1").fetchone() == (1,)

        restore = run_module(collections_dir, "pg_restore_backup", {**cluster.login(), "backup_id": backup["backup_id"],
                                                                    "src_dir": str(workdir), "encryption_key": key})
        assert restore.get("failed") is not True, restore.get("msg")
        assert restore["terminated_sessions"] == 1
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    assert database_settings(cluster, database) == settings
    assert database_settings(cluster, restore["kept_database"]) == settings, "the kept database accepts connections again"
