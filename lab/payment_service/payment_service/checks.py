"""A dependency check whose result is reused for a few seconds, so health checks never turn into a stream of calls.

The Stripe and SMTP checks are network calls to third parties: one call per TTL per instance, whatever the rate of
/readyz and /metrics. While one thread refreshes the result the others answer with the previous one instead of
waiting. A failure seen by a real call (a payment that could not reach Stripe) can be recorded, so that the next
requests know without trying again.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

OK = "ok"
Result = tuple[str, str]  # ("ok" or "error: <ExceptionClass>", detail for the log)


def outcome(probe: Callable[[], object]) -> Result:
    """Run a probe: ('ok', '') or ('error: <class>', detail)."""
    try:
        probe()
    except Exception as exc:  # any failure means the dependency cannot serve this instance
        return f"error: {type(exc).__name__}", str(exc)
    return OK, ""


class CachedCheck:
    """The result of a probe, refreshed at most once per ttl seconds."""

    def __init__(self, probe: Callable[[], Result], ttl: float) -> None:
        self._probe = probe
        self._ttl = ttl
        self._lock = threading.Lock()
        # One attribute, replaced as a whole: readers never see a result with another result's time.
        self._latest: tuple[Result, float] | None = None

    def result(self) -> Result:
        """The cached result, refreshed first when it is older than the TTL (only the very first call waits)."""
        latest = self._latest
        if self.fresh_result() is None and self._lock.acquire(blocking=latest is None):
            try:
                if self.fresh_result() is None:
                    self.record(self._probe())
            finally:
                self._lock.release()
        latest = self._latest
        return latest[0] if latest else ("error: NotChecked", "")

    def fresh_result(self) -> Result | None:
        """The cached result while it is within its TTL, else None; never calls the probe."""
        latest = self._latest
        if latest is None or time.monotonic() - latest[1] >= self._ttl:
            return None
        return latest[0]

    def record(self, result: Result) -> None:
        """Take a result (of the probe, or one a real call observed) as the latest check."""
        self._latest = (result, time.monotonic())
