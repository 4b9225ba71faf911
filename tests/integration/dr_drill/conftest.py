"""Fixtures of the disaster-recovery drill suite: one real PostgreSQL 15 source cluster per session with a
payments-like database, real backups made with payments.deploy.pg_backup, and scratch directories per test."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import typing as t
from pathlib import Path

import pytest

from drill_world import PostgresCluster, create_service_db
from pg_cluster_fixtures import cluster, collections_dir  # noqa: F401  pylint: disable=unused-import


@pytest.fixture
def workdir() -> t.Iterator[Path]:
    # short: the scratch cluster's socket path must stay under 108 bytes
    path = Path(tempfile.mkdtemp(prefix="drill-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def key() -> str:
    return os.urandom(32).hex()


@pytest.fixture
def service_db(cluster: PostgresCluster) -> t.Iterator[str]:
    name = "svc_" + secrets.token_hex(4)
    create_service_db(cluster, name)
    yield name
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
