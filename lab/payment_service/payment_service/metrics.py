"""In-process Prometheus metrics (one gunicorn worker, so one registry) and their text exposition."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# succeeded: charged; failed: declined; pending: Stripe needs more (e.g. 3-D Secure); error: Stripe could not
# process the request (unreachable, 5xx, rejected parameters).
PAYMENT_OUTCOMES = ("succeeded", "failed", "pending", "error")
# stored: a new verified event; duplicate: an event id already processed; rejected: bad or stale signature.
WEBHOOK_OUTCOMES = ("stored", "duplicate", "rejected")
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The rate limiters: the API key's and the smoke key's.
LIMITERS = ("api", "smoke")
# hit: served from Redis; miss: not in Redis, read from PostgreSQL; error: Redis failed, read from PostgreSQL.
CACHE_RESULTS = ("hit", "miss", "error")
EMAIL_KINDS = ("receipt",)
EMAIL_OUTCOMES = ("sent", "failed")


def label_value(value: str) -> str:
    """A label value escaped for the text format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**pairs: str) -> str:
    """A label set such as {method="GET",route="/healthz"}."""
    return "{" + ",".join(f'{name}="{label_value(value)}"' for name, value in pairs.items()) + "}"


@dataclass
class Histogram:
    """Bucket counts (not cumulative), sum and count of one label set."""

    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        """Record one observation."""
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[index] += 1
                break
        self.total += seconds
        self.count += 1

    def lines(self, name: str, route: str) -> list[str]:
        """Cumulative bucket lines plus _sum and _count."""
        out, running = [], 0
        for bound, bucket in zip(BUCKETS, self.counts):
            running += bucket
            out.append(f"{name}_bucket{labels(route=route, le=repr(bound))} {running}")
        out.append(f"{name}_bucket{labels(route=route, le='+Inf')} {self.count}")
        out.append(f"{name}_sum{labels(route=route)} {self.total!r}")
        out.append(f"{name}_count{labels(route=route)} {self.count}")
        return out


