# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The load test's figures (rates, status counts, errors by kind, nearest-rank latency) and its verdict.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import typing as t
from collections import Counter
from dataclasses import dataclass

from ansible_collections.payments.deploy.plugins.module_utils._stripe import nearest_rank

RATE_LIMITED = "rate_limited"
# A request that was due while every one of the `concurrency` requests in flight still waited for its answer: not
# sent (the pacing never waits for the server), counted as an error of this kind.
CONCURRENCY_LIMIT = "concurrency_limit"


@dataclass
class Sample:
    """One planned request as it went: ``status`` is None when no HTTP answer came (or it was never sent)."""

    index: int
    target: str
    kind: str
    sent: bool = False
    status: int | None = None
    error: str | None = None  # the error kind, None for an expected answer
    seconds: float | None = None  # from the moment the request was due to its answer (or its failure)
    done_at: float | None = None  # seconds after the start
    payment_id: str | None = None


def latency(samples: t.Sequence[Sample]) -> dict[str, t.Any]:
    """Nearest-rank figures over every request sent (a timeout counts with the time it waited)."""
    values = [s.seconds for s in samples if s.sent and s.seconds is not None]
    return {"count": len(values), "p50": nearest_rank(values, 50), "p95": nearest_rank(values, 95),
            "p99": nearest_rank(values, 99), "max": max(values) if values else None}


def counted_ok(sample: Sample, expect_rate_limited: bool) -> bool:
    """An answer that counts for the achieved rate: the expected one, or a 429 when they are expected."""
    return sample.error is None or (expect_rate_limited and sample.error == RATE_LIMITED)


def counted_error(sample: Sample) -> bool:
    """An error for the error rate; 429s are their own check (or expected), never counted twice."""
    return sample.error is not None and sample.error != RATE_LIMITED


def summary(samples: t.Sequence[Sample], elapsed: float, expect_rate_limited: bool) -> dict[str, t.Any]:
    """The figures of ``samples`` over ``elapsed`` seconds."""
    ok = sum(1 for s in samples if counted_ok(s, expect_rate_limited))
    errors = sum(1 for s in samples if counted_error(s))
    return {
        "requests": len(samples),
        "sent": sum(1 for s in samples if s.sent),
        "answered": sum(1 for s in samples if s.status is not None),
        "ok": ok,
        "errors": errors,
        "rate_limited": sum(1 for s in samples if s.error == RATE_LIMITED),
        "error_rate": round(errors / len(samples), 4) if samples else None,
        "achieved_rps": round(ok / elapsed, 2) if elapsed > 0 else None,
        "status_counts": {str(k): v for k, v in sorted(Counter(s.status for s in samples if s.status).items())},
        "errors_by_kind": dict(sorted(Counter(s.error for s in samples if s.error).items())),
        "latency": latency(samples),
    }


def breakdown(samples: t.Sequence[Sample], field: str, elapsed: float, expect_rate_limited: bool,
              ) -> dict[str, dict[str, t.Any]]:
    """``summary`` per value of ``field`` (``target`` or ``kind``), in the order they first appear."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(getattr(sample, field), []).append(sample)
    return {name: summary(group, elapsed, expect_rate_limited) for name, group in groups.items()}


def judge(figures: t.Mapping[str, t.Any], params: t.Mapping[str, t.Any]) -> list[str]:
    """Every breached threshold as a sentence; no figure (nothing answered) fails closed."""
    failed = []
    target_rate, ratio = params["rate"], params["min_rate_ratio"]
    achieved = figures["achieved_rps"] or 0.0
    if achieved < ratio * target_rate:
        failed.append(f"rate: {achieved:g} requests/s answered as expected, below {ratio:g} x the target "
                      f"{target_rate:g}/s ({ratio * target_rate:g}/s)")
    error_rate, most = figures["error_rate"], params["max_error_rate"]
    if error_rate is None or error_rate > most:
        kinds = ", ".join(f"{name} {count}" for name, count in figures["errors_by_kind"].items()
                          if name != RATE_LIMITED) or "none"
        failed.append(f"error_rate: {figures['errors']} of {figures['requests']} requests failed "
                      f"({error_rate if error_rate is not None else 'no requests'}), above max_error_rate {most:g} "
                      f"({kinds})")
    if figures["rate_limited"] and not params["expect_rate_limited"]:
        failed.append(f"rate_limited: {figures['rate_limited']} answers were 429 (the rate limiter, not the "
                      "service's capacity, answered them; use a key with a limit above the load test's rate, or set "
                      "expect_rate_limited)")
    for name, option in (("p95", "max_p95"), ("p99", "max_p99")):
        value = figures["latency"][name]
        if value is None:
            failed.append(f"{name}: no request was sent, so there is no latency to judge")
        elif value > params[option]:
            failed.append(f"{name}: {value:g} s is above {option} {params[option]:g} s")
    return failed
