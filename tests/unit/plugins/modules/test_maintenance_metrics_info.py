"""Unit tests of maintenance_metrics_info against a fake Prometheus on 127.0.0.1 (real HTTP through open_url): the daily
rates judged against their targets, no traffic as no data, 5xx by route, the weekly trend with and without a baseline,
an unreachable Prometheus, and bad options refused before any query."""

from __future__ import annotations

import socket

import pytest

from analysis_fake_prometheus import FakePrometheus
from stripe_module_runner import run

from ansible_collections.payments.deploy.plugins.modules import maintenance_metrics_info

SUCCEEDED = 'outcome="succeeded"}'
ATTEMPTED = 'outcome=~"succeeded|failed|error"}'


def routes(counts: dict[str, float]) -> tuple[int, dict]:
    return 200, {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"route": route}, "value": [1767225600.0, str(value)]} for route, value in counts.items()]}}


@pytest.fixture
def prometheus(request):
    fake = FakePrometheus(dict(getattr(request, "param", {})))
    yield fake
    fake.close()


def measure(url: str, capsys, **extra) -> dict:
    return run(maintenance_metrics_info, capsys, {"prometheus_url": url, "environment": "production", "min_payments": 10, **extra})


@pytest.mark.parametrize("prometheus", [{SUCCEEDED: [97.0], ATTEMPTED: [100.0], "refunds_total": [2.0],
                                         "http_requests_total": [routes({"/v1/payments": 3.0, "/v1/refunds": 0.0})]}],
                         indirect=True)
def test_daily_rates_within_targets_pass(prometheus, capsys):
    result = measure(prometheus.url, capsys)
    assert result["breaches"] == [] and result["changed"] is False
    metrics = result["metrics"]
    assert metrics["success_rate"]["value"] == 97.0 and metrics["success_rate"]["status"] == "pass"
    assert metrics["refund_rate"]["value"] == round(100 * 2 / 97, 2) and metrics["refund_rate"]["status"] == "pass"
    assert metrics["errors_5xx"] == {"/v1/payments": 3.0}
    assert all('environment="production"' in query for query in prometheus.queries())
    assert all("[24h]" in query for query in prometheus.queries())


@pytest.mark.parametrize("prometheus", [{SUCCEEDED: [90.0], ATTEMPTED: [100.0], "refunds_total": [9.0]}], indirect=True)
def test_daily_rates_that_miss_their_targets_are_each_a_breach(prometheus, capsys):
    result = measure(prometheus.url, capsys)
    assert len(result["breaches"]) == 2
    assert "payment success rate 90.00 %" in result["breaches"][0] and "95.0 %" in result["breaches"][0]
    assert "refund rate 10.00 %" in result["breaches"][1]


@pytest.mark.parametrize("prometheus", [{SUCCEEDED: [None], ATTEMPTED: [None]}], indirect=True)
def test_no_traffic_is_no_data_and_a_breach_only_when_asked(prometheus, capsys):
    quiet = measure(prometheus.url, capsys)
    assert quiet["breaches"] == [] and quiet["metrics"]["success_rate"]["status"] == "no data"
    assert quiet["metrics"]["success_rate"]["value"] is None and "0 payments" in quiet["notes"][0]
    strict = measure(prometheus.url, capsys, fail_on_no_traffic=True)
    assert strict["breaches"] and "fail_on_no_traffic" in strict["breaches"][0]


@pytest.mark.parametrize("prometheus", [{SUCCEEDED: [20.0], ATTEMPTED: [30.0], "refunds_total": [20.0]}], indirect=True)
def test_fewer_payments_than_the_minimum_judge_no_rate(prometheus, capsys):
    few = measure(prometheus.url, capsys, min_payments=100)
    assert few["breaches"] == [] and few["metrics"]["refund_rate"]["status"] == "no data"
    assert "30 payments in production" in few["notes"][0] and "fewer than the 100" in few["notes"][0]
    judged = measure(prometheus.url, capsys, min_payments=20)
    assert len(judged["breaches"]) == 2 and judged["metrics"]["success_rate"]["value"] == round(100 * 20 / 30, 2)


WEEKLY = {"[7d] offset 7d)))": [0.2], "[7d] offset 7d))": [1000.0], "histogram_quantile": [0.5], "payments_total": [800.0]}


@pytest.mark.parametrize("prometheus", [WEEKLY], indirect=True)
def test_weekly_p95_growth_above_the_ratio_is_a_breach(prometheus, capsys):
    result = measure(prometheus.url, capsys, report="weekly")
    assert result["metrics"]["p95_seconds"]["ratio"] == 2.5 and result["metrics"]["p95_seconds"]["status"] == "breach"
    assert result["metrics"]["volume"]["ratio"] == 0.8
    assert len(result["breaches"]) == 1 and "2.5x" in result["breaches"][0]
    allowed = measure(prometheus.url, capsys, report="weekly", p95_max_ratio=3.0)
    assert allowed["breaches"] == [] and allowed["metrics"]["p95_seconds"]["status"] == "pass"


@pytest.mark.parametrize("prometheus", [{"offset 7d": [None], "histogram_quantile": [0.5], "payments_total": [800.0]}],
                         indirect=True)
def test_weekly_without_an_earlier_week_says_no_baseline(prometheus, capsys):
    result = measure(prometheus.url, capsys, report="weekly")
    assert result["breaches"] == []
    assert result["metrics"]["p95_seconds"]["status"] == "no baseline" and result["metrics"]["p95_seconds"]["ratio"] is None
    assert any("no baseline" in note for note in result["notes"])


def test_an_unreachable_prometheus_fails_clearly(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = measure(url, capsys)
    assert result["failed"] and "could not be reached" in result["msg"]


@pytest.mark.parametrize(("options", "expected"), [
    ({"success_rate_target": 101.0}, "success_rate_target 101.0 is not a percentage"),
    ({"refund_rate_target": -1.0}, "refund_rate_target -1.0 is not a percentage"),
    ({"p95_max_ratio": 0.0}, "p95_max_ratio 0.0 must be a number above 0"),
    ({"min_payments": 0}, "min_payments 0 must be at least 1"),
    ({"window": "one day"}, "window 'one day' is not a PromQL duration"),
    ({"environment": 'x"}'}, "is not a plain label value"),
])
def test_bad_options_are_refused_before_any_query(prometheus, capsys, options, expected):
    result = measure(prometheus.url, capsys, **options)
    assert result["failed"] and expected in result["msg"] and "no query was sent" in result["msg"]
    assert prometheus.queries() == []
