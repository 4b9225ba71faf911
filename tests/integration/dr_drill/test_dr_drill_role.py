"""The dr_drill role through ansible-playbook on localhost, against a real source cluster and real pg_backup backups:
check mode, a busy port, an existing scratch directory, a corrupt backup and a missed RTO target, and the scratch
cluster is gone afterwards whatever happened. (A logical drill that passes, its RTO, RPO and row counts: the drill of
both methods in test_dr_drill_pgbackrest.py.)"""

from __future__ import annotations

import json
import socket
import typing as t
from pathlib import Path

import pytest

from drill_world import PostgresCluster, postgres_processes, run_drill, take_backup
from loopback_ports import free_port


def drill_vars(workdir: Path, database: str, key: str, **extra: t.Any) -> dict[str, t.Any]:
    return {"dr_drill_database": database, "dr_drill_encryption_key": key, "dr_drill_src_dir": str(workdir / "backups"),
            "dr_drill_scratch_dir": str(workdir / "scratch"), "dr_drill_scratch_port": free_port(),
            "dr_drill_owner_roles": ["payments"], "dr_drill_environment": "drilltest", "deploy_journal_dir": str(workdir / "journal"),
            "dr_drill_journal_host": "localhost", **extra}


def journal_records(workdir: Path) -> list[dict[str, t.Any]]:
    path = workdir / "journal" / "drilltest" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_scratch_gone(workdir: Path, port: int) -> None:
    assert not (workdir / "scratch").exists()
    assert postgres_processes(workdir / "scratch") == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on the scratch port {port}"


@pytest.mark.timeout(300)
def test_check_mode_names_the_backup_it_would_restore_and_creates_nothing(
        collections_dir: Path, cluster: PostgresCluster, service_db: str, workdir: Path, key: str) -> None:
    newest = take_backup(collections_dir, cluster, service_db, workdir / "backups", key)
    variables = drill_vars(workdir, service_db, key)
    run = run_drill(collections_dir, workdir, variables, "--check", "--diff")
    assert run.rc == 0, run.output[-6000:]
    assert f"Check mode: the drill would restore logical backup {newest['backup_id']} into a scratch cluster" in run.output
    assert "nothing was restored" in run.output
    assert run.result is None, "no drill result: nothing was drilled"
    assert journal_records(workdir) == []
    assert_scratch_gone(workdir, variables["dr_drill_scratch_port"])


@pytest.mark.timeout(300)
def test_a_scratch_port_in_use_is_refused_before_anything_is_restored(
        collections_dir: Path, cluster: PostgresCluster, service_db: str, workdir: Path, key: str) -> None:
    take_backup(collections_dir, cluster, service_db, workdir / "backups", key)
    variables = drill_vars(workdir, service_db, key)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", variables["dr_drill_scratch_port"]))
        busy.listen(1)
        run = run_drill(collections_dir, workdir, variables)
    assert run.rc != 0
    assert f"port {variables['dr_drill_scratch_port']} on 127.0.0.1 is already in use" in run.output
    assert "Nothing was restored" in run.output
    assert "pg_restore_backup" not in run.output and "initdb" not in run.output
    assert not (workdir / "scratch").exists() and journal_records(workdir) == []


@pytest.mark.timeout(300)
def test_an_existing_scratch_directory_is_refused_and_kept(
        collections_dir: Path, cluster: PostgresCluster, service_db: str, workdir: Path, key: str) -> None:
    take_backup(collections_dir, cluster, service_db, workdir / "backups", key)
    (workdir / "scratch").mkdir()
    (workdir / "scratch" / "keep-me").write_text("someone's file")
    run = run_drill(collections_dir, workdir, drill_vars(workdir, service_db, key))
    assert run.rc != 0 and "already exists" in run.output
    assert (workdir / "scratch" / "keep-me").read_text() == "someone's file"


@pytest.mark.timeout(600)
def test_a_corrupt_backup_fails_the_drill_which_is_journalled_and_the_scratch_cluster_is_removed(
        collections_dir: Path, cluster: PostgresCluster, service_db: str, workdir: Path, key: str) -> None:
    backup = take_backup(collections_dir, cluster, service_db, workdir / "backups", key)
    stored = workdir / "backups" / f"{backup['backup_id']}.dump.zst.enc"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size: only reading the chunks finds it
    stored.write_bytes(bytes(data))
    # size-only selection lets the drill start the scratch cluster; the restore's chunk authentication must stop it
    variables = drill_vars(workdir, service_db, key, dr_drill_verify_checksum=False)
    run = run_drill(collections_dir, workdir, variables)
    assert run.rc != 0, run.output[-4000:]
    assert "Disaster-recovery drill failed" in run.output and "failed authentication" in run.output
    assert "Create the scratch cluster (initdb)" in run.output  # it got as far as a running scratch cluster
    assert run.result is not None and run.result["passed"] is False and "failed authentication" in run.result["error"]
    records = journal_records(workdir)
    assert len(records) == 1 and records[0]["passed"] is False and records[0]["kind"] == "drill"
    assert_scratch_gone(workdir, variables["dr_drill_scratch_port"])


@pytest.mark.timeout(600)
def test_a_drill_slower_than_its_rto_target_fails_and_says_by_how_much(
        collections_dir: Path, cluster: PostgresCluster, service_db: str, workdir: Path, key: str) -> None:
    take_backup(collections_dir, cluster, service_db, workdir / "backups", key)
    variables = drill_vars(workdir, service_db, key, dr_drill_rto_target_seconds=0.001)
    run = run_drill(collections_dir, workdir, variables)
    assert run.rc != 0
    assert run.result is not None and run.result["passed"] is False
    assert f"above the RTO target of {variables['dr_drill_rto_target_seconds']} s" in run.result["error"]
    assert run.result["rto_seconds"] > variables["dr_drill_rto_target_seconds"]
    assert_scratch_gone(workdir, variables["dr_drill_scratch_port"])
