"""Fixtures for pg_backup / pg_restore_backup against a real PostgreSQL 15 cluster and a real S3 server (moto).

One cluster and one S3 server per test session; every test gets its own database (a copy of a template filled once
per session, since filling one takes seconds), bucket and directories.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import typing as t
from pathlib import Path

import pytest

from pg_backup_servers import MotoS3, PostgresCluster
from pg_cluster_fixtures import cluster, collections_dir  # noqa: F401  pylint: disable=unused-import
from pg_backup_helpers import PAYMENTS_TEMPLATE, create_payments_template, create_small_db


@pytest.fixture(scope="session")
def s3_server() -> t.Iterator[MotoS3]:
    server = MotoS3()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server: MotoS3) -> str:
    name = "backups-" + secrets.token_hex(4)
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def workdir() -> t.Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgbk-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def key() -> str:
    return os.urandom(32).hex()


@pytest.fixture(scope="session")
def payments_template(cluster: PostgresCluster) -> str:
    create_payments_template(cluster)
    return PAYMENTS_TEMPLATE


@pytest.fixture
def database(cluster: PostgresCluster, payments_template: str) -> t.Iterator[str]:
    """A fresh payments-like database (several MiB, so that a backup spans several chunks)."""
    name = "pay_" + secrets.token_hex(4)
    cluster.execute(f'CREATE DATABASE "{name}" TEMPLATE "{payments_template}"')
    yield name
    drop_with_copies(cluster, name)


@pytest.fixture
def small_db(cluster: PostgresCluster) -> t.Iterator[str]:
    """A database of one small table, for tests whose point is not the size of the backup."""
    name = "small_" + secrets.token_hex(4)
    create_small_db(cluster, name)
    yield name
    drop_with_copies(cluster, name)


def drop_with_copies(cluster: PostgresCluster, name: str) -> None:
    """The database and those a test made from it (restored copies, kept and scratch databases)."""
    for dbname in cluster.databases():
        if dbname == name or dbname.startswith(name + "_"):
            cluster.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
