"""Liveness, the load balancer's check and readiness answer three different questions; the dependency gauges follow."""

from __future__ import annotations

import secrets
import socket
import time
from typing import TYPE_CHECKING, Callable

import pytest

if TYPE_CHECKING:
    from conftest import RedisServer, RunningService, StripeEmulator

pytestmark = pytest.mark.timeout(180)


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll check until it holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def gauges(running: RunningService) -> dict[str, float]:
    """dependency_up by dependency, as /metrics shows it now."""
    return {name: running.metric(f'dependency_up{{dependency="{name}"}}') for name in ("postgres", "redis", "stripe")}


@pytest.fixture
def own_dependencies(launcher: Callable[..., RunningService], redis_factory: Callable[[], RedisServer],
                     stripe_emulator_factory: Callable[..., StripeEmulator],
                     service_env: dict[str, str]) -> tuple[RunningService, RedisServer, StripeEmulator]:
    """An instance with a Redis and a Stripe emulator of its own, so that the test may stop them."""
    redis_server, emulator = redis_factory(), stripe_emulator_factory()
    running = launcher({**service_env, "REDIS_URL": redis_server.url, "STRIPE_API_BASE": emulator.url})
    return running, redis_server, emulator


def test_lb_check_serves_while_redis_and_stripe_are_down(
        own_dependencies: tuple[RunningService, RedisServer, StripeEmulator], api_key: str) -> None:
    running, redis_server, emulator = own_dependencies
    customer = running.call("POST", "/v1/customers", token=api_key, body={"email": "lb@example.com", "name": "LB"})
    assert running.call("GET", "/readyz").status == 200
    lb = running.call("GET", "/healthz/lb")
    assert (lb.status, lb.json()) == (200, {"status": "serving", "checks": {"postgres": "ok"}})
    assert lb.headers["x-content-type-options"] == "nosniff"
    for proc in (redis_server.proc, emulator.proc):
        proc.terminate()
        proc.wait(30)
    eventually(lambda: running.call("GET", "/readyz").json()["checks"]["stripe"] != "ok", "readyz to see Stripe down")
    ready = running.call("GET", "/readyz")
    assert (ready.status, ready.json()) == (503, {"status": "not-ready", "checks": {
        "postgres": "ok", "redis": "error: ConnectionError", "stripe": "error: APIConnectionError"}})
    for _attempt in range(5):
        lb = running.call("GET", "/healthz/lb")
        assert (lb.status, lb.json()["status"]) == (200, "serving")
    assert running.call("GET", "/healthz").status == 200
    # What needs neither Stripe nor Redis keeps serving: the customer comes from the database.
    fetched = running.call("GET", f"/v1/customers/{customer.json()['id']}", token=api_key)
    assert (fetched.status, fetched.json()) == (200, customer.json())


def test_lb_check_fails_without_postgres(launcher: Callable[..., RunningService], service_env: dict[str, str]) -> None:
    password = secrets.token_hex(8)
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        dead = f"postgresql://payments_app:{password}@127.0.0.1:{closed.getsockname()[1]}/payments"
        running = launcher({**service_env, "DATABASE_URL": dead})
        lb = running.call("GET", "/healthz/lb")
    assert (lb.status, lb.json()) == (503, {"status": "not-serving", "checks": {"postgres": "error: OperationalError"}})
    assert running.call("GET", "/healthz").status == 200  # alive all the same: no restart needed
    assert password not in running.log() + lb.body.decode()


def test_dependency_gauges_flip_with_the_dependencies(
        own_dependencies: tuple[RunningService, RedisServer, StripeEmulator]) -> None:
    running, redis_server, emulator = own_dependencies
    assert gauges(running) == {"postgres": 1, "redis": 1, "stripe": 1}
    assert 'dependency="smtp"' not in running.call("GET", "/metrics").body.decode()  # no SMTP_URL: no SMTP gauge
    redis_server.proc.terminate()
    redis_server.proc.wait(30)
    assert gauges(running) == {"postgres": 1, "redis": 0, "stripe": 1}
    emulator.proc.terminate()
    emulator.proc.wait(30)
    eventually(lambda: gauges(running)["stripe"] == 0, "the Stripe gauge to drop")  # the check is cached a few seconds
    assert gauges(running) == {"postgres": 1, "redis": 0, "stripe": 0}
    # /readyz refreshes the same gauges.
    assert running.call("GET", "/readyz").status == 503
    assert gauges(running)["redis"] == 0


def test_lb_check_is_cheap_and_never_calls_stripe(launcher: Callable[..., RunningService],
                                                  stripe_emulator_factory: Callable[..., StripeEmulator],
                                                  service_env: dict[str, str]) -> None:
    emulator = stripe_emulator_factory()
    running = launcher({**service_env, "STRIPE_API_BASE": emulator.url})
    for _attempt in range(50):
        assert running.call("GET", "/healthz/lb").status == 200
    assert emulator.requests("GET", "/v1/balance") == []
