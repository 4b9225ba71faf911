"""Bad inputs get a clear error; connection failures name the database; no password is ever returned."""

from __future__ import annotations

import json

from amcheck_cluster import Cluster
from amcheck_helpers import Amcheck


def test_malformed_admin_url_fails_before_connecting(amcheck: Amcheck) -> None:
    """The other malformed URLs and options: tests/unit/plugins/modules/test_pg_amcheck.py."""
    result = amcheck("does_not_matter", admin_url="http://root:s3cret-pw@db:5432/x")

    assert result["failed"] is True
    assert result["msg"] == ("admin_url must be a postgresql://user:password@host:port/db URL or a libpq connection string "
                             "(its scheme is 'http')")
    assert "s3cret-pw" not in json.dumps(result)
    assert "indexes" not in result, "nothing was connected to"


def test_unknown_schema(amcheck: Amcheck, service_db: str) -> None:
    result = amcheck(service_db, schema="nope")

    assert result["failed"] is True
    assert result["msg"] == f"schema 'nope' does not exist in database '{service_db}'"


def test_database_that_does_not_exist(amcheck: Amcheck, cluster: Cluster) -> None:
    result = amcheck("no_such_db")

    assert result["failed"] is True
    assert result["msg"].startswith(f"cannot connect to database 'no_such_db' on 127.0.0.1:{cluster.port} as svc: ")
    assert 'database "no_such_db" does not exist' in result["msg"]


def test_wrong_password_is_never_shown(amcheck: Amcheck, service_db: str) -> None:
    result = amcheck(service_db, login_password="wrong-pw-0123456789")

    assert result["failed"] is True and 'password authentication failed for user "svc"' in result["msg"]
    assert "wrong-pw-0123456789" not in json.dumps(result)
