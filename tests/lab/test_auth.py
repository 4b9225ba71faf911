"""Bearer-token authentication: the API key for resources, the admin key for admin endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import RunningService

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_resource_without_a_valid_token_is_401(service: RunningService, token: str | None) -> None:
    failures = service.metric("auth_failures_total")
    reply = service.call("GET", "/v1/customers/cus_missing", token=token)
    assert reply.status == 401
    assert (reply.json()["error"]["type"], reply.json()["error"]["code"]) == ("authentication_error", "unauthorized")
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert service.metric("auth_failures_total") == failures + 1


def test_other_scheme_is_401(service: RunningService, api_key: str) -> None:
    reply = service.call("GET", "/v1/customers/cus_missing", headers={"Authorization": f"Basic {api_key}"})
    assert reply.status == 401


def test_admin_endpoint_needs_the_admin_role(service: RunningService, api_key: str, admin_key: str) -> None:
    failures = service.metric("auth_failures_total")
    assert service.call("GET", "/admin/stats").status == 401
    forbidden = service.call("GET", "/admin/stats", token=api_key)
    assert (forbidden.status, forbidden.json()["error"]["code"]) == (403, "forbidden")
    allowed = service.call("GET", "/admin/stats", token=admin_key)
    assert allowed.status == 200
    assert isinstance(allowed.json()["customers"], int)
    assert service.metric("auth_failures_total") == failures + 1  # a 403 is no failed authentication


def test_admin_key_is_not_an_api_key(service: RunningService, admin_key: str) -> None:
    assert service.call("GET", "/v1/customers/cus_missing", token=admin_key).status == 403
