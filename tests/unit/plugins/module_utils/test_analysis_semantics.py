"""The analysis semantics without Prometheus: Argo's condition table, the order of the inconclusive reasons, a metric's
phase from its counts (never Successful without one successful measurement), placeholders and PromQL durations."""

from __future__ import annotations

import math
import typing as t

import pytest

from ansible_collections.payments.deploy.plugins.module_utils._analysis_options import (
    Condition,
    Metric,
    fill,
    placeholders,
    prometheus_duration,
)
from ansible_collections.payments.deploy.plugins.module_utils._analysis_run import MetricRun, condition_verdict, judge

GE_95 = Condition(">=", 0.95)
LT_90 = Condition("<", 0.90)


def make(**extra: t.Any) -> Metric:
    fields: dict[str, t.Any] = {"name": "m", "query": "q", "unit": "ratio", "success": None, "failure": LT_90,
                                "baseline": None, "baseline_query": None, "baseline_time": None, "max_ratio": None,
                                "min_traffic_query": None, "min_samples": 0.0, "failure_limit": 0,
                                "inconclusive_limit": 0}
    fields.update(extra)
    return Metric(**fields)


@pytest.mark.parametrize("value, success, failure, verdict", [
    (0.97, GE_95, None, "Successful"), (0.93, GE_95, None, "Failed"),      # only a success condition
    (0.93, None, LT_90, "Successful"), (0.85, None, LT_90, "Failed"),      # only a failure condition
    (0.97, GE_95, LT_90, "Successful"), (0.85, GE_95, LT_90, "Failed"),
    (0.93, GE_95, LT_90, "Inconclusive"),                                   # both: neither met
    (0.5, Condition(">=", 0.1), Condition("<", 0.9), "Inconclusive"),        # both: both met
])
def test_argo_condition_table(value: float, success: Condition | None, failure: Condition | None, verdict: str) -> None:
    assert condition_verdict(value, success, failure)[0] == verdict


def test_low_traffic_is_reported_before_the_value() -> None:
    metric = make(min_traffic_query="t", min_samples=20)
    assert judge(metric, 0.5, 4.0, None) == ("Inconclusive", "traffic 4 below min_samples 20")
    assert judge(metric, 0.5, None, None) == ("Inconclusive", "no traffic data (None)")
    assert judge(metric, 0.5, 20.0, None)[0] == "Failed"


@pytest.mark.parametrize("value, reason", [(None, "no data"), (math.nan, "value is NaN"), (math.inf, "value is +Inf"),
                                           (-math.inf, "value is -Inf")])
def test_no_number_is_never_a_pass(value: float | None, reason: str) -> None:
    assert judge(make(), value, None, None) == ("Inconclusive", reason)


def test_the_worst_of_conditions_and_ratio_wins() -> None:
    metric = make(unit="seconds", failure=None, success=Condition("<", 3.0), baseline=0.1, max_ratio=1.5)
    assert judge(metric, 0.14, None, 0.1)[0] == "Successful"
    assert judge(metric, 0.16, None, 0.1)[0] == "Failed"
    assert judge(metric, 4.0, None, 10.0)[0] == "Failed"   # within the ratio, above the absolute bound
    assert judge(metric, 0.1, None, 0.0)[0] == "Inconclusive"


def _record(run: MetricRun, *verdicts: str) -> None:
    for n, verdict in enumerate(verdicts, 1):
        run.record({"n": n, "verdict": verdict}, verdict, is_error=False)


def test_limits_decide_the_phase() -> None:
    run = MetricRun(make(failure_limit=1, inconclusive_limit=1), count=4)
    _record(run, "Failed", "Inconclusive", "Successful")
    assert run.phase is None
    _record(run, "Failed")
    assert run.phase == "Failed"


def test_a_metric_without_a_successful_measurement_never_passes() -> None:
    run = MetricRun(make(failure_limit=1, inconclusive_limit=1), count=2)
    _record(run, "Failed", "Inconclusive")
    assert run.phase == "Inconclusive"


def test_placeholders_and_durations() -> None:
    query = 'sum(rate(x{colour="${colour}",le=~"$le"}[${elapsed}])) > $ 1'
    assert placeholders(query) == {"colour", "le", "elapsed"}
    assert fill(query, {"colour": "green"}) == 'sum(rate(x{colour="green",le=~"$le"}[${elapsed}])) > $ 1'
    assert [prometheus_duration(s) for s in (60, 4.0, 0.02, 1.5, 0.0001)] == ["60s", "4s", "20ms", "1500ms", "1ms"]
