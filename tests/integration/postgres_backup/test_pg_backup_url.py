"""pg_backup and pg_restore_backup with the whole DATABASE_URL as ``url``: a percent-encoded password works, and a
parameter that only the URL carries (``application_name``) reaches libpq, in psycopg and in pg_dump and pg_restore
alike (the server logs each connection with its application name); ``sslmode=require`` against a server without TLS
fails clearly."""

from __future__ import annotations

import json
import re
import secrets
import typing as t
from pathlib import Path
from urllib.parse import quote

import pytest

from pg_backup_helpers import run_module
from pg_backup_servers import PostgresCluster


@pytest.fixture
def odd_role(cluster: PostgresCluster) -> t.Iterator[tuple[str, str]]:
    """A superuser whose password needs percent-encoding in a URL."""
    name, password = f"bk_{secrets.token_hex(4)}", f"p@ss:w/rd%?#&{secrets.token_hex(4)}"
    cluster.execute(f"CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{password}'")
    yield name, password
    cluster.execute(f"DROP ROLE {name}")


@pytest.fixture
def connection_log(cluster: PostgresCluster) -> t.Iterator[t.Callable[[], list[str]]]:
    """The server's "connection authorized" lines from now on (log_connections on for the test)."""
    log = cluster.dir / "postgres.log"
    start = log.stat().st_size
    cluster.execute("ALTER SYSTEM SET log_connections = on")
    cluster.execute("SELECT pg_reload_conf()")

    def lines() -> list[str]:
        with log.open("rb") as handle:
            handle.seek(start)
            return [line for line in handle.read().decode("utf-8", "replace").splitlines() if "connection authorized" in line]

    yield lines
    cluster.execute("ALTER SYSTEM RESET log_connections")
    cluster.execute("SELECT pg_reload_conf()")


def test_the_whole_url_reaches_psycopg_and_the_client_programs(
        cluster: PostgresCluster, database: str, workdir: Path, key: str, collections_dir: Path,
        odd_role: tuple[str, str], connection_log: t.Callable[[], list[str]]) -> None:
    role, password = odd_role
    tag = f"url-probe-{secrets.token_hex(3)}"
    url = f"postgresql://{role}:{quote(password, safe='')}@127.0.0.1:{cluster.port}/{database}?application_name={tag}"
    dest = workdir / "dest"

    backup = run_module(collections_dir, "pg_backup", {"url": url, "encryption_key": key, "dest_dir": str(dest)})
    assert backup.get("failed") is not True, backup.get("msg")
    assert backup["connection"]["user"] == role and backup["connection"]["port"] == cluster.port
    restore = run_module(collections_dir, "pg_restore_backup", {"url": url, "db": "postgres", "target_db": database,
                                                                "backup_id": backup["backup_id"], "src_dir": str(dest),
                                                                "encryption_key": key})
    assert restore.get("failed") is not True, restore.get("msg")
    assert password not in json.dumps([backup, restore]) and quote(password, safe="") not in json.dumps([backup, restore])

    # one line per connection, psycopg's and the client programs' alike (without the URL's parameters pg_dump and
    # pg_restore would say application_name=payments.deploy)
    names = {(m.group(1), m.group(2)) for m in (re.search(r"user=(\S+) database=(\S+) application_name=(\S+)", line)
                                                for line in connection_log()) if m and m.group(3) == tag}
    logged = [line for line in connection_log() if f"user={role} " in line]
    assert logged and all(line.endswith(f"application_name={tag}") for line in logged), logged
    assert (role, database) in names and (role, "postgres") in names
    assert any(db.startswith(f"{database}_restore_") for _user, db in names), names  # where pg_restore restored


def test_sslmode_require_of_the_url_against_a_server_without_tls_fails_clearly(
        cluster: PostgresCluster, database: str, workdir: Path, key: str, collections_dir: Path) -> None:
    url = (f"postgresql://{cluster.user}:{quote(cluster.password, safe='')}@127.0.0.1:{cluster.port}/{database}"
           "?sslmode=require")
    result = run_module(collections_dir, "pg_backup", {"url": url, "encryption_key": key, "dest_dir": str(workdir)})
    assert result["failed"] is True
    assert "server does not support SSL, but SSL was required" in result["msg"]
    assert cluster.password not in json.dumps(result)
