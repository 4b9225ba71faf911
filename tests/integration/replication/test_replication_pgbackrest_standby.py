"""A replica seeded from the pgBackRest repository as docs/replication.md shows (pgbackrest restore --type=standby with
primary_conninfo as a recovery option): it replays the archive, streams from the primary, and pg_replication_info
waits for it like for any other replica."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
import typing as t
from pathlib import Path

import pytest

from replication_cluster import Check

PGBACKREST_SUITE = Path(__file__).resolve().parents[1] / "pgbackrest"
if str(PGBACKREST_SUITE) not in sys.path:
    sys.path.insert(0, str(PGBACKREST_SUITE))

from pgbackrest_world import PG_BIN, PGBACKREST, Cluster, Repo, new_base, run_module  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.timeout(300)
STANDBY_NAME = "standby_b"


@pytest.fixture
def archiving_primary(collections_dir: Path) -> t.Iterator[tuple[Cluster, Repo, str]]:
    """A primary archiving into an encrypted repository with one full backup (payments.deploy.pgbackrest_stanza), which
    also accepts its superuser with a password on 127.0.0.1 for the module."""
    if not os.access(PG_BIN / "postgres", os.X_OK) or not os.access(PGBACKREST, os.X_OK):
        pytest.skip(f"PostgreSQL 15 ({PG_BIN}) or pgBackRest ({PGBACKREST}) is not installed")
    base = new_base("replication-pgbr-")
    primary = Cluster(base)
    password = secrets.token_hex(16)
    try:
        primary.init()
        hba = primary.data / "pg_hba.conf"
        hba.write_text("host all postgres 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        primary.start()
        primary.sql(f"ALTER ROLE postgres PASSWORD '{password}'")
        repo = Repo(base, primary)
        repo.write()
        stanza = run_module(collections_dir, "pgbackrest_stanza", repo.module_args(restart_command=primary.restart_command()))
        assert stanza.get("failed") is not True, stanza.get("msg")
        yield primary, repo, password
    finally:
        for data in ("standby", "data"):
            Cluster(base, name=data, port=primary.port).stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_standby_restored_from_the_repository_streams_and_is_waited_for(archiving_primary: tuple[Cluster, Repo, str],
                                                                          replication_info: Check) -> None:
    primary, repo, password = archiving_primary
    # written after the backup: the standby gets these from the archive or the stream, not from the backup
    rows = 1000 + secrets.randbelow(1000)
    primary.sql(f"CREATE TABLE after_backup AS SELECT g AS id FROM generate_series(1, {rows}) g")
    standby = Cluster(repo.base, name="standby")
    conninfo = f"host={repo.base} port={primary.port} user=postgres application_name={STANDBY_NAME}"
    # the command of docs/replication.md, with this test's paths
    restored = repo.pgbackrest("--type=standby", "--delta", f"--pg1-path={standby.data}", f"--recovery-option=primary_conninfo={conninfo}",
                               "restore")
    assert restored.returncode == 0, restored.stderr
    assert (standby.data / "standby.signal").exists()
    standby.configure({})  # its own port (the restored configuration names the primary's)
    standby.start()
    deadline = time.monotonic() + 60
    while primary.sql(f"SELECT state FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}'") != [["streaming"]]:
        assert time.monotonic() < deadline, "the restored standby never streamed from the primary"
        time.sleep(0.2)
    primary.sql("INSERT INTO after_backup SELECT g FROM generate_series(1, 10) g")

    url = f"postgresql://postgres:{password}@127.0.0.1:{primary.port}/postgres"
    result = replication_info(None, url=url, required_replicas=[STANDBY_NAME])
    assert result.get("failed") is not True, result.get("msg")
    [replica] = result["replicas"]
    assert replica["application_name"] == STANDBY_NAME and replica["caught_up"] is True
    assert standby.sql("SELECT pg_is_in_recovery(), count(*) FROM after_backup") == [["t", str(rows + 10)]]
