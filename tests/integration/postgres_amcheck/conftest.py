"""Fixtures for pg_amcheck against a real PostgreSQL 15 cluster: one cluster per run, a fresh database per test,
owned by a non-superuser service role ``svc`` as in production."""

from __future__ import annotations

import os
import shutil
import tempfile
import typing as t
from pathlib import Path

import pytest

from amcheck_cluster import PG_BIN, Cluster, collections_dir_for_checkout
from amcheck_helpers import SERVICE_ROLE, Amcheck, create_service_db, create_template


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster() -> t.Iterator[Cluster]:
    if not os.access(PG_BIN / "postgres", os.X_OK):
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    running = Cluster()
    try:
        running.init()
        running.start()
        running.execute(f"CREATE ROLE {SERVICE_ROLE} LOGIN PASSWORD '{running.password}-svc'")
        create_template(running)
        yield running
    finally:
        running.remove()


@pytest.fixture
def work_dir() -> t.Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="payments-amcheck-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def service_db(cluster: Cluster) -> t.Iterator[str]:
    """A service database whose amcheck extension a superuser installed (the lab's setup)."""
    name = create_service_db(cluster, amcheck=True)
    yield name
    cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def bare_db(cluster: Cluster) -> t.Iterator[str]:
    """A service database without the amcheck extension."""
    name = create_service_db(cluster, amcheck=False)
    yield name
    cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def amcheck(cluster: Cluster, collections_dir: Path, work_dir: Path) -> Amcheck:
    return Amcheck(cluster, collections_dir, work_dir)
