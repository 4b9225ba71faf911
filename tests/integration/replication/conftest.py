"""Fixtures for pg_replication_info and the replication role: one primary with one streaming replica per test run
(pg_basebackup takes seconds), and a primary without replicas."""

from __future__ import annotations

import os
import shutil
import tempfile
import typing as t
from pathlib import Path

import pytest

from replication_cluster import PG_BIN, REPLICA_NAME, Check, Primary, Replica
from amcheck_cluster import collections_dir_for_checkout  # importable once replication_cluster put its suite on the path


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)


def need_postgres() -> None:
    if not os.access(PG_BIN / "postgres", os.X_OK) or not os.access(PG_BIN / "pg_basebackup", os.X_OK):
        pytest.skip(f"PostgreSQL 15 (postgres, pg_basebackup) not found in {PG_BIN}")


@pytest.fixture(scope="session")
def primary() -> t.Iterator[Primary]:
    need_postgres()
    server = Primary()
    try:
        server.prepare()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def session_replica(primary: Primary) -> t.Iterator[Replica]:
    server = Replica(primary, REPLICA_NAME)
    try:
        server.init()
        server.start_streaming()
        yield server
    finally:
        server.remove()


@pytest.fixture
def replica(session_replica: Replica) -> t.Iterator[Replica]:
    """The replica, streaming and replaying; whatever a test did to it (stopped, paused) is undone after it."""
    yield session_replica
    if session_replica.proc is None or session_replica.proc.poll() is not None:
        session_replica.start_streaming()
    elif session_replica.paused():
        session_replica.execute("SELECT pg_wal_replay_resume()")


@pytest.fixture(scope="session")
def lonely_primary() -> t.Iterator[Primary]:
    """A primary nothing replicates from."""
    need_postgres()
    server = Primary()
    try:
        server.prepare()
        yield server
    finally:
        server.remove()


@pytest.fixture
def work_dir() -> t.Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="payments-replication-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def replication_info(collections_dir: Path, work_dir: Path) -> Check:
    return Check(collections_dir, work_dir)
