# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The release analysis: measurements every interval, their verdicts, each metric's phase and the run's phase.

Private to the payments.deploy collection: the interface may change without notice.

Semantics follow Argo Rollouts' AnalysisRun (see docs/analysis.md): a measurement is Successful, Failed or
Inconclusive; a metric is Failed once its failed measurements exceed its failure_limit, Inconclusive once its
inconclusive ones exceed its inconclusive_limit, Successful after ``count`` measurements otherwise. No data, NaN,
infinities, too little traffic and an unanswered query are Inconclusive, never a pass. A Failed measurement taken
while an ``inconclusive_when`` query holds (a dependency both colours share is down) is Inconclusive too: that window
cannot tell the release's faults from the outage's.
"""

from __future__ import annotations

import math
import time
import typing as t

from ansible_collections.payments.deploy.plugins.module_utils._analysis_options import (
    Condition,
    Guard,
    Metric,
    fill,
    prometheus_duration,
)
from ansible_collections.payments.deploy.plugins.module_utils._analysis_prometheus import Prometheus, QueryError

SUCCESSFUL, FAILED, INCONCLUSIVE, STOPPED = "Successful", "Failed", "Inconclusive", "Stopped"
RANK = {SUCCESSFUL: 0, INCONCLUSIVE: 1, FAILED: 2}


def _shown(value: float | None) -> float | str | None:
    """A value as JSON can hold it (NaN and infinities as text)."""
    if value is None or math.isfinite(value):
        return None if value is None else round(value, 6)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def condition_verdict(value: float, success: Condition | None, failure: Condition | None) -> tuple[str, str]:
    """Argo's rule: without a failure condition, not meeting the success condition fails (and the reverse); with
    both, meeting neither, or both, is Inconclusive."""
    passed = success.holds(value) if success else (not failure.holds(value) if failure else True)
    failed = failure.holds(value) if failure else (not passed)
    if passed and not failed:
        return SUCCESSFUL, ""
    if failed and not passed:
        cond = f"failure condition {failure}" if failure and failure.holds(value) else f"success condition {success}"
        return FAILED, f"{value:g} {'meets' if failure and failure.holds(value) else 'misses'} the {cond}"
    return INCONCLUSIVE, f"{value:g} meets neither or both conditions ({success} / {failure})"


def judge(metric: Metric, value: float | None, traffic: float | None, baseline: float | None) -> tuple[str, str]:
    """One measurement's verdict and, unless Successful, why."""
    if metric.min_traffic_query:
        if traffic is None or not math.isfinite(traffic):
            return INCONCLUSIVE, f"no traffic data ({_shown(traffic)})"
        if traffic < metric.min_samples:
            return INCONCLUSIVE, f"traffic {traffic:g} below min_samples {metric.min_samples:g}"
    if value is None:
        return INCONCLUSIVE, "no data"
    if not math.isfinite(value):
        return INCONCLUSIVE, f"value is {_shown(value)}"
    verdict, reason = (condition_verdict(value, metric.success, metric.failure)
                       if metric.success or metric.failure else (SUCCESSFUL, ""))
    if metric.max_ratio is not None:
        if baseline is None or not math.isfinite(baseline) or baseline <= 0:
            ratio_verdict, ratio_reason = INCONCLUSIVE, f"no usable baseline ({_shown(baseline)})"
        elif value > metric.max_ratio * baseline:
            ratio_verdict = FAILED
            ratio_reason = f"{value:g} is {value / baseline:.2f}x the baseline {baseline:g} (max {metric.max_ratio:g}x)"
        else:
            ratio_verdict, ratio_reason = SUCCESSFUL, ""
        if RANK[ratio_verdict] > RANK[verdict]:
            verdict, reason = ratio_verdict, ratio_reason
    return verdict, reason


