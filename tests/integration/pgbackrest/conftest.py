"""Fixtures for the pgBackRest modules and roles: real PostgreSQL 15 clusters and a real pgbackrest with an encrypted
posix repository, all in temporary directories.

One archiving cluster with its stanza per session (its set-up is itself the first test's subject); clusters that must
stay untouched (bad inputs) or receive a restore are made per test.
"""

from __future__ import annotations

import shutil
import typing as t
from pathlib import Path

import pytest

from pgbackrest_world import Cluster, Repo, collections_dir_for_checkout, run_module, running_world


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def world() -> t.Iterator[tuple[Cluster, Repo]]:
    with running_world("pgbackrest-test-") as made:
        yield made


@pytest.fixture(scope="session")
def stanza_run(world: tuple[Cluster, Repo], collections_dir: Path) -> dict[str, t.Any]:
    """The first run of pgbackrest_stanza on the session's cluster: archiving, stanza, check, first full backup."""
    cluster, repo = world
    result = run_module(collections_dir, "pgbackrest_stanza", repo.module_args(restart_command=cluster.restart_command()))
    assert result.get("failed") is not True, result.get("msg")
    return result


@pytest.fixture
def fresh() -> t.Iterator[tuple[Cluster, Repo]]:
    """A cluster that does not archive yet and an empty repository."""
    with running_world("pgbackrest-fresh-") as made:
        yield made
