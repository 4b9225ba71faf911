"""Health, version, routing errors and security headers of a running release."""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import RunningService

pytestmark = pytest.mark.timeout(120)

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'",
}


def test_healthz(service: RunningService) -> None:
    reply = service.call("GET", "/healthz")
    assert (reply.status, reply.json()) == (200, {"status": "ok"})


def test_readyz_checks_postgres_redis_and_stripe(service: RunningService) -> None:
    reply = service.call("GET", "/readyz")
    assert reply.status == 200
    assert reply.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok", "stripe": "ok"}}


def test_version_comes_from_the_release_manifest(service: RunningService) -> None:
    reply = service.call("GET", "/version")
    assert reply.json() == {"name": "payment-service", "version": "1.1.0", "instance": "app1-green",
                            "colour": "green"}


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/healthz", 200), ("GET", "/nope", 404), ("DELETE", "/healthz", 405), ("GET", "/v1/customers/x", 401),
])
def test_every_response_has_security_and_identity_headers(service: RunningService, method: str, path: str,
                                                          status: int) -> None:
    reply = service.call(method, path)
    assert reply.status == status
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers[name] == value
    assert reply.headers["strict-transport-security"].startswith("max-age=")
    assert reply.headers["x-served-by"] == "app1-green"
    assert reply.headers["x-service-version"] == "1.1.0"
    assert reply.headers["content-type"].startswith("application/json")
    assert "access-control-allow-origin" not in reply.headers


def test_unknown_route_and_wrong_method_answer_json(service: RunningService) -> None:
    missing = service.call("GET", "/does/not/exist")
    assert (missing.status, missing.json()["error"]["code"]) == (404, "not_found")
    wrong = service.call("POST", "/healthz")
    assert (wrong.status, wrong.json()["error"]["code"]) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "GET"


def test_head_is_served_without_a_body(service: RunningService) -> None:
    reply = service.call("HEAD", "/readyz")
    assert reply.status == 200 and reply.body == b""


def test_connections_are_kept_alive(service: RunningService) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    sockets = []
    try:
        for path in ("/healthz", "/version", "/readyz"):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            sockets.append(connection.sock)
    finally:
        connection.close()
    assert sockets[0] is not None and sockets == [sockets[0]] * 3


@pytest.mark.parametrize("method, path, token, status, error_type", [
    ("GET", "/v1/customers/cus_x", None, 401, "authentication_error"),
    ("GET", "/admin/stats", "api", 403, "invalid_request_error"),
    ("GET", "/v1/customers/cus_x", "api", 404, "invalid_request_error"),
    ("DELETE", "/healthz", None, 405, "invalid_request_error"),
    ("POST", "/v1/customers", "api", 415, "invalid_request_error"),
])
def test_errors_have_stripes_shape(service: RunningService, api_key: str, method: str, path: str, token: str | None,
                                   status: int, error_type: str) -> None:
    reply = service.call(method, path, token=api_key if token else None)
    assert reply.status == status
    error = reply.json()["error"]
    assert error["type"] == error_type
    assert error["code"] and error["message"]


def test_lb_check_of_a_healthy_instance(service: RunningService) -> None:
    reply = service.call("GET", "/healthz/lb")
    assert (reply.status, reply.json()) == (200, {"status": "serving", "checks": {"postgres": "ok"}})
    assert service.call("HEAD", "/healthz/lb").status == 200
    assert service.call("POST", "/healthz/lb").status == 405