class MetricRun:
    """One metric's measurements, counts and phase (``None`` while running)."""

    def __init__(self, metric: Metric, count: int) -> None:
        self.metric = metric
        self.count = count
        self.measurements: list[dict[str, t.Any]] = []
        self.counts = {SUCCESSFUL: 0, FAILED: 0, INCONCLUSIVE: 0, "error": 0}
        self.phase: str | None = None
        self.baseline: float | None = metric.baseline
        self.baseline_error: str | None = None
        self.excused = 0  # Failed measurements counted as Inconclusive because an inconclusive_when query held

    def record(self, entry: dict[str, t.Any], verdict: str, is_error: bool) -> None:
        self.measurements.append(entry)
        self.counts[verdict] += 1
        self.counts["error"] += int(is_error)
        if self.counts[FAILED] > self.metric.failure_limit:
            self.phase = FAILED
        elif self.counts[INCONCLUSIVE] > self.metric.inconclusive_limit:
            self.phase = INCONCLUSIVE
        elif len(self.measurements) == self.count:
            # A metric that never measured a pass has shown nothing, and one that failed during a shared outage has not
            # been seen healthy: Inconclusive, whatever the limits allowed.
            self.phase = SUCCESSFUL if self.counts[SUCCESSFUL] and not self.excused else INCONCLUSIVE

    def report(self) -> dict[str, t.Any]:
        m = self.metric
        out: dict[str, t.Any] = {"name": m.name, "phase": self.phase or STOPPED, "query": m.query,
                                 "failure_limit": m.failure_limit, "inconclusive_limit": m.inconclusive_limit,
                                 "counts": {**{k.lower(): v for k, v in self.counts.items()}, "excused": self.excused},
                                 "measurements": self.measurements}
        for key, value in (("unit", m.unit), ("success_condition", m.success and str(m.success)),
                           ("failure_condition", m.failure and str(m.failure)), ("max_ratio", m.max_ratio),
                           ("min_traffic_query", m.min_traffic_query),
                           ("min_samples", m.min_samples if m.min_traffic_query else None)):
            if value is not None:
                out[key] = value
        if m.max_ratio is not None:
            out["baseline"] = {"value": _shown(self.baseline), "query": m.baseline_query,
                               "time": m.baseline_time, "error": self.baseline_error}
            out["baseline"] = {k: v for k, v in out["baseline"].items() if v is not None}
        return out


