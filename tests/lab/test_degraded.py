"""An instance whose dependencies fail: not ready, 503/500 answers without details, and nothing leaks."""

from __future__ import annotations

import secrets
import socket
from typing import TYPE_CHECKING, Callable

import pytest

if TYPE_CHECKING:
    from conftest import Postgres, RedisServer, RunningService

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def degraded(launcher: Callable[..., RunningService], redis_factory: Callable[[], RedisServer],
             postgres: Postgres, service_env: dict[str, str]) -> tuple[RunningService, RedisServer]:
    """An instance with its own Redis and a database that lacks the schema."""
    redis_server = redis_factory()
    env = {**service_env, "REDIS_URL": redis_server.url, "DATABASE_URL": postgres.app_url("postgres")}
    return launcher(env), redis_server


def test_readyz_is_503_when_redis_stops(degraded: tuple[RunningService, RedisServer],
                                        secret_values: list[str]) -> None:
    running, redis_server = degraded
    assert running.call("GET", "/readyz").status == 200
    redis_server.proc.terminate()
    redis_server.proc.wait(30)
    for _attempt in range(3):
        reply = running.call("GET", "/readyz")
        assert reply.status == 503
        assert reply.json() == {"status": "not-ready",
                                "checks": {"postgres": "ok", "redis": "error: ConnectionError", "stripe": "ok"}}
    assert running.call("GET", "/healthz").status == 200
    assert running.log().count("readiness check redis: error: ConnectionError") == 1  # changes only
    assert not [value for value in secret_values if value in running.log()]


def test_unexpected_error_is_a_bare_500(degraded: tuple[RunningService, RedisServer], api_key: str,
                                        secret_values: list[str]) -> None:
    running, _redis = degraded
    reply = running.call("POST", "/v1/customers", token=api_key, body={"email": "e@example.com", "name": "E"})
    assert (reply.status, reply.json()) == (500, {"error": {"type": "api_error", "code": "internal_error",
                                                            "message": "internal error"}})
    assert reply.headers["x-served-by"] == "app1-green"
    log = running.log()
    assert "Traceback" in log and "UndefinedTable" in log
    assert not [value for value in secret_values if value in log + reply.body.decode()]


def test_postgres_down_is_503_not_ready(launcher: Callable[..., RunningService], service_env: dict[str, str],
                                        api_key: str) -> None:
    password = secrets.token_hex(8)
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        dead = f"postgresql://payments_app:{password}@127.0.0.1:{closed.getsockname()[1]}/payments"
        running = launcher({**service_env, "DATABASE_URL": dead})
        ready = running.call("GET", "/readyz")
        reply = running.call("GET", "/v1/customers/cus_x", token=api_key)
    assert (ready.status, ready.json()["checks"]["postgres"]) == (503, "error: OperationalError")
    assert (reply.status, reply.json()["error"]["code"]) == (503, "service_unavailable")
    assert reply.headers["retry-after"] == "1"
    assert password not in running.log() + ready.body.decode() + reply.body.decode()
