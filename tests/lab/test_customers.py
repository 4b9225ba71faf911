"""Customers: create and read back through the API, and check the row PostgreSQL holds."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

import psycopg
import pytest

if TYPE_CHECKING:
    from conftest import Postgres, RunningService

pytestmark = pytest.mark.timeout(120)


def test_create_then_get_round_trip(service: RunningService, postgres: Postgres, api_key: str,
                                    app_secrets: dict[str, str]) -> None:
    created = service.call("POST", "/v1/customers", token=api_key,
                           body={"email": "Ada@Example.com", "name": "Ada Lovelace"})
    assert created.status == 201
    customer = created.json()
    assert customer["id"].startswith("cus_") and customer["email"] == "Ada@Example.com"
    assert isinstance(customer["created"], int)
    fetched = service.call("GET", f"/v1/customers/{customer['id']}", token=api_key)
    assert (fetched.status, fetched.json()) == (200, customer)
    with psycopg.connect(postgres.admin_dsn()) as conn:
        row = conn.execute("SELECT email, name, email_hash FROM customers WHERE id = %s", (customer["id"],)).fetchone()
    expected_hash = hmac.new(app_secrets["HASH_SALT"].encode(), b"ada@example.com", hashlib.sha256).hexdigest()
    assert row == ("Ada@Example.com", "Ada Lovelace", expected_hash)


def test_unknown_customer_is_404(service: RunningService, api_key: str) -> None:
    reply = service.call("GET", "/v1/customers/cus_doesnotexist", token=api_key)
    assert (reply.status, reply.json()["error"]["code"]) == (404, "customer_not_found")


@pytest.mark.parametrize("body, code", [
    ({"email": "not-an-email", "name": "X"}, "invalid_email"),
    ({"email": "a@example.com", "name": ""}, "invalid_name"),
    ({"email": "a@example.com"}, "invalid_name"),
    ({"email": "a@example.com", "name": "X", "admin": True}, "invalid_request"),
    (["a@example.com"], "invalid_request"),
])
def test_invalid_customer_is_400(service: RunningService, api_key: str, body: object, code: str) -> None:
    reply = service.call("POST", "/v1/customers", token=api_key, body=body)
    assert (reply.status, reply.json()["error"]["code"]) == (400, code)


def test_body_must_be_json(service: RunningService, api_key: str) -> None:
    reply = service.call("POST", "/v1/customers", token=api_key, headers={"Content-Type": "text/plain"})
    assert reply.status == 415
    broken = service.call("POST", "/v1/customers", token=api_key,
                          headers={"Content-Type": "application/json", "Content-Length": "0"})
    assert (broken.status, broken.json()["error"]["code"]) == (400, "invalid_json")


def test_admin_stats_counts_customers(service: RunningService, api_key: str, admin_key: str) -> None:
    before = service.call("GET", "/admin/stats", token=admin_key).json()["customers"]
    service.call("POST", "/v1/customers", token=api_key, body={"email": "b@example.com", "name": "B"})
    assert service.call("GET", "/admin/stats", token=admin_key).json()["customers"] == before + 1


def test_dropped_database_connections_are_reopened(service: RunningService, postgres: Postgres, api_key: str,
                                                   admin_key: str) -> None:
    created = service.call("POST", "/v1/customers", token=api_key, body={"email": "f@example.com", "name": "F"})
    for _attempt in range(8):  # give several worker threads a connection
        service.call("GET", "/readyz")
    with psycopg.connect(postgres.admin_dsn(), autocommit=True) as conn:
        dropped = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE application_name = 'payment-service'").fetchone()
    assert dropped is not None and dropped[0] >= 1
    for _attempt in range(8):
        assert service.call("GET", "/readyz").status == 200
        assert service.call("GET", f"/v1/customers/{created.json()['id']}", token=api_key).status == 200
    assert service.call("GET", "/admin/stats", token=admin_key).status == 200


def test_oversized_body_is_413(service: RunningService, api_key: str) -> None:
    reply = service.call("POST", "/v1/customers", token=api_key, body={"email": "g@example.com", "name": "x" * 70000})
    assert (reply.status, reply.json()["error"]["code"]) == (413, "payload_too_large")