class Metrics:
    """Request, payment, refund, dependency, limiter, cache and email metrics of this process."""

    def __init__(self, version: str, instance: str, colour: str, dependencies: tuple[str, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._info = labels(version=version, instance=instance, colour=colour)
        self._requests: dict[tuple[str, str, str], int] = {}
        self._durations: dict[str, Histogram] = {}
        self._payments = dict.fromkeys(PAYMENT_OUTCOMES, 0)
        self._webhooks = dict.fromkeys(WEBHOOK_OUTCOMES, 0)
        self._refunds = 0
        self._dependency_up = dict.fromkeys(dependencies, 0)
        self._fail_open = dict.fromkeys(LIMITERS, 0)
        self._rate_limited = dict.fromkeys(LIMITERS, 0)
        self._cache = dict.fromkeys(CACHE_RESULTS, 0)
        self._auth_failures = 0
        self._emails = {(kind, outcome): 0 for kind in EMAIL_KINDS for outcome in EMAIL_OUTCOMES}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a finished request and its duration; route is a template, never a raw path."""
        method = method if method in KNOWN_METHODS else "other"
        with self._lock:
            key = (method, route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            self._durations.setdefault(route, Histogram()).observe(seconds)

    def count_payment(self, outcome: str) -> None:
        """Count one payment attempt by its outcome (one of PAYMENT_OUTCOMES)."""
        with self._lock:
            self._payments[outcome] += 1

    def count_refund(self) -> None:
        """Count one refund created at Stripe."""
        with self._lock:
            self._refunds += 1

    def count_webhook(self, outcome: str) -> None:
        """Count one webhook delivery by its outcome (one of WEBHOOK_OUTCOMES)."""
        with self._lock:
            self._webhooks[outcome] += 1

    def set_dependencies(self, up: dict[str, bool]) -> None:
        """The latest result of each dependency check (1 up, 0 down)."""
        with self._lock:
            for name, value in up.items():
                self._dependency_up[name] = int(value)

    def count_fail_open(self, limiter: str) -> None:
        """Count one request let through because Redis could not count it."""
        with self._lock:
            self._fail_open[limiter] += 1

    def count_rate_limited(self, limiter: str) -> None:
        """Count one request refused with 429."""
        with self._lock:
            self._rate_limited[limiter] += 1

    def count_cache(self, result: str) -> None:
        """Count one cache lookup by its result (one of CACHE_RESULTS)."""
        with self._lock:
            self._cache[result] += 1

    def count_auth_failure(self) -> None:
        """Count one request refused with 401."""
        with self._lock:
            self._auth_failures += 1

    def count_email(self, kind: str, outcome: str) -> None:
        """Count one email by kind and outcome (sent, or failed after its attempts or dropped)."""
        with self._lock:
            self._emails[(kind, outcome)] += 1

    def render(self) -> str:
        """The whole registry in the Prometheus text format."""
        with self._lock:
            lines = self._request_lines() + self._business_lines() + self._resilience_lines()
        return "\n".join(lines) + "\n"

    def _request_lines(self) -> list[str]:
        lines = ["# HELP http_requests_total HTTP requests by method, route template and status.",
                 "# TYPE http_requests_total counter"]
        for (method, route, status), count in sorted(self._requests.items()):
            lines.append(f"http_requests_total{labels(method=method, route=route, status=status)} {count}")
        lines += ["# HELP http_request_duration_seconds Request latency by route template.",
                  "# TYPE http_request_duration_seconds histogram"]
        for route, histogram in sorted(self._durations.items()):
            lines += histogram.lines("http_request_duration_seconds", route)
        return lines

    def _business_lines(self) -> list[str]:
        # Every series exists from the start (at zero), so a rate over a fresh instance finds data.
        lines = ["# HELP payments_total Payments by outcome.", "# TYPE payments_total counter"]
        lines += [f"payments_total{labels(outcome=outcome)} {count}" for outcome, count in self._payments.items()]
        lines += ["# HELP refunds_total Refunds issued.", "# TYPE refunds_total counter", f"refunds_total {self._refunds}",
                  "# HELP stripe_webhook_events_total Stripe webhook deliveries by outcome.",
                  "# TYPE stripe_webhook_events_total counter"]
        lines += [f"stripe_webhook_events_total{labels(outcome=outcome)} {count}"
                  for outcome, count in self._webhooks.items()]
        lines += ["# HELP service_info Release and instance of this process.", "# TYPE service_info gauge",
                  f"service_info{self._info} 1"]
        return lines

    def _resilience_lines(self) -> list[str]:
        lines = ["# HELP dependency_up Latest result of each dependency check (1 up, 0 down).",
                 "# TYPE dependency_up gauge"]
        lines += [f"dependency_up{labels(dependency=name)} {up}" for name, up in self._dependency_up.items()]
        lines += ["# HELP ratelimit_fail_open_total Requests let through unlimited because Redis could not count them.",
                  "# TYPE ratelimit_fail_open_total counter"]
        lines += [f"ratelimit_fail_open_total{labels(limiter=name)} {count}" for name, count in self._fail_open.items()]
        lines += ["# HELP rate_limited_total Requests refused with 429 by limiter.", "# TYPE rate_limited_total counter"]
        lines += [f"rate_limited_total{labels(limiter=name)} {count}" for name, count in self._rate_limited.items()]
        lines += ["# HELP cache_requests_total Cache lookups by result.", "# TYPE cache_requests_total counter"]
        lines += [f"cache_requests_total{labels(result=name)} {count}" for name, count in self._cache.items()]
        lines += ["# HELP auth_failures_total Requests refused with 401 (no or unknown bearer token).",
                  "# TYPE auth_failures_total counter", f"auth_failures_total {self._auth_failures}",
                  "# HELP emails_total Emails by kind and outcome.", "# TYPE emails_total counter"]
        lines += [f"emails_total{labels(kind=kind, outcome=outcome)} {count}"
                  for (kind, outcome), count in self._emails.items()]
        return lines
