"""GET /v1/customers/{id} reads through a Redis cache and falls back to PostgreSQL when Redis fails."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable

import psycopg
import pytest
import redis

if TYPE_CHECKING:
    from conftest import Postgres, RedisServer, RunningService

pytestmark = pytest.mark.timeout(180)


def key_prefix(running: RunningService) -> str:
    """Customer entries live under the namespace of the release the instance says it runs (a rollback clears it)."""
    return f"payments:{running.call('GET', '/version').json()['version']}:customer:v1:"


def cache_counts(running: RunningService) -> dict[str, float]:
    return {result: running.metric(f'cache_requests_total{{result="{result}"}}') for result in ("hit", "miss", "error")}


def rename_in_database(postgres: Postgres, customer_id: str, name: str) -> None:
    """Change the row behind the service's back: an answer with the old name came from the cache."""
    with psycopg.connect(postgres.admin_dsn(), autocommit=True) as conn:
        conn.execute("UPDATE customers SET name = %s WHERE id = %s", (name, customer_id))


@pytest.fixture
def cached(launcher: Callable[..., RunningService], redis_factory: Callable[[], RedisServer],
           service_env: dict[str, str]) -> tuple[RunningService, RedisServer]:
    """An instance with a Redis of its own (the test stops it)."""
    redis_server = redis_factory()
    return launcher({**service_env, "REDIS_URL": redis_server.url}), redis_server


def test_customers_come_from_the_cache_then_from_the_database_without_redis(
        cached: tuple[RunningService, RedisServer], postgres: Postgres, api_key: str) -> None:
    running, redis_server = cached
    store = redis.Redis.from_url(redis_server.url)
    prefix = key_prefix(running)
    assert cache_counts(running) == {"hit": 0, "miss": 0, "error": 0}
    created = running.call("POST", "/v1/customers", token=api_key, body={"email": "c@example.com", "name": "Cached"})
    customer = created.json()
    key = prefix + customer["id"]
    assert json.loads(store.get(key) or b"null") == customer  # written on create
    assert [k.decode() for k in store.scan_iter(match="payments:*")] == [key]  # nothing outside the namespace
    assert 0 < store.ttl(key) <= 300

    rename_in_database(postgres, customer["id"], "Renamed")
    hit = running.call("GET", f"/v1/customers/{customer['id']}", token=api_key)
    assert (hit.status, hit.json()) == (200, customer)
    assert cache_counts(running) == {"hit": 1, "miss": 0, "error": 0}

    store.delete(key)
    miss = running.call("GET", f"/v1/customers/{customer['id']}", token=api_key)
    assert (miss.status, miss.json()["name"]) == (200, "Renamed")
    assert json.loads(store.get(key) or b"null")["name"] == "Renamed"  # the miss filled the cache again
    assert cache_counts(running) == {"hit": 1, "miss": 1, "error": 0}

    unknown = running.call("GET", "/v1/customers/cus_notthere", token=api_key)
    assert unknown.status == 404 and store.get(prefix + "cus_notthere") is None  # absence is not cached

    redis_server.proc.terminate()
    redis_server.proc.wait(30)
    rename_in_database(postgres, customer["id"], "Fallback")
    for _attempt in range(3):
        fallback = running.call("GET", f"/v1/customers/{customer['id']}", token=api_key)
        assert (fallback.status, fallback.json()["name"]) == (200, "Fallback")
    assert cache_counts(running) == {"hit": 1, "miss": 2, "error": 3}
    created_without_redis = running.call("POST", "/v1/customers", token=api_key,
                                         body={"email": "d@example.com", "name": "No cache"})
    assert created_without_redis.status == 201
    assert running.log().count("cache: Redis unavailable, customers are read from PostgreSQL") == 1


def test_a_corrupt_entry_is_read_again_from_the_database(cached: tuple[RunningService, RedisServer],
                                                         api_key: str) -> None:
    running, redis_server = cached
    customer = running.call("POST", "/v1/customers", token=api_key, body={"email": "e@example.com", "name": "E"}).json()
    store = redis.Redis.from_url(redis_server.url)
    key = key_prefix(running) + customer["id"]
    store.set(key, b"{not json")
    reply = running.call("GET", f"/v1/customers/{customer['id']}", token=api_key)
    assert (reply.status, reply.json()) == (200, customer)
    assert json.loads(store.get(key) or b"null") == customer
