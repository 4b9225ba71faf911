"""pgbackrest_backup, the per-deploy phase: an incremental backup, a named restore point whose WAL is in the repository,
the age policy, and a point-in-time restore to that restore point into a new data directory on another port."""

from __future__ import annotations

import secrets
import typing as t
from pathlib import Path

import pytest

from pgbackrest_world import Cluster, Repo, run_module


def deploy_backup(repo: Repo, collections_dir: Path, **options: t.Any) -> dict[str, t.Any]:
    result = run_module(collections_dir, "pgbackrest_backup", repo.module_args(**options))
    assert result.get("failed") is not True, result.get("msg")
    return result


def test_deploy_takes_an_incremental_backup_and_archives_its_restore_point(world: tuple[Cluster, Repo], stanza_run: dict[str, t.Any],
                                                                           collections_dir: Path) -> None:
    cluster, repo = world
    name = "deploy-" + secrets.token_hex(6)
    result = deploy_backup(repo, collections_dir, restore_point=name, full_max_age="1d", diff_max_age="1d")
    assert result["changed"] is True
    backups = repo.backups()
    assert backups[-1]["label"] == result["backup"]["label"] and backups[-1]["type"] == "incr" == result["backup"]["type"]
    assert backups[-1]["prior"] == stanza_run["backup"]["label"]
    point = result["restore_point"]
    assert point["name"] == name and point["archived"] is True
    # the segment the module names holds the restore point's LSN, and PostgreSQL reports it archived
    assert cluster.sql(f"SELECT pg_walfile_name('{point['lsn']}')") == [[point["wal_segment"]]]
    assert cluster.sql(f"SELECT last_archived_wal >= '{point['wal_segment']}' FROM pg_stat_archiver") == [["t"]]
    fetched = repo.pgbackrest("archive-get", point["wal_segment"], str(repo.base / "fetched-segment"))
    assert fetched.returncode == 0, fetched.stderr
    assert set(result["timings"]) >= {"backup", "restore_point", "archive_check", "total"}
    assert [c["purpose"] for c in result["commands"]].count("take a incr backup") == 1


@pytest.mark.usefixtures("stanza_run")
def test_a_second_deploy_within_the_ages_takes_no_backup(world: tuple[Cluster, Repo], collections_dir: Path) -> None:
    repo = world[1]
    deploy_backup(repo, collections_dir, full_max_age="1d", diff_max_age="1d")
    before = repo.backups()
    again = deploy_backup(repo, collections_dir, restore_point="deploy-" + secrets.token_hex(6), full_max_age="1d", diff_max_age="1d",
                          incr_max_age="1h")
    assert repo.backups() == before
    assert again["backup"]["taken"] is False and again["backup"]["type"] is None
    assert again["backup"]["label"] == before[-1]["label"]
    assert [b["type"] for b in before].count("full") == 1, "only the stanza's first full backup"
    assert again["restore_point"]["archived"] is True

    # check mode reads the repository and names the backup the ages call for, without taking it
    check = run_module(collections_dir, "pgbackrest_backup", repo.module_args(full_max_age="0"), check_mode=True)
    assert check["changed"] is True and check["backup"]["type"] == "full" and check["backup"]["taken"] is False
    assert [c.get("skipped") for c in check["commands"] if c["purpose"] == "take a full backup"] == ["check mode"]
    assert repo.backups() == before


@pytest.mark.usefixtures("stanza_run")
def test_point_in_time_restore_to_the_deploy(world: tuple[Cluster, Repo], collections_dir: Path) -> None:
    cluster, repo = world
    marker = secrets.token_hex(8)
    cluster.sql(f"INSERT INTO payments VALUES (900001, 1, 'before {marker}')")
    name = "deploy-" + marker
    deploy_backup(repo, collections_dir, restore_point=name)
    cluster.sql(f"INSERT INTO payments VALUES (900002, 2, 'after {marker}')")
    cluster.sql("SELECT pg_switch_wal()")

    restored = Cluster(repo.base, name="restored")
    proc = repo.pgbackrest("restore", "--type=name", f"--target={name}", f"--pg1-path={restored.data}", "--target-action=promote",
                           "--archive-mode=off")
    assert proc.returncode == 0, proc.stderr
    # the restored configuration still names the first cluster's port: give the copy its own
    restored.configure({})
    restored.start()
    try:
        assert restored.wait_promoted(), "recovery stops at the restore point and promotes"
        rows = restored.sql(f"SELECT id, note FROM payments WHERE note LIKE '%{marker}' ORDER BY id")
        assert rows == [["900001", f"before {marker}"]]
        assert restored.sql("SELECT count(*) FROM payments WHERE note = 'before'") == [["20000"]]
        assert restored.sql("SHOW archive_mode") == [["off"]], "the copy does not archive into the live stanza"
    finally:
        restored.stop()
    assert cluster.sql(f"SELECT count(*) FROM payments WHERE note LIKE '%{marker}'") == [["2"]], "the source keeps both rows"


@pytest.mark.usefixtures("stanza_run")
def test_a_failing_archive_command_stops_the_deploy_naming_the_archiver(world: tuple[Cluster, Repo], collections_dir: Path) -> None:
    cluster, repo = world
    command = cluster.sql("SHOW archive_command")[0][0]
    cluster.sql("ALTER SYSTEM SET archive_command = '/bin/false'")
    cluster.sql("SELECT pg_reload_conf()")
    try:
        name = "deploy-" + secrets.token_hex(6)
        failed = run_module(collections_dir, "pgbackrest_backup", repo.module_args(restore_point=name, archive_timeout=3,
                                                                                   full_max_age="1d", diff_max_age="1d", incr_max_age="1d"))
        assert failed["failed"] is True
        assert f"of restore point {name} is not in the repository after 3 s" in failed["msg"]
        assert "archiver has failed" in failed["msg"] and "'/bin/false'" in failed["msg"], failed["msg"]
    finally:
        escaped = command.replace("'", "''")
        cluster.sql(f"ALTER SYSTEM SET archive_command = '{escaped}'")
        cluster.sql("SELECT pg_reload_conf()")
    # the session's cluster is shared: the failures made on purpose here must not count against the tests after this one
    cluster.sql("SELECT pg_stat_reset_shared('archiver')")
    # once archive_command works again, the next deploy's restore point reaches the repository
    again = deploy_backup(repo, collections_dir, restore_point="deploy-" + secrets.token_hex(6), full_max_age="1d", diff_max_age="1d",
                          incr_max_age="1d")
    assert again["restore_point"]["archived"] is True
