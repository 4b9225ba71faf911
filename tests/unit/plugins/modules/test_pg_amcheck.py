"""Unit tests of pg_amcheck's input checks and admin_url parsing: bad input fails before anything is connected to.

The checks themselves run against a real PostgreSQL in tests/integration/postgres_amcheck.
"""

from __future__ import annotations

import json
import typing as t

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _amcheck as amcheck
from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg
from ansible_collections.payments.deploy.plugins.modules import pg_amcheck


@pytest.fixture(autouse=True)
def nothing_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise AssertionError("nothing may be connected to")

    monkeypatch.setattr(pg.psycopg, "connect", forbidden)


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any]) -> dict[str, t.Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        pg_amcheck.main()
    return json.loads(capsys.readouterr().out)


def test_every_problem_is_reported_together(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {"db": "", "schema": "", "lock_timeout": "1 minute", "connect_timeout": 0,
                          "admin_url": "mysql://root:hunter2-secret@db/x"})

    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == ("admin_url must be a postgresql://user:password@host:port/db URL or a libpq connection string "
                             "(its scheme is 'mysql'); db must not be empty (set db, or url with a database name); "
                             "schema must not be empty; "
                             "lock_timeout '1 minute' is not a PostgreSQL duration such as 10s, 500ms or 0; "
                             "connect_timeout must be at least 1 second")
    assert "hunter2-secret" not in json.dumps(result)


@pytest.mark.parametrize("timeout", ["0", "10s", "500ms", "2min", "1h", "30"])
def test_lock_timeouts_postgres_accepts_pass_validation(timeout: str) -> None:
    assert pg_amcheck.LOCK_TIMEOUT.match(timeout)


def test_admin_url_parts_are_decoded_and_every_parameter_kept() -> None:
    url = amcheck.parse_admin_url("postgresql://db%40admin:p%40ss%2Fw@db.internal:6432/postgres?sslmode=require"
                                  "&sslcert=/etc/admin.crt&options=-c%20statement_timeout%3D5s")
    assert url == {"host": "db.internal", "port": "6432", "user": "db@admin", "password": "p@ss/w", "dbname": "postgres",
                   "sslmode": "require", "sslcert": "/etc/admin.crt", "options": "-c statement_timeout=5s"}
    assert amcheck.parse_admin_url("postgres://admin@/x") == {"user": "admin", "dbname": "x"}
    assert amcheck.parse_admin_url("user=admin host=/run/postgresql") == {"user": "admin", "host": "/run/postgresql"}


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://admin:pw@db:54x2/x", "admin_url has a port that is not a number: '54x2'"),
    ("db.internal:5432", "admin_url is not a valid postgresql:// URL or connection string (libpq cannot parse it; "
                         "the value is not shown because it holds a password)"),
    ("postgresql://:pw@db/x", "admin_url has no user name (postgresql://user:password@host:port/db)"),
])
def test_malformed_admin_urls(url: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        amcheck.parse_admin_url(url)
    assert str(caught.value) == problem
