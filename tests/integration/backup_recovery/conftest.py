"""Fixtures for recovering backups by hand: one PostgreSQL 15 cluster, one payments-like database and two real backups
of it made with payments.deploy.pg_backup, shared by every test (each test works on its own copies of the files)."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import typing as t
from pathlib import Path

import pytest

# the cluster, the payments-like schema and the module runner of the backup suite
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "postgres_backup"))

from pg_backup_helpers import create_payments_db, run_module  # noqa: E402  pylint: disable=wrong-import-position
from pg_backup_servers import PostgresCluster  # noqa: E402  pylint: disable=wrong-import-position
from pg_cluster_fixtures import cluster, collections_dir  # noqa: F401,E402  pylint: disable=unused-import,wrong-import-position

from recovery_runner import Backup  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def key() -> str:
    return os.urandom(32).hex()


@pytest.fixture(scope="session")
def source_db(cluster: PostgresCluster) -> str:
    name = "recover_src_" + secrets.token_hex(3)
    create_payments_db(cluster, name)
    return name


@pytest.fixture(scope="session")
def store_dir() -> t.Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgbk-recover-store-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_backup(cluster: PostgresCluster, collections_dir: Path, database: str, key: str, store: Path) -> Backup:
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, "dest_dir": str(store)})
    assert result.get("failed") is not True, result.get("msg")
    return Backup(result["backup_id"], store)


@pytest.fixture(scope="session")
def backup(cluster: PostgresCluster, collections_dir: Path, source_db: str, key: str, store_dir: Path) -> Backup:
    """A real backup of ``source_db`` in a local store directory."""
    return make_backup(cluster, collections_dir, source_db, key, store_dir)


@pytest.fixture(scope="session")
def other_backup(cluster: PostgresCluster, collections_dir: Path, source_db: str, key: str, store_dir: Path, backup: Backup) -> Backup:
    """A second backup of the same database, after a change: its manifest must not recover the first one's object."""
    cluster.execute("INSERT INTO customers (id, email) VALUES (999999, 'later@example.com')", dbname=source_db)
    taken = make_backup(cluster, collections_dir, source_db, key, store_dir)
    cluster.execute("DELETE FROM customers WHERE id = 999999", dbname=source_db)
    assert taken.backup_id != backup.backup_id
    return taken


@pytest.fixture
def workdir() -> t.Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgbk-recover-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
