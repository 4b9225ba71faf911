"""A payments-like PostgreSQL 15 cluster that archives its WAL into an encrypted pgBackRest repository (stanza
``payments``, with a full backup), plus a second stanza ``empty`` of the same cluster that holds no backup.

The pgBackRest suite's cluster and repository are reused by import. One world serves every test of the session
(its set-up, with a restart and a full backup, is the slow part): the ``stanza_world`` fixture, imported by each test
module, builds it once and removes it at the end of the session. The cipher pass is in the repository's include
directory, which the drill is not given: the drill reaches the repository with ``dr_drill_pgbackrest_cipher_pass``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest

PGBACKREST_SUITE = Path(__file__).resolve().parent.parent / "pgbackrest"
if str(PGBACKREST_SUITE) not in sys.path:
    sys.path.insert(0, str(PGBACKREST_SUITE))

from loopback_ports import free_port  # noqa: E402  pylint: disable=wrong-import-position
from drill_world import SCHEMA  # noqa: E402  pylint: disable=wrong-import-position
from pgbackrest_world import (  # noqa: E402  pylint: disable=wrong-import-position
    PG_BIN, PGBACKREST, Cluster, Repo, as_postgres, give_to_postgres, new_base, run_module)

DATABASE = "payments"
EMPTY_STANZA = "empty"


class StanzaWorld:
    """The archiving source cluster, its repository and helpers to write rows and take backups."""

    def __init__(self, base: Path, cluster: Cluster, repo: Repo) -> None:
        self.base = base
        self.cluster = cluster
        self.repo = repo
        self.tablespace = base / "tablespace"

    def sql(self, query: str, dbname: str = DATABASE) -> list[list[str]]:
        proc = subprocess.run([str(PG_BIN / "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", str(self.base), "-p", str(self.cluster.port),
                               "-d", dbname, "-c", query], check=False, capture_output=True, text=True, cwd=self.base, **as_postgres())
        assert proc.returncode == 0, proc.stderr
        return [line.split("|") for line in proc.stdout.splitlines() if line]

    def login(self) -> dict[str, t.Any]:
        """What payments.deploy.pg_backup connects with (TCP on loopback, trusted for postgres in this throw-away cluster)."""
        return {"login_host": "127.0.0.1", "login_port": self.cluster.port, "login_user": "postgres", "login_password": "unused"}

    def write_payment(self, amount: int) -> float:
        """One new payment; the epoch of its created_at (its transaction's start), as the database stores it."""
        rows = self.sql(f"INSERT INTO payments (customer_id, amount, status) VALUES (1, {amount}, 'succeeded') "
                        "RETURNING extract(epoch FROM created_at)")
        return float(rows[0][0])

    def archive_now(self) -> None:
        """Switch to a new WAL segment and wait until the old one is in the repository (pgbackrest check does both)."""
        proc = self.repo.pgbackrest("check")
        assert proc.returncode == 0, proc.stderr

    def backup(self, kind: str) -> dict[str, t.Any]:
        proc = self.repo.pgbackrest(f"--type={kind}", "backup")
        assert proc.returncode == 0, proc.stderr
        return self.repo.backups()[-1]

    def count(self, table: str) -> int:
        return int(self.sql(f"SELECT count(*) FROM {table}")[0][0])

    def archived(self) -> list[str]:
        """Names of the files in the stanza's WAL archive (encrypted, so only their names say anything)."""
        return sorted(path.name for path in (self.repo.path / "archive" / self.repo.stanza).rglob("*") if path.is_file())

    def tablespace_files(self) -> dict[str, int]:
        """The inode of every file under the tablespace's directory (a restore over them would write new files)."""
        return {str(path): path.stat().st_ino for path in self.tablespace.rglob("*") if path.is_file()}

    def stop(self) -> None:
        self.cluster.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def build_world(collections_dir: Path) -> StanzaWorld:
    if not os.access(PG_BIN / "postgres", os.X_OK) or not os.access(PGBACKREST, os.X_OK):
        pytest.skip(f"PostgreSQL 15 ({PG_BIN}) or pgBackRest ({PGBACKREST}) is not installed")
    base = new_base("drill-pgbr-")
    cluster = Cluster(base)
    cluster.init()
    hba = cluster.data / "pg_hba.conf"
    hba.write_text("host all postgres 127.0.0.1/32 trust\n" + hba.read_text(encoding="utf-8"), encoding="utf-8")  # first match wins
    cluster.start()
    world = StanzaWorld(base, cluster, Repo(base, cluster))
    try:
        world.sql(f"CREATE DATABASE {DATABASE}", dbname="postgres")
        world.sql(SCHEMA)
        # a tablespace outside the data directory, used by another database: a restore must not go near it
        world.tablespace.mkdir(mode=0o700)
        give_to_postgres(world.tablespace)
        world.sql(f"CREATE TABLESPACE ledger_space LOCATION '{world.tablespace}'", dbname="postgres")
        world.sql("CREATE TABLE ledger (id bigint PRIMARY KEY) TABLESPACE ledger_space; INSERT INTO ledger SELECT generate_series(1, 100)",
                  dbname="postgres")
        world.repo.write()
        with world.repo.config.open("a", encoding="utf-8") as config:
            config.write(f"\n[{EMPTY_STANZA}]\npg1-path={cluster.data}\npg1-port={cluster.port}\npg1-socket-path={base}\n")
        result = run_module(collections_dir, "pgbackrest_stanza", world.repo.module_args(restart_command=cluster.restart_command()))
        assert result.get("failed") is not True, result.get("msg")
        proc = subprocess.run([str(PGBACKREST), f"--config={world.repo.config}", f"--config-include-path={world.repo.include}",
                               f"--stanza={EMPTY_STANZA}", "--log-level-console=warn", "stanza-create"],
                              capture_output=True, text=True, check=False, cwd=base, **as_postgres())
        assert proc.returncode == 0, proc.stderr
    except BaseException:
        world.stop()
        raise
    return world


WORLDS: list[StanzaWorld] = []


@pytest.fixture(scope="session")
def stanza_world(collections_dir: Path) -> t.Iterator[StanzaWorld]:
    """The session's world: every module importing this fixture gets the same one (stopping it twice is harmless)."""
    if not WORLDS:
        WORLDS.append(build_world(collections_dir))
    yield WORLDS[0]
    WORLDS[0].stop()


def pgbackrest_vars(world: StanzaWorld, workdir: Path, **extra: t.Any) -> dict[str, t.Any]:
    """The dr_drill variables of a pgBackRest-only drill of the world, its scratch cluster and journal in ``workdir``."""
    return {"dr_drill_logical": False, "dr_drill_pgbackrest_stanza": world.repo.stanza, "dr_drill_pgbackrest_config": str(world.repo.config),
            "dr_drill_pgbackrest_cipher_pass": world.repo.cipher_pass, "dr_drill_database": DATABASE,
            "dr_drill_scratch_dir": str(workdir / "scratch"), "dr_drill_scratch_port": free_port(), "dr_drill_owner_roles": ["payments"],
            "dr_drill_environment": "drilltest", "deploy_journal_dir": str(workdir / "journal"), "dr_drill_journal_host": "localhost", **extra}


def wait_until(check: t.Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()
