"""Unit tests of release_analysis against a fake Prometheus on 127.0.0.1 (real HTTP through open_url): the verdicts,
fail fast, no data and NaN never passing, an unreachable Prometheus, validate mode, and bad input refused before any
query."""

from __future__ import annotations

import socket
import typing as t

import pytest

from analysis_fake_prometheus import Answer, FakePrometheus, rejected, vector
from stripe_module_runner import run

from ansible_collections.payments.deploy.plugins.modules import release_analysis

SUCCESS = 'payment_success{colour="${colour}"}'
P95 = 'p95{colour="${colour}"}[${elapsed}]'


@pytest.fixture
def prometheus(request: pytest.FixtureRequest) -> t.Iterator[FakePrometheus]:
    fake = FakePrometheus(dict(getattr(request, "param", {})))
    yield fake
    fake.close()


def metric(name: str = "payment_success", query: str = SUCCESS, **extra: t.Any) -> dict[str, t.Any]:
    spec: dict[str, t.Any] = {"name": name, "query": query, "unit": "ratio", "failure_condition": {"op": "<", "threshold": 0.9}}
    spec.update(extra)
    return {k: v for k, v in spec.items() if v is not None}


def analyse(fake: FakePrometheus | str, capsys: pytest.CaptureFixture[str], metrics: list[dict[str, t.Any]],
            check: bool = False, **extra: t.Any) -> dict[str, t.Any]:
    args = {"prometheus_url": fake if isinstance(fake, str) else fake.url, "metrics": metrics,
            "labels": {"colour": "green", "environment": "production"}, "interval": 0.02, "count": 3,
            "scrape_interval": 0.01, "timeout": 2}
    args.update(extra)
    return run(release_analysis, capsys, args, check=check)


def script(**answers: list[Answer]) -> dict[str, list[Answer]]:
    return answers


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once the socket is closed


@pytest.mark.parametrize("prometheus", [script(payment_success=[0.97, 0.95, 0.99], p95=[0.12])], indirect=True)
def test_good_values_pass_with_every_measurement_recorded(prometheus: FakePrometheus,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [
        metric(), metric("latency_p95", P95, unit="seconds", failure_condition=None,
                         success_condition={"op": "<", "threshold": 3}, baseline=0.1, max_ratio=1.5)])
    assert result["phase"] == "Successful" and result["changed"] is False, result["message"]
    success, latency = result["metrics"]
    assert [m["value"] for m in success["measurements"]] == [0.97, 0.95, 0.99]
    assert [m["verdict"] for m in success["measurements"]] == ["Successful"] * 3
    assert success["counts"] == {"successful": 3, "failed": 0, "inconclusive": 0, "error": 0,
                                 "excused": 0}
    assert success["failure_condition"] == "< 0.9" and success["query"] == 'payment_success{colour="green"}'
    assert latency["baseline"] == {"value": 0.1} and latency["max_ratio"] == 1.5
    # ${elapsed} grows with each measurement: the window since the start
    assert [m["window"] for m in latency["measurements"]] == ["20ms", "40ms", "60ms"]
    assert prometheus.queries("p95") == [f'p95{{colour="green"}}[{w}]' for w in ("20ms", "40ms", "60ms")]
    assert result["queries_sent"] == len(prometheus.received) == 6
    assert all(float(form["time"]) > 1.7e9 for form in prometheus.received)
    assert result["stopped_early"] is None and result["duration"] >= 0.06


@pytest.mark.parametrize("prometheus", [script(payment_success=[0.8])], indirect=True)
def test_a_value_meeting_the_failure_condition_fails(prometheus: FakePrometheus,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric()])
    assert result["phase"] == "Failed"
    first = result["metrics"][0]["measurements"][0]
    assert first["verdict"] == "Failed" and first["reason"] == "0.8 meets the failure condition < 0.9"
    assert result["message"].startswith("Failed: payment_success Failed (1 failed")


