"""The pgBackRest half of the dr_drill role through ansible-playbook on localhost, against a real archiving PostgreSQL 15
cluster and a real encrypted pgBackRest repository: the newest backup plus the archived WAL after it is restored into
a scratch cluster, verified, measured (RPO from the newest recoverable transaction) and journalled, and the scratch
cluster is gone afterwards, and backup_info reads that drill back from the journal; a stanza without a backup and a
wrong cipher pass fail clearly; a drill of both methods is judged by its worst, its logical half checked in full (the
newest pg_backup backup restored, its row counts compared, RTO and RPO recorded and read back)."""

from __future__ import annotations

import json
import time
import typing as t
from pathlib import Path

import pytest

from drill_world import backup_info, postgres_processes, run_drill, take_backup
from pgbackrest_drill_world import DATABASE, EMPTY_STANZA, StanzaWorld, pgbackrest_vars, stanza_world, wait_until  # noqa: F401  pylint: disable=unused-import
from test_dr_drill_role import assert_scratch_gone, journal_records


def started_epoch(result: dict[str, t.Any]) -> float:
    return time.mktime(time.strptime(result["started_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


@pytest.mark.timeout(600)
def test_the_newest_backup_and_the_wal_after_it_are_restored_verified_measured_and_removed(
        collections_dir: Path, stanza_world: StanzaWorld, workdir: Path) -> None:  # noqa: F811
    world = stanza_world
    newest = world.repo.backups()[-1]
    at_backup = world.count("payments")
    # written after the backup and only in the archived WAL: the drill has them only if it replays the WAL
    world.write_payment(901)
    last_row = world.write_payment(902)
    world.archive_now()
    live = {table: world.count(table) for table in ("public.payments", "public.refunds", "public.customers")}
    archive_before = world.archived()
    tablespace_before = world.tablespace_files()
    variables = pgbackrest_vars(world, workdir)
    run = run_drill(collections_dir, workdir, variables)
    assert run.rc == 0, run.output[-6000:]
    result = run.result
    assert result is not None and result["passed"] is True, result
    print(json.dumps(result, indent=1))  # the drill's figures, shown with -s
    drilled = result["methods"]["pgbackrest"]
    assert list(result["methods"]) == ["pgbackrest"]
    assert drilled["backup"] == newest["label"] == result["backup_id"]
    assert drilled["backup_epoch"] == float(newest["timestamp"]["stop"])
    # every row committed and archived before the drill is there, the two written after the backup included
    assert live["public.payments"] == at_backup + 2
    assert {table: drilled["row_counts"][table] for table in live} == live
    assert drilled["row_counts_compared"] is False and drilled["migration_head"] == "0002_payments"
    assert drilled["amcheck"]["corrupt"] == 0 and drilled["amcheck"]["indexes"] > 0 and drilled["amcheck"]["heapallindexed"] is True
    # RPO: the age of the newest recoverable transaction (the last row written) when the drill started
    assert drilled["rpo_basis"] == "newest transaction"
    assert drilled["newest_transaction_epoch"] == pytest.approx(last_row, abs=0.001)
    assert drilled["newest_transaction_epoch"] > drilled["backup_epoch"]
    assert result["rpo_seconds"] == drilled["rpo_seconds"] == pytest.approx(started_epoch(result) - last_row, abs=1.5)
    assert 0 < result["rto_seconds"] <= result["rto_target_seconds"]
    records = journal_records(workdir)
    assert [(r["kind"], r["passed"], r["backup_id"]) for r in records] == [("drill", True, newest["label"])]
    assert records[0]["rpo_seconds"] == result["rpo_seconds"] and records[0]["methods"]["pgbackrest"]["row_counts"] == drilled["row_counts"]
    assert_scratch_gone(workdir, variables["dr_drill_scratch_port"])
    # the restored cluster (a new timeline once promoted) pushed nothing into the repository it came from
    assert world.archived() == archive_before
    # the source's tablespace was restored into the scratch directory, never over the original
    assert tablespace_before and world.tablespace_files() == tablespace_before
    assert world.sql("SELECT pg_is_in_recovery()") == [["f"]] and world.count("payments") == live["public.payments"]
    assert_backup_info_reads_the_drill_back(collections_dir, world, workdir, result)


def assert_backup_info_reads_the_drill_back(collections_dir: Path, world: StanzaWorld, workdir: Path,
                                            drilled: dict[str, t.Any]) -> None:
    """payments.deploy.backup_info reads the drill back from the journal, with the stanza's newest backup."""
    journal = {"journal_dir": str(workdir / "journal"), "environment": "drilltest"}
    result = backup_info(collections_dir, world.repo.module_args(**journal, max_age="1h", drill_max_age="35d"))
    assert result.get("failed") is not True, result
    drill = result["drill"]
    assert drill["kind"] == "drill" and drill["passed"] is True and drill["environment"] == "drilltest"
    assert drill["backup_id"] == drilled["backup_id"] == result["pgbackrest"]["label"]
    assert drill["rto_seconds"] == drilled["rto_seconds"] and drill["rpo_seconds"] == drilled["rpo_seconds"]
    assert drill["methods"]["pgbackrest"]["row_counts"] == drilled["methods"]["pgbackrest"]["row_counts"]
    assert 0 <= drill["age_seconds"] < 600
    # another environment has no drill; a drill older than drill_max_age fails naming the environment
    other = backup_info(collections_dir, {"journal_dir": journal["journal_dir"], "environment": "staging"})
    assert other.get("failed") is not True and other["drill"] is None
    assert wait_until(lambda: backup_info(collections_dir, {**journal, "drill_max_age": "1s", "fail_on_stale": False})["stale"] != [])
    stale = backup_info(collections_dir, {**journal, "drill_max_age": "1s"})
    assert stale.get("failed") is True and "the newest disaster-recovery drill of drilltest is" in stale["msg"], stale


@pytest.mark.timeout(600)
def test_a_stanza_without_any_backup_fails_before_anything_is_restored(
        collections_dir: Path, stanza_world: StanzaWorld, workdir: Path) -> None:  # noqa: F811
    variables = pgbackrest_vars(stanza_world, workdir, dr_drill_pgbackrest_stanza=EMPTY_STANZA)
    run = run_drill(collections_dir, workdir, variables)
    assert run.rc != 0
    assert f"No pgBackRest backup of stanza {EMPTY_STANZA} to restore" in run.output
    assert "Restore the newest backup and the archived WAL" not in run.output
    assert run.result is not None and run.result["passed"] is False and EMPTY_STANZA in run.result["error"]
    assert [(r["kind"], r["passed"]) for r in journal_records(workdir)] == [("drill", False)]
    assert_scratch_gone(workdir, variables["dr_drill_scratch_port"])


@pytest.mark.timeout(600)
def test_the_cipher_pass_is_read_from_the_include_directory_by_the_restore_and_the_restored_server(
        collections_dir: Path, stanza_world: StanzaWorld, workdir: Path) -> None:  # noqa: F811
    """No cipher pass given: info, the restore and the scratch server's archive-get (the WAL after the backup) all
    read it from the repository's include directory."""
    world = stanza_world
    last_row = world.write_payment(903)
    world.archive_now()
    variables = pgbackrest_vars(world, workdir, dr_drill_pgbackrest_cipher_pass="",
                                dr_drill_pgbackrest_config_include_path=str(world.repo.include))
    run = run_drill(collections_dir, workdir, variables)
    assert run.rc == 0, run.output[-6000:]
    drilled = run.result["methods"]["pgbackrest"]
    assert run.result["passed"] is True
    assert drilled["newest_transaction_epoch"] == pytest.approx(last_row, abs=0.001), "the archived WAL was replayed"
    assert world.repo.cipher_pass not in run.output
    assert_scratch_gone(workdir, variables["dr_drill_scratch_port"])
    # without the include directory (and without the pass) the repository cannot be read: the same drill fails clearly
    (workdir / "without").mkdir()
    without = pgbackrest_vars(world, workdir / "without", dr_drill_pgbackrest_cipher_pass="")
    refused = run_drill(collections_dir, workdir / "without", without)
    assert refused.rc != 0 and refused.result is not None and refused.result["passed"] is False
    assert "requires option: repo1-cipher-pass" in refused.result["error"], refused.result["error"]
    assert_scratch_gone(workdir / "without", without["dr_drill_scratch_port"])


@pytest.mark.timeout(600)
def test_a_wrong_cipher_pass_fails_clearly_and_leaves_no_scratch_cluster(
        collections_dir: Path, stanza_world: StanzaWorld, workdir: Path) -> None:  # noqa: F811
    variables = pgbackrest_vars(stanza_world, workdir, dr_drill_pgbackrest_cipher_pass="not-the-" + stanza_world.repo.cipher_pass)
    run = run_drill(collections_dir, workdir, variables)
    assert run.rc != 0
    assert run.result is not None and run.result["passed"] is False
    assert "wrong cipher pass" in run.result["error"], run.result["error"]
    assert stanza_world.repo.cipher_pass not in run.output
    assert [(r["kind"], r["passed"]) for r in journal_records(workdir)] == [("drill", False)]
    assert_scratch_gone(workdir, variables["dr_drill_scratch_port"])
    assert postgres_processes(workdir) == []


@pytest.mark.timeout(900)
def test_a_drill_of_both_methods_is_judged_by_its_slowest_and_oldest_recovery(
        collections_dir: Path, stanza_world: StanzaWorld, workdir: Path, key: str) -> None:  # noqa: F811
    """The same database drilled from its newest logical backup and from pgBackRest: each method keeps its own
    figures, and the drill's RTO and RPO are the worst of them, with the method named (every method must meet the
    target, not only the first one drilled). The logical half is checked as a logical-only drill would be."""
    world = stanza_world
    take_backup(collections_dir, world, DATABASE, workdir / "backups", key)  # type: ignore[arg-type]  # it only logs in
    world.write_payment(777)  # between the two logical backups: only the newest holds it
    newest = take_backup(collections_dir, world, DATABASE, workdir / "backups", key)  # type: ignore[arg-type]
    at_newest = world.count("payments")
    world.write_payment(903)  # after the logical backups: only pgBackRest's archived WAL holds it
    world.archive_now()
    variables = pgbackrest_vars(world, workdir, dr_drill_logical=True, dr_drill_encryption_key=key,
                                dr_drill_src_dir=str(workdir / "backups"))
    began = time.time()
    run = run_drill(collections_dir, workdir, variables)
    ended = time.time()
    assert run.rc == 0, run.output[-6000:]
    result = run.result
    assert result is not None and result["passed"] is True, result
    methods = result["methods"]
    assert sorted(methods) == ["logical", "pgbackrest"]
    slowest = max(methods, key=lambda name: methods[name]["rto_seconds"])
    oldest = max(methods, key=lambda name: methods[name]["rpo_seconds"])
    assert (result["rto_method"], result["rto_seconds"]) == (slowest, methods[slowest]["rto_seconds"])
    assert (result["rpo_method"], result["rpo_seconds"]) == (oldest, methods[oldest]["rpo_seconds"])
    # the logical backup predates payment 903, pgBackRest replayed it: the logical RPO is the older one
    assert oldest == "logical" and methods["pgbackrest"]["row_counts"]["public.payments"] == methods["logical"]["row_counts"]["public.payments"] + 1
    assert f"RTO {result['rto_seconds']} s ({slowest}," in run.output
    assert_the_newest_logical_backup_was_drilled(methods["logical"], newest, at_newest)
    # RTO lies within the playbook's own run; RPO is the age of the logical backup's snapshot when the drill started
    assert 0 < result["rto_seconds"] <= ended - began
    assert result["rpo_seconds"] == pytest.approx(started_epoch(result) - methods["logical"]["backup_epoch"], abs=1.5)
    records = journal_records(workdir)
    assert [r["kind"] for r in records] == ["drill"] and records[0]["passed"] is True
    assert (records[0]["rto_method"], records[0]["rpo_method"]) == (slowest, oldest)
    assert records[0]["rto_seconds"] == result["rto_seconds"] and records[0]["backup_id"] == newest["backup_id"]
    assert_scratch_gone(workdir, variables["dr_drill_scratch_port"])
    # backup_info reads the drill back
    info = backup_info(collections_dir, {"journal_dir": str(workdir / "journal"), "environment": "drilltest", "drill_max_age": "1h"})
    assert info.get("failed") is not True, info
    assert info["drill"]["backup_id"] == newest["backup_id"] and info["drill"]["rpo_seconds"] == result["rpo_seconds"]


def assert_the_newest_logical_backup_was_drilled(logical: dict[str, t.Any], newest: dict[str, t.Any], live_payments: int) -> None:
    """The logical method restored the newest of the pg_backup backups and compared its row counts with the manifest's."""
    assert logical["backup"] == newest["backup_id"]
    # the restored counts are those pg_backup counted in the dump's snapshot, and the payment written before it is among them
    assert logical["row_counts_compared"] is True
    assert logical["row_counts"] == newest["manifest"]["row_counts"]
    assert logical["row_counts"]["public.payments"] == live_payments
    assert logical["migration_head"] == newest["migration_head"] == "0002_payments"
    assert logical["amcheck"]["corrupt"] == 0 and logical["amcheck"]["indexes"] > 0
    created = newest["manifest"]["created_at"]
    assert logical["backup_epoch"] == pytest.approx(time.mktime(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone, abs=1)
    assert logical["newest_transaction_epoch"] <= logical["backup_epoch"]
