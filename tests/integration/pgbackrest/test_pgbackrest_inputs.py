"""Bad inputs are refused with a clear message before anything changes: no archiving set, no stanza, no backup.

One untouched cluster serves every refusal here: each test starts from the default repository configuration and a
cluster that does not archive (checked), and what a refused run may leave (ALTER SYSTEM settings) is reset after it."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from loopback_ports import free_port
from pgbackrest_world import Cluster, Repo, run_module, running_world


def untouched(cluster: Cluster, repo: Repo) -> bool:
    return cluster.sql("SHOW archive_mode") == [["off"]] and not any(repo.path.iterdir())


def altered_settings(cluster: Cluster) -> list[str]:
    """What ALTER SYSTEM wrote (SHOW cannot tell: it says "(disabled)" for archive_command while archiving is off)."""
    auto_conf = (cluster.data / "postgresql.auto.conf").read_text(encoding="utf-8")
    return [line for line in auto_conf.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def refusing_world() -> t.Iterator[tuple[Cluster, Repo]]:
    with running_world("pgbackrest-refuse-inputs-") as made:
        yield made


@pytest.fixture
def fresh(refusing_world: tuple[Cluster, Repo]) -> t.Iterator[tuple[Cluster, Repo]]:
    """The module's cluster, not archiving, with an empty repository and the default configuration."""
    cluster, repo = refusing_world
    repo.write()
    assert untouched(cluster, repo) and altered_settings(cluster) == []
    yield cluster, repo
    cluster.sql("ALTER SYSTEM RESET ALL")
    cluster.sql("SELECT pg_reload_conf()")


@pytest.mark.parametrize(("module", "change", "message"), [
    ("pgbackrest_stanza", {"pass_in_include": False}, "no repository cipher pass"),
    ("pgbackrest_stanza", {"cipher": False}, "must be encrypted"),
    ("pgbackrest_backup", {"pass_in_include": False}, "no repository cipher pass"),
])
def test_a_repository_without_encryption_or_pass_is_refused(fresh: tuple[Cluster, Repo], collections_dir: Path, module: str,
                                                            change: dict[str, bool], message: str) -> None:
    cluster, repo = fresh
    repo.write(**change)
    result = run_module(collections_dir, module, repo.module_args(restart_command=cluster.restart_command()) if module == "pgbackrest_stanza"
                        else repo.module_args(restore_point="deploy-x"))
    assert result["failed"] is True and message in result["msg"]
    assert untouched(cluster, repo)


def test_an_unreachable_cluster_is_refused(fresh: tuple[Cluster, Repo], collections_dir: Path) -> None:
    cluster, repo = fresh
    result = run_module(collections_dir, "pgbackrest_stanza", {**repo.module_args(restart_command=cluster.restart_command()), "pg_port": free_port()})
    assert result["failed"] is True and "psql" in result["msg"] and "No such file or directory" in result["msg"]
    assert [c["purpose"] for c in result["commands"]][-1] == "reach the cluster"
    assert untouched(cluster, repo)


def test_backup_before_the_stanza_and_bad_ages_are_refused(fresh: tuple[Cluster, Repo], collections_dir: Path) -> None:
    cluster, repo = fresh
    result = run_module(collections_dir, "pgbackrest_backup", repo.module_args(restore_point="deploy-x"))
    assert result["failed"] is True and "archive_mode is off" in result["msg"]
    bad_age = run_module(collections_dir, "pgbackrest_backup", repo.module_args(full_max_age="a week"))
    assert bad_age["failed"] is True and "full_max_age" in bad_age["msg"] and bad_age["commands"] == []
    too_long = run_module(collections_dir, "pgbackrest_backup", repo.module_args(restore_point="deploy-" + "x" * 60))
    assert too_long["failed"] is True and "63 bytes" in too_long["msg"] and too_long["commands"] == []
    assert untouched(cluster, repo)
    assert cluster.sql("SELECT count(*) FROM pg_stat_archiver WHERE last_archived_wal IS NOT NULL") == [["0"]]


def test_archive_mode_without_a_restart_command_is_refused(fresh: tuple[Cluster, Repo], collections_dir: Path) -> None:
    cluster, repo = fresh
    check = run_module(collections_dir, "pgbackrest_stanza", repo.module_args(restart_command=cluster.restart_command()), check_mode=True)
    assert check["changed"] is True and sorted(check["settings_changed"]) == ["archive_command", "archive_mode"]
    assert {c["purpose"] for c in check["commands"] if c.get("skipped")} >= {"set archive_mode", "create the stanza", "take the first full backup"}
    assert untouched(cluster, repo)
    result: dict[str, t.Any] = run_module(collections_dir, "pgbackrest_stanza", repo.module_args())
    assert result["failed"] is True and "restart" in result["msg"]
    # archive_command alone takes effect on reload; nothing was created in the repository
    assert not any(repo.path.iterdir())