@pytest.mark.parametrize("prometheus", [script(payment_success=[0.95, 0.5, 0.97, 0.5], p95=[0.1])], indirect=True)
def test_fails_fast_once_the_failure_limit_is_exceeded(prometheus: FakePrometheus,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric(), metric("latency", P95, unit="seconds", failure_condition=None,
                                                           success_condition={"op": "<", "threshold": 3})],
                     count=200, failure_limit=1)
    assert result["phase"] == "Failed"
    success, latency = result["metrics"]
    assert [m["verdict"] for m in success["measurements"]] == ["Successful", "Failed", "Successful", "Failed"]
    assert success["phase"] == "Failed" and latency["phase"] == "Stopped"
    assert result["stopped_early"] == "payment_success failed at measurement 4 of 200"
    # nothing was measured after the failure: the latency metric's 4th query was never sent
    assert len(prometheus.queries("payment_success")) == 4 and len(prometheus.queries("p95")) == 3


@pytest.mark.parametrize("prometheus", [script(payment_success=[0.92])], indirect=True)
def test_between_both_conditions_is_inconclusive(prometheus: FakePrometheus,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric(success_condition={"op": ">=", "threshold": 0.95})])
    assert result["phase"] == "Inconclusive"
    assert result["metrics"][0]["measurements"][0]["verdict"] == "Inconclusive"
    # the inconclusive limit (0) was exceeded by the first measurement: no more were taken
    assert len(prometheus.received) == 1


@pytest.mark.parametrize("prometheus", [script(payment_success=[None])], indirect=True)
def test_no_data_is_inconclusive_never_a_pass(prometheus: FakePrometheus, capsys: pytest.CaptureFixture[str]) -> None:
    # only a failure condition: a value that does not meet it would pass, but no value is not a value
    result = analyse(prometheus, capsys, [metric()], inconclusive_limit=2)
    assert result["phase"] == "Inconclusive"
    assert [m["reason"] for m in result["metrics"][0]["measurements"]] == ["no data"] * 3
    assert result["metrics"][0]["counts"]["inconclusive"] == 3


@pytest.mark.parametrize("prometheus", [script(payment_success=["NaN", "+Inf", 0.99])], indirect=True)
def test_nan_and_infinity_are_inconclusive(prometheus: FakePrometheus, capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric()], inconclusive_limit=1)
    measurements = result["metrics"][0]["measurements"]
    assert [(m["value"], m["verdict"]) for m in measurements] == [("NaN", "Inconclusive"), ("+Inf", "Inconclusive")]
    assert result["phase"] == "Inconclusive"
    assert '"NaN"' in result["_raw"] and "NaN," not in result["_raw"].replace('"NaN"', "")


@pytest.mark.parametrize("prometheus", [script(payment_success=[0.5], payments_count=[3.0, 25.0])], indirect=True)
def test_too_little_traffic_is_inconclusive(prometheus: FakePrometheus, capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric(min_traffic_query="payments_count", min_samples=20)],
                     inconclusive_limit=1)
    first, second = result["metrics"][0]["measurements"]
    assert first["verdict"] == "Inconclusive" and first["reason"] == "traffic 3 below min_samples 20"
    assert second["verdict"] == "Failed" and second["traffic"] == 25.0
    assert result["phase"] == "Failed"


def test_an_unreachable_prometheus_is_inconclusive_not_failed(capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(closed_port_url(), capsys, [metric(), metric("other")])
    assert result["phase"] == "Inconclusive"
    for entry in result["metrics"]:
        assert entry["phase"] == "Inconclusive" and entry["counts"]["error"] == 1
        assert "could not be reached" in entry["measurements"][0]["error"]
    assert result["queries_sent"] == 2  # inconclusive_limit 0: each metric stopped after its first try


@pytest.mark.parametrize("prometheus", [script(payment_success=[(503, {"status": "error", "error": "busy"}), 0.99])],
                         indirect=True)
def test_a_prometheus_error_within_the_inconclusive_limit_is_tolerated(prometheus: FakePrometheus,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric()], inconclusive_limit=1)
    assert result["phase"] == "Successful"
    first = result["metrics"][0]["measurements"][0]
    assert first["error"].startswith("Prometheus answered HTTP 503") and result["metrics"][0]["counts"]["error"] == 1


@pytest.mark.parametrize("prometheus", [script(payment_success=[(200, vector(0.9, 0.95))])], indirect=True)
def test_more_than_one_series_is_an_inconclusive_error(prometheus: FakePrometheus,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric()])
    assert result["phase"] == "Inconclusive"
    assert "returned 2 series" in result["metrics"][0]["measurements"][0]["error"]


