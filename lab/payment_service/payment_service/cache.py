"""A read-through cache of customers in Redis that falls back to PostgreSQL when Redis fails.

Redis is an accelerator, never a dependency of a request: a lookup or a write that fails (or takes longer than a
short timeout) is counted, logged once per outage, and the request is answered from the database. Entries expire
after a TTL and are overwritten on every write, so a stale entry lives at most that long.

The blue and green colours share Redis and may run releases that store another shape, so every key lives under the
namespace of the release that wrote it, ``payments:<release>:`` (the version /version reports): a rollback clears
the rolled-back release's namespace (SCAN + UNLINK of ``payments:<release>:*``) and touches no other release's keys.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

import redis

from .logs import OutageLog
from .metrics import Metrics

REDIS_TIMEOUT_S = 0.25
TTL_S = 300
NAMESPACE_ROOT = "payments"
CUSTOMER_KEY = "customer:v1:"

Customer = dict[str, Any]


def release_namespace(release: str) -> str:
    """The namespace of the keys a release owns: ``payments:<release>`` (its keys are ``payments:<release>:...``)."""
    if not release or any(c in release for c in ":*?[]\\ "):
        raise ValueError(f"a release version cannot name a cache namespace: {release!r}")
    return f"{NAMESPACE_ROOT}:{release}"


def customer_key_prefix(release: str) -> str:
    """The prefix of a release's customer entries: ``payments:<release>:customer:v1:``."""
    return f"{release_namespace(release)}:{CUSTOMER_KEY}"


class CustomerCache:
    """Customers by id, as the API returns them."""

    def __init__(self, redis_url: str, release: str, logger: logging.Logger, metrics: Metrics) -> None:
        self._prefix = customer_key_prefix(release)
        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
                                           socket_timeout=REDIS_TIMEOUT_S)
        self._metrics = metrics
        self._outage = OutageLog(logger, "cache: Redis unavailable, customers are read from PostgreSQL",
                                 "cache: Redis answers again")

    def get(self, customer_id: str, load: Callable[[], Customer | None]) -> Customer | None:
        """The cached customer (hit), else load() from the database and cache it (miss, or error when Redis fails)."""
        try:
            raw = self._redis.get(self._prefix + customer_id)
        except redis.RedisError as exc:
            self._outage.note(failing=True, detail=f"{type(exc).__name__}: {exc}")
            self._metrics.count_cache("error")
            return load()
        self._outage.note(failing=False)
        cached = _decode(raw)
        if cached is not None:
            self._metrics.count_cache("hit")
            return cached
        self._metrics.count_cache("miss")
        customer = load()
        if customer is not None:  # an unknown id is not cached: it may be created a moment later
            self.put(customer)
        return customer

    def put(self, customer: Customer) -> None:
        """Write (or overwrite) a customer's entry; a Redis failure only means the next read goes to the database."""
        try:
            self._redis.set(self._prefix + str(customer["id"]), json.dumps(customer, sort_keys=True), ex=TTL_S)
        except redis.RedisError as exc:
            self._outage.note(failing=True, detail=f"{type(exc).__name__}: {exc}")
            return
        self._outage.note(failing=False)


def _decode(raw: Any) -> Customer | None:
    """A cached entry, or None when absent or unreadable (then it is read again and overwritten)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
