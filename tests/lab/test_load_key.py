"""The load-test key: the API role, a limit of its own (PAYMENTS_LOAD_RATE_LIMIT_PER_MINUTE), counted apart."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Callable

import pytest

if TYPE_CHECKING:
    from conftest import RedisServer, RunningService

pytestmark = pytest.mark.timeout(180)


def test_load_key_has_its_own_limit(launcher: Callable[..., RunningService], redis_factory: Callable[[], RedisServer],
                                    service_env: dict[str, str], api_key: str) -> None:
    load_key = "lk_" + secrets.token_hex(16)
    redis_server = redis_factory()
    env = {**service_env, "REDIS_URL": redis_server.url, "PAYMENTS_RATE_LIMIT_PER_MINUTE": "2",
           "PAYMENTS_LOAD_KEY": load_key, "PAYMENTS_LOAD_RATE_LIMIT_PER_MINUTE": "1000"}
    running = launcher(env)
    # far above the API key's limit of 2 a minute: the load key is never limited by it
    assert [running.call("GET", "/v1/payments/pay_unknown", token=load_key).status
            for _attempt in range(12)] == [404] * 12
    api = [running.call("GET", "/v1/payments/pay_unknown", token=api_key).status for _attempt in range(6)]
    assert api[0] == 404 and 429 in api, api
    assert running.metric('rate_limited_total{limiter="load"}') == 0
    assert running.metric('rate_limited_total{limiter="api"}') == api.count(429)
    assert load_key not in running.log()


def test_load_key_over_its_limit_is_429(launcher: Callable[..., RunningService], redis_factory: Callable[[], RedisServer],
                                        service_env: dict[str, str]) -> None:
    load_key = "lk_" + secrets.token_hex(16)
    redis_server = redis_factory()
    env = {**service_env, "REDIS_URL": redis_server.url, "PAYMENTS_LOAD_KEY": load_key,
           "PAYMENTS_LOAD_RATE_LIMIT_PER_MINUTE": "2"}
    running = launcher(env)
    statuses = [running.call("GET", "/v1/payments/pay_unknown", token=load_key).status for _attempt in range(6)]
    assert statuses[0] == 404 and 429 in statuses, statuses
    assert running.metric('rate_limited_total{limiter="load"}') == statuses.count(429)
