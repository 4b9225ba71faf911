"""Per-key rate limits: a fixed one-minute window counted in Redis, shared by every instance.

Each key has its own counter and limit: the API key's (PAYMENTS_RATE_LIMIT_PER_MINUTE) and the smoke key's
(PAYMENTS_SMOKE_RATE_LIMIT_PER_MINUTE, small), so that a synthetic check can prove the limiter answers 429
without ever throttling real traffic, and the load-test key's (PAYMENTS_LOAD_RATE_LIMIT_PER_MINUTE, large), so that
a load test measures the service rather than the limiter.

When Redis cannot answer, requests are let through (fail open): the limit protects the service from a runaway
client, while refusing payments because the cache is down would turn a cache outage into a payment outage.
The checklist asks for exactly that ("fallback mechanism works without cache"). The limiter has its own Redis
client with a short timeout, so a slow cache adds at most that much to a request.
"""

from __future__ import annotations

import hashlib
import logging
import time

import redis

from .logs import OutageLog
from .metrics import Metrics
from .web import HTTPError

WINDOW_S = 60
REDIS_TIMEOUT_S = 0.5


class RateLimiter:
    """Counts requests per key and minute; raises 429 with Retry-After beyond the key's limit."""

    def __init__(self, redis_url: str, logger: logging.Logger, metrics: Metrics) -> None:
        self._cache = redis.Redis.from_url(redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
                                           socket_timeout=REDIS_TIMEOUT_S)
        self._metrics = metrics
        self._outage = OutageLog(logger, "rate limit: Redis unavailable, requests are not limited",
                                 "rate limit: Redis answers again, requests are limited")

    def check(self, limiter: str, token: str, per_minute: int) -> None:
        """Count one request of this key under the named limiter ('api', 'smoke'); 0 per minute means no limit."""
        if not per_minute:
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
            self._metrics.count_fail_open(limiter)
            self._outage.note(failing=True, detail=f"{type(exc).__name__}: {exc}")
            return
        self._outage.note(failing=False)
        if count > per_minute:
            self._metrics.count_rate_limited(limiter)
            retry_after = max(1, (window + 1) * WINDOW_S - int(now))
            raise HTTPError(429, "rate_limited", f"at most {per_minute} requests per minute with this key",
                            [("Retry-After", str(retry_after))])
