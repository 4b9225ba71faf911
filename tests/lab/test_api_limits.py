"""Per-key rate limit (failing open without Redis), CORS for listed origins only, and their configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pytest

if TYPE_CHECKING:
    from conftest import RedisServer, Reply, RunningService

pytestmark = pytest.mark.timeout(180)

SHOP = "https://shop.example.com"
EVIL = "https://evil.example.net"


@pytest.fixture
def limited(launcher: Callable[..., RunningService], redis_factory: Callable[[], RedisServer],
            service_env: dict[str, str]) -> tuple[RunningService, RedisServer]:
    """An instance allowing 3 API requests per minute, with a Redis of its own (fresh counters)."""
    redis_server = redis_factory()
    env = {**service_env, "REDIS_URL": redis_server.url, "PAYMENTS_RATE_LIMIT_PER_MINUTE": "3"}
    return launcher(env), redis_server


def test_over_the_limit_is_429_with_retry_after(limited: tuple[RunningService, RedisServer], api_key: str) -> None:
    running, _redis = limited
    # 8 requests span at most two one-minute windows, so one window sees at least 4 of them: one 429 at least.
    statuses = []
    for _attempt in range(8):
        reply = running.call("GET", "/v1/payments/pay_unknown", token=api_key)
        statuses.append(reply.status)
        if reply.status == 429:
            assert (reply.json()["error"]["type"], reply.json()["error"]["code"]) == ("rate_limit_error", "rate_limited")
            assert 1 <= int(reply.headers["retry-after"]) <= 60
    assert statuses[0] == 404 and 429 in statuses, statuses
    assert set(statuses) == {404, 429}
    assert running.call("GET", "/healthz").status == 200  # health endpoints are not limited
    assert running.call("GET", "/v1/payments/pay_unknown").status == 401  # nor counted without a valid key


def test_without_redis_requests_are_not_limited(limited: tuple[RunningService, RedisServer], api_key: str) -> None:
    running, redis_server = limited
    redis_server.proc.terminate()
    redis_server.proc.wait(30)
    statuses = [running.call("GET", "/v1/payments/pay_unknown", token=api_key).status for _attempt in range(6)]
    assert statuses == [404] * 6
    assert running.log().count("rate limit: Redis unavailable, requests are not limited") == 1
    assert running.metric('ratelimit_fail_open_total{limiter="api"}') == 6
    assert running.metric('ratelimit_fail_open_total{limiter="smoke"}') == 0


@pytest.fixture
def smoke_limited(launcher: Callable[..., RunningService], redis_factory: Callable[[], RedisServer],
                  service_env: dict[str, str]) -> RunningService:
    """An instance whose smoke key may send 2 requests per minute (the API key keeps the default 600)."""
    redis_server = redis_factory()
    env = {**service_env, "REDIS_URL": redis_server.url, "PAYMENTS_SMOKE_RATE_LIMIT_PER_MINUTE": "2"}
    env.pop("PAYMENTS_RATE_LIMIT_PER_MINUTE", None)
    return launcher(env)


def test_smoke_key_has_its_own_small_limit(smoke_limited: RunningService, smoke_key: str, api_key: str) -> None:
    # 6 requests span at most two one-minute windows, so one window sees at least 3 of them: one 429 at least.
    replies = [smoke_limited.call("GET", "/v1/payments/pay_unknown", token=smoke_key) for _attempt in range(6)]
    statuses = [reply.status for reply in replies]
    assert statuses[0] == 404 and set(statuses) == {404, 429}, statuses
    for reply in replies:
        if reply.status == 429:
            error = reply.json()["error"]
            assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limited")
            assert 1 <= int(reply.headers["retry-after"]) <= 60
    # The API key counts apart: real traffic is never throttled by the smoke checks.
    assert [smoke_limited.call("GET", "/v1/payments/pay_unknown", token=api_key).status
            for _attempt in range(10)] == [404] * 10
    limited = statuses.count(429)
    assert smoke_limited.metric('rate_limited_total{limiter="smoke"}') == limited
    assert smoke_limited.metric('rate_limited_total{limiter="api"}') == 0


def test_smoke_key_has_the_api_role_only(service: RunningService, smoke_key: str) -> None:
    assert service.call("GET", "/v1/customers/cus_nobody", token=smoke_key).status == 404
    forbidden = service.call("GET", "/admin/stats", token=smoke_key)
    assert (forbidden.status, forbidden.json()["error"]["type"]) == (403, "invalid_request_error")


@pytest.mark.parametrize("same_as", ["PAYMENTS_API_KEY", "PAYMENTS_ADMIN_KEY"])
def test_smoke_key_equal_to_another_key_stops_the_start(launcher: Callable[..., RunningService],
                                                        service_env: dict[str, str], same_as: str) -> None:
    running = launcher({**service_env, "PAYMENTS_SMOKE_KEY": service_env[same_as]}, wait=False)
    assert running.proc.wait(30) == 78
    log = running.log()
    assert "configuration error: PAYMENTS_SMOKE_KEY must differ" in log
    assert service_env[same_as] not in log


@pytest.fixture
def cors_instance(launcher: Callable[..., RunningService], service_env: dict[str, str]) -> RunningService:
    return launcher({**service_env, "PAYMENTS_CORS_ORIGINS": f"{SHOP}, https://admin.example.com:8443"})


def preflight(running: RunningService, origin: str, method: str = "POST", path: str = "/v1/payments") -> Reply:
    return running.call("OPTIONS", path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                                  "Access-Control-Request-Headers": "authorization,idempotency-key"})


def test_preflight_from_a_listed_origin(cors_instance: RunningService) -> None:
    reply = preflight(cors_instance, SHOP)
    assert reply.status == 204 and reply.body == b""
    assert reply.headers["access-control-allow-origin"] == SHOP
    assert reply.headers["access-control-allow-methods"] == "POST"
    assert "Idempotency-Key" in reply.headers["access-control-allow-headers"]
    assert reply.headers["x-frame-options"] == "DENY"  # security headers stay
    assert "content-length" not in reply.headers


def test_preflight_from_another_origin_or_for_another_method_is_refused(cors_instance: RunningService) -> None:
    for reply in (preflight(cors_instance, EVIL), preflight(cors_instance, SHOP, method="DELETE"),
                  preflight(cors_instance, SHOP, method="GET", path="/metrics")):
        assert (reply.status, reply.json()["error"]["code"]) == (403, "cors_forbidden")
        assert "access-control-allow-origin" not in reply.headers


def test_responses_name_only_a_listed_origin(cors_instance: RunningService, api_key: str) -> None:
    allowed = cors_instance.call("GET", "/v1/payments/pay_unknown", token=api_key, headers={"Origin": SHOP})
    assert allowed.status == 404
    assert allowed.headers["access-control-allow-origin"] == SHOP
    assert allowed.headers["vary"] == "Origin"
    assert allowed.headers["x-content-type-options"] == "nosniff"
    denied = cors_instance.call("GET", "/v1/payments/pay_unknown", token=api_key, headers={"Origin": EVIL})
    assert denied.status == 404 and "access-control-allow-origin" not in denied.headers
    health = cors_instance.call("GET", "/healthz", headers={"Origin": SHOP})
    assert "access-control-allow-origin" not in health.headers  # only the API is offered to browsers


@pytest.mark.parametrize("name, value", [("PAYMENTS_CORS_ORIGINS", "*"), ("PAYMENTS_CORS_ORIGINS", "myshop.test"),
                                         ("PAYMENTS_RATE_LIMIT_PER_MINUTE", "-1"),
                                         ("PAYMENTS_SMOKE_RATE_LIMIT_PER_MINUTE", "ten"),
                                         ("SMTP_URL", "http://mail.example.com:25"),
                                         ("SMTP_URL", "smtp://mail.example.com:99999"),
                                         ("PAYMENTS_RECEIPT_FROM", "not an address"),
                                         ("STRIPE_API_BASE", "ftp://stripe.example.com"),
                                         ("STRIPE_SECRET_KEY", "pk_test_publishablekey123"),
                                         ("STRIPE_WEBHOOK_SECRET", "secret-without-prefix")])
def test_malformed_new_variable_stops_the_start(launcher: Callable[..., RunningService], service_env: dict[str, str],
                                                name: str, value: str) -> None:
    running = launcher({**service_env, name: value}, wait=False)
    assert running.proc.wait(30) == 78
    log = running.log()
    assert f"configuration error: {name}" in log
    assert value not in log
