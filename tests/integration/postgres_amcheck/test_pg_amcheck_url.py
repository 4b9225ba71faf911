"""pg_amcheck with the whole DATABASE_URL as ``url``: a percent-encoded password works and a parameter only the URL
carries (``target_session_attrs``) reaches libpq, for the checked connection and for ``admin_url`` alike."""

from __future__ import annotations

import json
import secrets
import typing as t
from pathlib import Path
from urllib.parse import quote

import pytest

from amcheck_cluster import Cluster, run_module
from amcheck_helpers import SERVICE_ROLE


@pytest.fixture
def odd_login(cluster: Cluster) -> t.Iterator[tuple[str, str]]:
    """A member of the service role whose password needs percent-encoding in a URL."""
    name, password = f"amc_{secrets.token_hex(4)}", f"p@ss:w/rd%?#&{secrets.token_hex(4)}"
    cluster.execute(f"CREATE ROLE {name} LOGIN IN ROLE {SERVICE_ROLE} PASSWORD '{password}'")
    yield name, password
    cluster.execute(f"DROP ROLE {name}")


def test_url_parameters_reach_libpq(cluster: Cluster, collections_dir: Path, work_dir: Path, service_db: str,
                                    bare_db: str, odd_login: tuple[str, str]) -> None:
    role, password = odd_login
    url = f"postgresql://{role}:{quote(password, safe='')}@127.0.0.1:{cluster.port}/{service_db}?sslmode=disable"

    checked = run_module(collections_dir, work_dir, {"url": url + "&target_session_attrs=read-write"})
    assert checked["rc"] == 0, checked.get("msg")
    assert checked["database"] == service_db and checked["connection"]["user"] == role
    assert "public.payments_pkey" in checked["indexes"]

    # a primary is read-write: libpq refuses it for read-only, which the URL alone asks for
    refused = run_module(collections_dir, work_dir, {"url": url + "&target_session_attrs=read-only"})
    assert refused["failed"] is True and "session is not read-only" in refused["msg"], refused["msg"]

    admin = cluster.dsn("postgres") + "?target_session_attrs=read-only"
    no_admin = run_module(collections_dir, work_dir, {"url": url, "db": bare_db, "admin_url": admin})
    assert no_admin["failed"] is True, "the extension is missing from bare_db: the admin connection is needed"
    assert f"{bare_db}' on 127.0.0.1:{cluster.port} as postgres" in no_admin["msg"], no_admin["msg"]
    assert "session is not read-only" in no_admin["msg"]
    assert password not in json.dumps([checked, refused, no_admin]) and cluster.password not in json.dumps(no_admin)
