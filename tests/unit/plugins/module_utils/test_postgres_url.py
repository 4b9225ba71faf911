"""The ``url`` connection option of the PostgreSQL modules: libpq's reading of it, every parameter kept, the options
that are set overriding its parts; bad URLs fail before anything connects, never showing the URL.

Runs without PostgreSQL; the URL reaching a real server is in tests/integration/postgres_backup/test_pg_backup_url.py.
"""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg
from ansible_collections.payments.deploy.plugins.modules import pg_amcheck, pg_backup, pg_restore_backup

URL = ("postgresql://backup:p%40ss%3Aw@db1.internal:6432/payments?sslmode=verify-full&sslrootcert=/etc/ca.pem"
       "&sslcert=/etc/client.crt&sslkey=/etc/client.key&sslcrl=/etc/crl.pem&target_session_attrs=read-write"
       "&options=-c%20statement_timeout%3D5s")
KEY = "0f" * 32


@pytest.fixture(autouse=True)
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise AssertionError(f"nothing may run, but it was called with {args!r} {kwargs!r}")

    monkeypatch.setattr(pg.psycopg, "connect", forbidden)
    monkeypatch.setattr(pg.subprocess, "Popen", forbidden)
    monkeypatch.setattr(pg.subprocess, "run", forbidden)
    monkeypatch.delenv("PGPASSWORD", raising=False)


def test_every_parameter_of_the_url_is_kept_and_the_password_decoded() -> None:
    conn = pg.Connection({"url": URL})
    assert conn.problems == []
    assert (conn.host, conn.port, conn.user, conn.password, conn.dbname) == ("db1.internal", 6432, "backup", "p@ss:w", "payments")
    assert (conn.ssl_mode, conn.ca_cert, conn.connect_timeout) == ("verify-full", "/etc/ca.pem", 10)
    assert conn.env() == {"PGHOST": "db1.internal", "PGPORT": "6432", "PGUSER": "backup", "PGSSLMODE": "verify-full",
                          "PGSSLROOTCERT": "/etc/ca.pem", "PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "payments.deploy"}
    # what the libpq environment cannot carry reaches client programs in their --dbname, each value quoted
    assert conn.conninfo("payments") == ("dbname='payments' options='-c statement_timeout=5s' sslcert='/etc/client.crt' "
                                         "sslcrl='/etc/crl.pem' sslkey='/etc/client.key' target_session_attrs='read-write'")
    assert "p@ss" not in conn.conninfo("payments") + json.dumps(conn.env()) + json.dumps(conn.describe())


def test_options_that_are_set_override_the_url_and_defaults_fill_the_rest() -> None:
    conn = pg.Connection({"url": URL, "login_host": "db2.internal", "login_port": 5433, "login_password": "other",
                          "db": "payments_copy", "ssl_mode": "require", "connect_timeout": 3})
    assert (conn.host, conn.port, conn.user, conn.password, conn.dbname) == ("db2.internal", 5433, "backup", "other", "payments_copy")
    assert (conn.ssl_mode, conn.ca_cert, conn.connect_timeout) == ("require", "/etc/ca.pem", 3)
    bare = pg.Connection({"url": "postgresql:///payments"})
    assert (bare.host, bare.port, bare.user, bare.ssl_mode, bare.connect_timeout) == ("localhost", 5432, "postgres", "prefer", 10)
    assert pg.Connection({"db": "x"}).conninfo("x") == "dbname='x'"


def test_psycopg_gets_every_keyword(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, t.Any] = {}
    monkeypatch.setattr(pg.psycopg, "connect", lambda **kwargs: seen.update(kwargs))
    pg.Connection({"url": URL + "&application_name=mine"}).connect("payments")
    assert seen == {"host": "db1.internal", "port": "6432", "user": "backup", "password": "p@ss:w", "dbname": "payments",
                    "sslmode": "verify-full", "sslrootcert": "/etc/ca.pem", "sslcert": "/etc/client.crt",
                    "sslkey": "/etc/client.key", "sslcrl": "/etc/crl.pem", "target_session_attrs": "read-write",
                    "options": "-c statement_timeout=5s", "application_name": "mine", "connect_timeout": "10",
                    "autocommit": True}


def test_the_password_file_names_each_host_with_its_port() -> None:
    conn = pg.Connection({"url": "postgresql://backup:pw@db1:6432,db2:6433/payments"})
    path = Path(conn.passfile())
    try:
        assert path.read_text() == "db1:6432:*:backup:pw\ndb2:6433:*:backup:pw\n"
    finally:
        conn.remove_passfile()


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://backup:s3cret@db:54x2/payments", "url has a port that is not a number: '54x2'"),
    ("mysql://backup:s3cret@db/payments", "url must be a postgresql://user:password@host:port/db URL or a libpq "
                                          "connection string (its scheme is 'mysql')"),
    ("host=db password=s3cret dbname='unterminated", "url is not a valid postgresql:// URL or connection string (libpq "
                                                     "cannot parse it; the value is not shown because it holds a password)"),
    ("postgresql://backup:s3cret@db/payments?sslmode=sometimes", "url has sslmode='sometimes', which is not one of "
                                                                 "disable, allow, prefer, require, verify-ca, verify-full"),
    ("postgresql://backup:s3cret@db/payments?service=elsewhere", "url must not set service: the connection and the "
                                                                 "password are the module's own"),
    ("postgresql://backup:s3cret@db/payments?passfile=/tmp/x", "url must not set passfile: the connection and the "
                                                               "password are the module's own"),
    ("postgresql://backup:s3cret@db/payments?connect_timeout=0", "connect_timeout must be at least 1 second"),
])
def test_a_url_that_cannot_be_used_fails_before_anything_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                              url: str, problem: str) -> None:
    with patch_module_args({"url": url, "encryption_key": KEY, "dest_dir": str(tmp_path)}), pytest.raises(SystemExit):
        pg_backup.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True and problem in result["msg"], result["msg"]
    assert "s3cret" not in json.dumps(result) and result["commands"] == []


def test_a_database_is_needed_from_db_or_the_url(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with patch_module_args({"url": "postgresql://backup@db", "encryption_key": KEY, "dest_dir": str(tmp_path)}), \
            pytest.raises(SystemExit):
        pg_backup.main()
    assert "no database to back up: set db, or url with a database name" in json.loads(capsys.readouterr().out)["msg"]
    with patch_module_args({"login_host": "db"}), pytest.raises(SystemExit):
        pg_amcheck.main()
    assert "one of the following is required: url, db" in json.loads(capsys.readouterr().out)["msg"]


@pytest.mark.parametrize("target_db", ["host=ATTACKER dbname=x", "postgresql://attacker/x", "payments\n"])
def test_a_target_db_read_as_a_connection_string_is_still_refused_with_a_url(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, target_db: str) -> None:
    args = {"url": "postgresql://admin:pw@db/postgres", "target_db": target_db, "backup_id": "latest",
            "src_dir": str(tmp_path), "encryption_key": KEY}
    with patch_module_args(args), pytest.raises(SystemExit):
        pg_restore_backup.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    assert f"target_db {target_db!r} is not a plain database name" in result["msg"]
