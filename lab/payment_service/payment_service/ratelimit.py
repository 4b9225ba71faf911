"""Per-API-key rate limit: a fixed one-minute window counted in Redis, shared by every instance.

When Redis cannot answer, requests are let through (fail open): the limit protects the service from a runaway
client, while refusing payments because the cache is down would turn a cache outage into a payment outage.
The checklist asks for exactly that ("fallback mechanism works without cache"). The limiter has its own Redis
client with a short timeout, so a slow cache adds at most that much to a request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import redis

from .web import HTTPError

WINDOW_S = 60
REDIS_TIMEOUT_S = 0.5


class RateLimiter:
    """Counts requests per API key and minute; raises 429 with Retry-After beyond the limit."""

    def __init__(self, redis_url: str, per_minute: int, logger: logging.Logger) -> None:
        self.per_minute = per_minute
        self._cache = redis.Redis.from_url(redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
                                           socket_timeout=REDIS_TIMEOUT_S)
        self._logger = logger
        self._lock = threading.Lock()
        self._failing = False

    def check(self, token: str) -> None:
        """Count one request of this key; 0 per minute means no limit."""
        if not self.per_minute:
            return
        now = time.time()
        window = int(now // WINDOW_S)
        # The key holds a digest of the token, never the token.
        key = f"ratelimit:{hashlib.sha256(token.encode('utf-8')).hexdigest()[:16]}:{window}"
        try:
            pipe = self._cache.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, 2 * WINDOW_S)
            count = int(pipe.execute()[0])
        except redis.RedisError as exc:
            self._note(failing=True, detail=f"{type(exc).__name__}: {exc}")
            return
        self._note(failing=False)
        if count > self.per_minute:
            retry_after = max(1, (window + 1) * WINDOW_S - int(now))
            raise HTTPError(429, "rate_limited", f"at most {self.per_minute} requests per minute per API key",
                            [("Retry-After", str(retry_after))])

    def _note(self, failing: bool, detail: str = "") -> None:
        """Log when the limiter starts and stops failing open, not on every request."""
        with self._lock:
            if failing == self._failing:
                return
            self._failing = failing
        if failing:
            self._logger.warning("rate limit: Redis unavailable, requests are not limited (%s)", detail)
        else:
            self._logger.info("rate limit: Redis answers again, requests are limited")
