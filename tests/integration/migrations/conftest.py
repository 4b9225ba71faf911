"""Fixtures for the migration tests: one PostgreSQL 15 cluster for the whole run, a fresh database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import typing as t
from pathlib import Path

import pytest

from migration_cluster import PG_BIN, Cluster, ModuleRunner, collections_dir_for_checkout, start_cluster, stop_cluster


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    """A directory for ANSIBLE_COLLECTIONS_PATH / PYTHONPATH holding this checkout as payments.deploy."""
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster() -> t.Iterator[Cluster]:
    if not os.access(PG_BIN / "postgres", os.X_OK):
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    running = start_cluster()
    try:
        yield running
    finally:
        stop_cluster(running)


@pytest.fixture
def database(cluster: Cluster) -> t.Iterator[str]:
    name = cluster.create_database()
    yield name
    cluster.drop_database(name)


@pytest.fixture
def work_dir() -> t.Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="payments-migrations-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def runner(cluster: Cluster, database: str, collections_dir: Path, work_dir: Path) -> ModuleRunner:
    return ModuleRunner(cluster, database, collections_dir, work_dir)
