"""pgbackrest_stanza on a real cluster: WAL archiving switched on, the stanza created and checked, a first full backup."""

from __future__ import annotations

import typing as t
from pathlib import Path

from pgbackrest_world import Cluster, Repo, run_module


def test_first_run_sets_up_archiving_and_the_stanza(world: tuple[Cluster, Repo], stanza_run: dict[str, t.Any]) -> None:
    cluster, repo = world
    assert stanza_run["changed"] is True
    assert sorted(stanza_run["settings_changed"]) == ["archive_command", "archive_mode"]
    assert stanza_run["restarted"] is True and stanza_run["stanza_created"] is True
    assert cluster.sql("SHOW archive_mode") == [["on"]]
    assert cluster.sql("SHOW archive_command") == [[stanza_run["archive_command"]]]
    purposes = [c["purpose"] for c in stanza_run["commands"]]
    for step in ("restart PostgreSQL for archive_mode", "create the stanza", "check archiving and the repository", "take the first full backup"):
        assert step in purposes
    assert all(c["rc"] == 0 for c in stanza_run["commands"] if c["purpose"] != "read the configuration")
    assert all(isinstance(c["seconds"], float) for c in stanza_run["commands"])

    # pgBackRest itself agrees: check passes, and the repository holds the one full backup the module reported
    check = repo.pgbackrest("check")
    assert check.returncode == 0, check.stderr
    backups = repo.backups()
    # (other tests of the session may have added incremental backups since)
    assert [(b["label"], b["type"]) for b in backups if b["type"] == "full"] == [(stanza_run["backup"]["label"], "full")]
    assert backups[0]["label"] == stanza_run["backup"]["label"]
    archived = cluster.sql("SELECT archived_count, failed_count FROM pg_stat_archiver")[0]
    assert int(archived[0]) > 0 and archived[1] == "0"


def test_second_run_changes_nothing(world: tuple[Cluster, Repo], stanza_run: dict[str, t.Any], collections_dir: Path) -> None:
    cluster, repo = world
    before = repo.backups()
    again = run_module(collections_dir, "pgbackrest_stanza", repo.module_args(restart_command=cluster.restart_command()))
    assert again.get("failed") is not True, again.get("msg")
    assert again["changed"] is False
    assert again["settings_changed"] == [] and again["restarted"] is False and again["stanza_created"] is False
    assert again["backup"] is None
    assert repo.backups() == before
    assert "check archiving and the repository" in [c["purpose"] for c in again["commands"]]
    assert again["backups"] == [b["label"] for b in before]
    assert again["backups"][0] == stanza_run["backup"]["label"]