@pytest.mark.parametrize("prometheus", [script(p95_old=[0.1], p95=[0.12, 0.2])], indirect=True)
def test_p95_against_a_baseline_query_from_before_the_switch(prometheus: FakePrometheus,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric("latency", P95, unit="seconds", failure_condition=None,
                                                 baseline_query='p95_old{colour="blue"}', baseline_time=1767225000.0,
                                                 max_ratio=1.5)])
    assert result["phase"] == "Failed"
    latency = result["metrics"][0]
    assert latency["baseline"]["value"] == 0.1 and latency["measurements"][0]["verdict"] == "Successful"
    assert latency["measurements"][1]["reason"] == "0.2 is 2.00x the baseline 0.1 (max 1.5x)"
    assert prometheus.received[0]["time"] == "1767225000.000"


@pytest.mark.parametrize("prometheus", [script(p95_old=[None], p95=[0.12])], indirect=True)
def test_a_baseline_without_data_makes_the_ratio_inconclusive(prometheus: FakePrometheus,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric("latency", P95, unit="seconds", failure_condition=None,
                                                 baseline_query="p95_old", max_ratio=1.5)])
    assert result["phase"] == "Inconclusive"
    assert result["metrics"][0]["measurements"][0]["reason"] == "no usable baseline (None)"


@pytest.mark.parametrize("prometheus", [script(payment_success=[0.99])], indirect=True)
def test_check_mode_runs_the_analysis(prometheus: FakePrometheus, capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric()], check=True)
    assert result["phase"] == "Successful" and len(prometheus.received) == 3 and result["changed"] is False


@pytest.mark.parametrize("prometheus", [script(payment_success=[None], bad=[rejected("parse error at char 5")])],
                         indirect=True)
def test_validate_names_the_metric_and_query_prometheus_rejects(prometheus: FakePrometheus,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric(), metric("broken", "bad(${colour}")], mode="validate")
    assert result["failed"] is True and result["rejected"] is True
    assert result["msg"] == ("metric broken: Prometheus rejected the query (HTTP 400 bad_data: parse error at char 5); "
                             "query: bad(green")
    assert len(prometheus.received) == 2


@pytest.mark.parametrize("prometheus", [script(payment_success=[None], payments_count=[0.0])], indirect=True)
def test_validate_accepts_no_data_and_reports_each_value(prometheus: FakePrometheus,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric(min_traffic_query="payments_count[${elapsed}]", min_samples=5)],
                     mode="validate", interval=10, count=6)
    assert "failed" not in result and result["mode"] == "validate" and "phase" not in result
    assert result["metrics"] == [{"name": "payment_success", "query": 'payment_success{colour="green"}', "value": None,
                                  "min_traffic_query": "payments_count[60s]", "min_traffic": 0.0}]


def test_validate_fails_when_prometheus_is_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(closed_port_url(), capsys, [metric()], mode="validate")
    assert result["failed"] is True and result["rejected"] is False
    assert result["msg"].startswith("metric payment_success: Prometheus at http://127.0.0.1:")
    assert "could not be reached" in result["msg"]


SHARED_DOWN = 'count(dependency_up{colour="${previous_colour}"} == 0)'
GUARD_LABELS = {"colour": "green", "previous_colour": "blue", "environment": "production"}


def guard(name: str = "shared_dependency_down", query: str = SHARED_DOWN) -> dict[str, t.Any]:
    return {"name": name, "query": query}


