"""In-process Prometheus metrics (one gunicorn worker, so one registry) and their text exposition."""

from __future__ import annotations

import threading

from . import process_stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# PostgreSQL on the same host answers in about a millisecond; the statement timeout is 5 s.
DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Amounts in the currency's smallest unit (cents): 1.00, 5.00, 10.00, 25.00 ... 1000.00.
AMOUNT_BUCKETS = (100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0, 100000.0)
# The statements the service runs, by their first keyword, and the health checks' SELECT 1.
DB_OPERATIONS = ("select", "insert", "update", "delete", "ping", "other")
# succeeded: charged; failed: declined; pending: Stripe needs more (e.g. 3-D Secure); error: Stripe could not
# process the request (unreachable, 5xx, rejected parameters) or the service failed (its own 5xx).
PAYMENT_OUTCOMES = ("succeeded", "failed", "pending", "error")
# Why a payment failed (outcome failed or error): the issuer's decline codes Stripe documents most often, then the
# service's own reasons; anything else is "other", so the label set stays bounded.
DECLINE_CODES = ("generic_decline", "insufficient_funds", "lost_card", "stolen_card", "expired_card", "incorrect_cvc",
                 "processing_error", "fraudulent", "do_not_honor", "card_velocity_exceeded")
ERROR_REASONS = ("stripe_rejected", "stripe_unavailable", "backend_unavailable", "internal_error")
FAILURE_REASONS = (*DECLINE_CODES, *ERROR_REASONS, "other")
# stored: a new verified event; duplicate: an event id already processed; rejected: bad or stale signature;
# error: a verified event the service failed to store or apply (answered 5xx: Stripe delivers it again).
WEBHOOK_OUTCOMES = ("stored", "duplicate", "rejected", "error")
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The rate limiters: the API key's and the smoke key's.
LIMITERS = ("api", "smoke", "load")
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


class Histogram:
    """Bucket counts (not cumulative), sum and count of one label set."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation."""
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
                break
        self.total += value
        self.count += 1

    def lines(self, name: str, **pairs: str) -> list[str]:
        """Cumulative bucket lines plus _sum and _count."""
        out, running = [], 0
        for bound, bucket in zip(self.buckets, self.counts):
            running += bucket
            out.append(f"{name}_bucket{labels(**pairs, le=repr(bound))} {running}")
        out.append(f"{name}_bucket{labels(**pairs, le='+Inf')} {self.count}")
        out.append(f"{name}_sum{labels(**pairs)} {self.total!r}")
        out.append(f"{name}_count{labels(**pairs)} {self.count}")
        return out


class Metrics:
    """Request, payment, refund, database, dependency, limiter, cache, email and process metrics of this process."""

    def __init__(self, version: str, instance: str, colour: str, dependencies: tuple[str, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._info = labels(version=version, instance=instance, colour=colour)
        self._requests: dict[tuple[str, str, str], int] = {}
        self._durations: dict[str, Histogram] = {}
        self._payments = dict.fromkeys(PAYMENT_OUTCOMES, 0)
        self._payment_failures = dict.fromkeys(FAILURE_REASONS, 0)
        self._amounts = {outcome: Histogram(AMOUNT_BUCKETS) for outcome in PAYMENT_OUTCOMES}
        self._db_durations = {operation: Histogram(DB_BUCKETS) for operation in DB_OPERATIONS}
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

    def count_payment(self, outcome: str, amount: int, reason: str | None = None) -> None:
        """Count one payment attempt by its outcome (one of PAYMENT_OUTCOMES) and amount (in the smallest unit);
        a failed one (failed or error) by its reason too: a decline code or one of ERROR_REASONS, else "other"."""
        with self._lock:
            self._payments[outcome] += 1
            self._amounts[outcome].observe(float(amount))
            if outcome in ("failed", "error"):
                self._payment_failures[reason if reason in self._payment_failures else "other"] += 1

    def observe_db(self, operation: str, seconds: float) -> None:
        """Record one database statement's duration (operation: one of DB_OPERATIONS, else "other")."""
        with self._lock:
            self._db_durations.get(operation, self._db_durations["other"]).observe(seconds)

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
        return "\n".join(lines + process_lines()) + "\n"

    def _request_lines(self) -> list[str]:
        lines = ["# HELP http_requests_total HTTP requests by method, route template and status.",
                 "# TYPE http_requests_total counter"]
        for (method, route, status), count in sorted(self._requests.items()):
            lines.append(f"http_requests_total{labels(method=method, route=route, status=status)} {count}")
        lines += ["# HELP http_request_duration_seconds Request latency by route template.",
                  "# TYPE http_request_duration_seconds histogram"]
        for route, histogram in sorted(self._durations.items()):
            lines += histogram.lines("http_request_duration_seconds", route=route)
        lines += ["# HELP db_query_duration_seconds Database statement latency by operation.",
                  "# TYPE db_query_duration_seconds histogram"]
        for operation, histogram in self._db_durations.items():
            lines += histogram.lines("db_query_duration_seconds", operation=operation)
        return lines

    def _business_lines(self) -> list[str]:
        # Every series exists from the start (at zero), so a rate over a fresh instance finds data.
        lines = ["# HELP payments_total Payments by outcome.", "# TYPE payments_total counter"]
        lines += [f"payments_total{labels(outcome=outcome)} {count}" for outcome, count in self._payments.items()]
        lines += ["# HELP payments_failed_total Failed payments (outcome failed or error) by decline code or reason.",
                  "# TYPE payments_failed_total counter"]
        lines += [f"payments_failed_total{labels(reason=reason)} {count}"
                  for reason, count in self._payment_failures.items()]
        lines += ["# HELP payment_amount_minor_units Payment amounts in the currency's smallest unit, by outcome.",
                  "# TYPE payment_amount_minor_units histogram"]
        for outcome, histogram in self._amounts.items():
            lines += histogram.lines("payment_amount_minor_units", outcome=outcome)
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


def process_lines() -> list[str]:
    """Start time, resident memory and CPU time of this process, read when scraped."""
    lines = ["# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.",
             "# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {process_stats.start_time()!r}",
             "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
             "# TYPE process_cpu_seconds_total counter", f"process_cpu_seconds_total {process_stats.cpu_seconds()!r}"]
    resident = process_stats.resident_memory_bytes()
    if resident is not None:
        lines += ["# HELP process_resident_memory_bytes Resident memory size in bytes.",
                  "# TYPE process_resident_memory_bytes gauge", f"process_resident_memory_bytes {resident}"]
    return lines