class GuardRun:
    """One inconclusive_when query's measurements. It holds at a measurement when its value is a finite number above
    0; no data, NaN and an unanswered query do not hold (they never excuse a Failed measurement)."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.measurements: list[dict[str, t.Any]] = []

    def measure(self, prometheus: Prometheus, k: int, values: dict[str, str], at: float, when: float) -> bool:
        entry: dict[str, t.Any] = {"n": k, "at": at}
        try:
            value = prometheus.query(fill(self.guard.query, values), when).value
        except QueryError as exc:
            value, entry["error"] = None, str(exc)
        holds = value is not None and math.isfinite(value) and value > 0
        entry.update(value=_shown(value), holds=holds)
        self.measurements.append(entry)
        return holds

    def report(self) -> dict[str, t.Any]:
        held = [m["n"] for m in self.measurements if m["holds"]]
        return {"name": self.guard.name, "query": self.guard.query, "held_at": held,
                "measurements": self.measurements}


class Analysis:
    """Measures every running metric at start + k x interval (k = 1..count), stopping as soon as a metric is Failed
    (fail fast) or no metric is still running. ``clock``/``sleep`` are monotonic; ``wall`` gives query times."""

    def __init__(self, prometheus: Prometheus, metrics: list[Metric], interval: float, count: int,
                 clock: t.Callable[[], float] = time.monotonic, sleep: t.Callable[[float], None] = time.sleep,
                 wall: t.Callable[[], float] = time.time, guards: t.Sequence[Guard] = ()) -> None:
        self.prometheus = prometheus
        self.runs = [MetricRun(metric, count) for metric in metrics]
        self.guards = [GuardRun(guard) for guard in guards]
        self.interval = interval
        self.count = count
        self.clock, self.sleep, self.wall = clock, sleep, wall
        self.stopped: str | None = None

    def run(self) -> dict[str, t.Any]:
        started_wall, started = self.wall(), self.clock()
        self._baselines()
        for k in range(1, self.count + 1):
            running = [r for r in self.runs if r.phase is None]
            if not running:
                break
            self.sleep(max(0.0, started + k * self.interval - self.clock()))
            values = {"interval": prometheus_duration(self.interval), "elapsed": prometheus_duration(k * self.interval)}
            at, when = round(self.clock() - started, 3), self.wall()
            held = [g.guard.name for g in self.guards if g.measure(self.prometheus, k, values, at, when)]
            for run in running:
                self._measure(run, k, values, (round(self.clock() - started, 3), when), held)
                if run.phase == FAILED:
                    self.stopped = f"{run.metric.name} failed at measurement {k} of {self.count}"
                    break
            if self.stopped:
                break
        duration = round(self.clock() - started, 3)
        return self._result(started_wall, duration)

    def _baselines(self) -> None:
        for run in self.runs:
            if not run.metric.baseline_query:
                continue
            query = fill(run.metric.baseline_query, {"interval": prometheus_duration(self.interval),
                                                     "elapsed": prometheus_duration(self.interval * self.count)})
            try:
                run.baseline = self.prometheus.query(query, run.metric.baseline_time).value
            except QueryError as exc:
                run.baseline_error = str(exc)

    def _measure(self, run: MetricRun, k: int, values: dict[str, str], at_when: tuple[float, float],
                 held: list[str]) -> None:
        """One measurement; every query of a round is evaluated at the same time ``when`` (epoch seconds)."""
        metric = run.metric
        at, when = at_when
        entry: dict[str, t.Any] = {"n": k, "at": at}
        if "${elapsed}" in metric.query or "$elapsed" in metric.query:
            entry["window"] = values["elapsed"]
        try:
            traffic = (self.prometheus.query(fill(metric.min_traffic_query, values), when).value
                       if metric.min_traffic_query else None)
            value = self.prometheus.query(fill(metric.query, values), when).value
        except QueryError as exc:
            entry.update(verdict=INCONCLUSIVE, error=str(exc))
            run.record(entry, INCONCLUSIVE, is_error=True)
            return
        verdict, reason = judge(metric, value, traffic, run.baseline)
        if verdict == FAILED and held:
            verdict = INCONCLUSIVE
            reason = f"{reason}, while {', '.join(held)} held: not blamed on the release"
            entry["excused_by"] = held
            run.excused += 1
        entry["value"] = _shown(value)
        if metric.min_traffic_query:
            entry["traffic"] = _shown(traffic)
        entry["verdict"] = verdict
        if reason:
            entry["reason"] = reason
        run.record(entry, verdict, is_error=False)

    def _result(self, started_wall: float, duration: float) -> dict[str, t.Any]:
        phases = [run.phase or STOPPED for run in self.runs]
        if FAILED in phases:
            phase = FAILED
        elif all(p == SUCCESSFUL for p in phases):
            phase = SUCCESSFUL
        else:
            phase = INCONCLUSIVE
        return {"phase": phase, "message": _message(phase, self.runs), "stopped_early": self.stopped,
                "metrics": [run.report() for run in self.runs],
                "inconclusive_when": [guard.report() for guard in self.guards], "started_at": round(started_wall, 3),
                "duration": duration, "interval": self.interval, "count": self.count,
                "queries_sent": self.prometheus.sent, "query_seconds": round(self.prometheus.seconds, 3)}


def _message(phase: str, runs: list[MetricRun]) -> str:
    parts = []
    for run in runs:
        phase_of = run.phase or STOPPED
        if phase_of == SUCCESSFUL:
            parts.append(f"{run.metric.name} Successful")
            continue
        last = next((m for m in reversed(run.measurements) if m["verdict"] != SUCCESSFUL), None)
        why = (last.get("reason") or last.get("error")) if last else None
        counts = f"{run.counts[FAILED]} failed, {run.counts[INCONCLUSIVE]} inconclusive of {len(run.measurements)}"
        parts.append(f"{run.metric.name} {phase_of} ({counts}{': ' + why if why else ''})")
    return f"{phase}: " + "; ".join(parts)


def _send_once(prometheus: Prometheus, what: str, role: str, query: str, at: float | None) -> t.Any:
    """One query of validate mode; a QueryError names what sent it and the query."""
    try:
        return prometheus.query(query, at)
    except QueryError as exc:
        raise QueryError(f"{what}: {exc}; {role}: {query}", rejected=exc.rejected) from None


def validate_queries(prometheus: Prometheus, metrics: list[Metric], interval: float, count: int) -> list[dict[str, t.Any]]:
    """Send each query once (``${elapsed}`` as the whole window). Raises QueryError naming the metric and the query
    when Prometheus cannot be reached, rejects a query or answers more than one series; no data is fine here."""
    values = {"interval": prometheus_duration(interval), "elapsed": prometheus_duration(interval * count)}
    checked = []
    for metric in metrics:
        entry: dict[str, t.Any] = {"name": metric.name}
        for role, template in metric.queries():
            query = fill(template, values)
            at = metric.baseline_time if role == "baseline_query" else None
            sample = _send_once(prometheus, f"metric {metric.name}", role, query, at)
            entry[role] = query
            entry["value" if role == "query" else role.replace("_query", "")] = _shown(sample.value)
        checked.append(entry)
    return checked


def validate_guards(prometheus: Prometheus, guards: t.Sequence[Guard], interval: float,
                    count: int) -> list[dict[str, t.Any]]:
    """validate_queries for the inconclusive_when queries."""
    values = {"interval": prometheus_duration(interval), "elapsed": prometheus_duration(interval * count)}
    checked = []
    for guard in guards:
        query = fill(guard.query, values)
        sample = _send_once(prometheus, f"inconclusive_when {guard.name}", "query", query, None)
        checked.append({"name": guard.name, "query": query, "value": _shown(sample.value)})
    return checked