@pytest.mark.parametrize("prometheus", [script(payment_success=[0.5], dependency_up=[None, 2.0, 1.0])], indirect=True)
def test_a_failure_while_a_shared_dependency_is_down_is_inconclusive(prometheus: FakePrometheus,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # The first measurement fails (no outage); with failure_limit 1 the next two, taken during the outage, would fail
    # the release, but the outage excuses them: the analysis stops for a person instead of blaming the release.
    result = analyse(prometheus, capsys, [metric()], labels=GUARD_LABELS, inconclusive_when=[guard()],
                     failure_limit=1, inconclusive_limit=1)
    assert result["phase"] == "Inconclusive", result["message"]
    measurements = result["metrics"][0]["measurements"]
    assert [m["verdict"] for m in measurements] == ["Failed", "Inconclusive", "Inconclusive"]
    assert "excused_by" not in measurements[0]
    assert measurements[1]["excused_by"] == ["shared_dependency_down"]
    assert measurements[1]["reason"] == ("0.5 meets the failure condition < 0.9, while shared_dependency_down held: "
                                         "not blamed on the release")
    report = result["inconclusive_when"]
    assert report[0]["query"] == 'count(dependency_up{colour="blue"} == 0)' and report[0]["held_at"] == [2, 3]
    assert [m["value"] for m in report[0]["measurements"]] == [None, 2.0, 1.0]
    # the guard is measured before the metrics of the same round, at the same evaluation time
    guard_times = [form["time"] for form in prometheus.received if "dependency_up" in form["query"]]
    metric_times = [form["time"] for form in prometheus.received if "payment_success" in form["query"]]
    assert guard_times == metric_times


@pytest.mark.parametrize("prometheus", [script(payment_success=[0.97, 0.5], dependency_up=[1.0])], indirect=True)
def test_an_excused_failure_never_lets_the_metric_pass(prometheus: FakePrometheus,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # within the inconclusive limit, a plain Inconclusive would be tolerated; an excused failure is not: the release
    # was not seen healthy after the outage
    result = analyse(prometheus, capsys, [metric()], labels=GUARD_LABELS, inconclusive_when=[guard()],
                     inconclusive_limit=2)
    assert result["phase"] == "Inconclusive"
    verdicts = [m["verdict"] for m in result["metrics"][0]["measurements"]]
    assert verdicts == ["Successful", "Inconclusive", "Inconclusive"]
    assert result["metrics"][0]["counts"]["excused"] == 2


@pytest.mark.parametrize("prometheus", [script(payment_success=[0.5], dependency_up=[
    "NaN", (503, {"status": "error", "errorType": "unavailable", "error": "down"}), 0.0])], indirect=True)
def test_a_guard_without_a_positive_value_excuses_nothing(prometheus: FakePrometheus,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # NaN, an unanswered guard query and 0 do not hold: the failures stand and the release is rolled back
    result = analyse(prometheus, capsys, [metric()], labels=GUARD_LABELS, inconclusive_when=[guard()],
                     failure_limit=2)
    assert result["phase"] == "Failed", result["message"]
    report = result["inconclusive_when"][0]
    assert report["held_at"] == [] and [m["holds"] for m in report["measurements"]] == [False] * 3
    assert "error" in report["measurements"][1] and report["measurements"][0]["value"] == "NaN"


@pytest.mark.parametrize("prometheus", [script(payment_success=[0.97], dependency_up=[0.0])], indirect=True)
def test_validate_sends_each_guard_once(prometheus: FakePrometheus, capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric()], labels=GUARD_LABELS, mode="validate",
                     inconclusive_when=[guard(query='count(dependency_up{colour="${previous_colour}"}[${elapsed}])')])
    assert result["inconclusive_when"] == [{"name": "shared_dependency_down", "value": 0.0,
                                            "query": 'count(dependency_up{colour="blue"}[60ms])'}]
    assert len(prometheus.received) == 2


@pytest.mark.parametrize("prometheus", [script(payment_success=[0.97], bad=[rejected("parse error at char 4")])],
                         indirect=True)
def test_validate_names_the_guard_prometheus_rejects(prometheus: FakePrometheus,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric()], mode="validate", inconclusive_when=[guard("odd", "bad(")])
    assert result["failed"] is True and result["rejected"] is True
    assert result["msg"].startswith("inconclusive_when odd: Prometheus rejected the query")


BAD_INPUTS: list[tuple[str, dict[str, t.Any], list[dict[str, t.Any]] | None, str]] = [
    ("no metrics", {}, [], "metrics must name at least one metric"),
    ("duplicate names", {}, [metric(), metric()], "metric names must be unique: payment_success"),
    ("empty query", {}, [metric(query="  ")], "metrics[payment_success].query is empty"),
    ("unknown op", {}, [metric(failure_condition={"op": "=>", "threshold": 0.9})], "op '=>' is not one of"),
    ("NaN threshold", {}, [metric(failure_condition={"op": "<", "threshold": "nan"})], "must be a finite number"),
    ("infinite threshold", {}, [metric(failure_condition={"op": "<", "threshold": "inf"})], "finite number"),
    ("ratio above 1", {}, [metric(failure_condition={"op": "<", "threshold": 1.5})], "out of range for unit ratio"),
    ("negative seconds", {}, [metric(unit="seconds", failure_condition={"op": ">", "threshold": -1})], "out of range"),
    ("count 0", {"count": 0}, None, "count must be from 1 to 1000, got 0"),
    ("interval 0", {"interval": 0}, None, "interval must be above 0"),
    ("negative interval", {"interval": -5}, None, "interval must be above 0"),
    ("NaN interval", {"interval": "nan"}, None, "interval must be a finite number"),
    ("window under two scrapes", {"interval": 5, "count": 2, "scrape_interval": 15}, None,
     "the window (interval x count = 10 s) must be at least two scrape intervals (30 s)"),
    ("range query, short interval", {"interval": 10, "count": 10, "scrape_interval": 15},
     [metric(query="rate(x[${interval}])")], "interval (10 s) must be at least two scrape intervals"),
    ("failure limit negative", {"failure_limit": -1}, None, "failure_limit must be at least 0 and below count"),
    ("failure limit = count", {"count": 3}, [metric(failure_limit=3)], "metrics[payment_success].failure_limit must"),
    ("inconclusive limit = count", {"inconclusive_limit": 3}, None, "inconclusive_limit must be at least 0 and below"),
    ("no condition", {}, [metric(failure_condition=None)], "needs a success_condition, a failure_condition or a max_ratio"),
    ("max_ratio without baseline", {}, [metric(max_ratio=1.5)], "max_ratio needs a baseline or a baseline_query"),
    ("max_ratio zero", {}, [metric(baseline=0.1, max_ratio=0)], "max_ratio must be above 0"),
    ("negative baseline", {}, [metric(baseline=-0.1, max_ratio=1.5)], "baseline must be above 0"),
    ("both baselines", {}, [metric(baseline=0.1, baseline_query="x", max_ratio=1.5)], "not both"),
    ("unknown placeholder", {}, [metric(query="x{colour=\"${color}\"}")], "unknown placeholder(s) color"),
    ("label with a quote", {"labels": {"colour": 'green"} or vector(1) #'}}, None, "labels.colour must be a string"),
    ("label named like a built-in", {"labels": {"elapsed": "5m"}}, None, "'elapsed' is not a usable placeholder"),
    ("negative min_samples", {}, [metric(min_traffic_query="t", min_samples=-1)], "min_samples must be at least 0"),
    ("URL with credentials", {"prometheus_url": "http://u:p@127.0.0.1:9"}, None, "must have no credentials"),
    ("not a URL", {"prometheus_url": "prometheus:9090"}, None, "must be an http:// or https:// URL"),
    ("timeout 0", {"timeout": 0}, None, "timeout must be above 0"),
    ("bad metric name", {}, [metric(name="pay ment")], "metric name 'pay ment' must be"),
    ("guard with an empty query", {"inconclusive_when": [guard(query=" ")]}, None,
     "inconclusive_when[shared_dependency_down].query is empty"),
    ("guard with an unknown placeholder", {"inconclusive_when": [guard()]}, None,
     "inconclusive_when[shared_dependency_down].query uses unknown placeholder(s) previous_colour"),
    ("guards with one name", {"inconclusive_when": [guard(query="a"), guard(query="b")]}, None,
     "inconclusive_when names must be unique: shared_dependency_down"),
    ("bad guard name", {"inconclusive_when": [guard(name="shared down", query="a")]}, None,
     "inconclusive_when name 'shared down' must be"),
]


@pytest.mark.parametrize("case, extra, metrics, expected", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_fails_before_any_query(case: str, extra: dict[str, t.Any], metrics: list[dict[str, t.Any]] | None,
                                          expected: str, prometheus: FakePrometheus,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    extra = dict(extra)
    if "prometheus_url" in extra:
        url = extra.pop("prometheus_url")
        result = analyse(url, capsys, metrics if metrics is not None else [metric()], **extra)
    else:
        result = analyse(prometheus, capsys, metrics if metrics is not None else [metric()], **extra)
    assert result["failed"] is True, case
    assert result["msg"].startswith("invalid options, no query was sent: ")
    assert expected in result["msg"], result["msg"]
    assert prometheus.received == []


def test_every_problem_is_reported_together(prometheus: FakePrometheus, capsys: pytest.CaptureFixture[str]) -> None:
    result = analyse(prometheus, capsys, [metric(query=""), metric()], count=0, interval=-1)
    assert len(result["problems"]) >= 4 and prometheus.received == []
