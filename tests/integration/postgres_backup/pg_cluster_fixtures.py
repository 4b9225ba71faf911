"""The session fixtures every suite that backs up a real PostgreSQL 15 shares: the collection's path and one cluster.
A conftest imports them by name (pytest registers imported fixtures)."""

from __future__ import annotations

import shutil
import typing as t
from pathlib import Path

import pytest

from pg_backup_servers import PG_BIN, PostgresCluster, collections_dir_for_checkout


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster() -> t.Iterator[PostgresCluster]:
    if not (PG_BIN / "postgres").exists():
        pytest.skip("PostgreSQL 15 is not installed in /usr/lib/postgresql/15")
    pg = PostgresCluster()
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
