"""prometheus_series_info against the real Prometheus of this suite: a colour's scraped metrics are present with their
series counts, a metric it does not export (or a colour nobody scrapes) is missing and fails naming it, a wait gives
up after its bound, and bad options are refused before any query."""

from __future__ import annotations

import tempfile
import typing as t
from pathlib import Path

import pytest

from real_prometheus import RealPrometheus, run_module

SERIES_MODULE = "ansible_collections.payments.deploy.plugins.modules.prometheus_series_info"


@pytest.fixture
def work() -> t.Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="series-") as directory:
        yield Path(directory)


def args(prometheus: RealPrometheus, colour: str, metrics: list[str], **extra: t.Any) -> dict[str, t.Any]:
    return {"prometheus_url": prometheus.url, "metrics": metrics, "labels": {"environment": "production", "colour": colour},
            "timeout": 5, **extra}


def test_a_scraped_colour_has_its_series(prometheus: RealPrometheus, collections_dir: Path, work: Path) -> None:
    prometheus.wait_for('count(payments_total{environment="production",colour="green"})')
    result = run_module(collections_dir, work, args(prometheus, "green", ["payments_total", "process_start_time_seconds", "up"], wait=10),
                        module=SERIES_MODULE)
    assert not result.get("failed"), result
    # the exporter writes three outcomes of payments_total, one start time; Prometheus adds up
    assert result["series"] == {"payments_total": 3, "process_start_time_seconds": 1, "up": 1}
    assert result["missing"] == [] and result["selector"] == '{colour="green",environment="production"}'


def test_a_metric_the_colour_does_not_export_fails_naming_it(prometheus: RealPrometheus, collections_dir: Path, work: Path) -> None:
    prometheus.wait_for('count(payments_total{environment="production",colour="green"})')
    result = run_module(collections_dir, work, args(prometheus, "green", ["payments_total", "db_query_duration_seconds_bucket"],
                                                    wait=3, retry_delay=1), module=SERIES_MODULE)
    assert result["failed"] is True
    assert result["missing"] == ["db_query_duration_seconds_bucket"] and result["present"] == ["payments_total"]
    assert "db_query_duration_seconds_bucket" in result["msg"] and "payments_total" not in result["msg"]
    # it asked again while the wait lasted, and gave up after it
    assert result["queries_sent"] >= 3 and 2 <= result["waited_seconds"] < 10


def test_a_colour_nobody_scrapes_has_nothing_and_can_only_be_reported(prometheus: RealPrometheus, collections_dir: Path,
                                                                      work: Path) -> None:
    result = run_module(collections_dir, work, args(prometheus, "purple", ["payments_total", "up"], fail_on_missing=False),
                        module=SERIES_MODULE)
    assert not result.get("failed"), result
    assert result["missing"] == ["payments_total", "up"] and result["series"] == {"payments_total": 0, "up": 0}


@pytest.mark.parametrize("bad, named", [
    ({"metrics": []}, "metrics must name"),
    ({"metrics": ["payments total"]}, "not a metric name"),
    ({"labels": {"colour": 'green"} or vector(1) #'}}, "value of 'colour'"),
    ({"labels": {"__name__": "up"}}, "not a label name"),
    ({"prometheus_url": "prometheus:9090"}, "prometheus_url"),
    ({"wait": -1}, "wait"),
])
def test_bad_options_are_refused_before_any_query(prometheus: RealPrometheus, collections_dir: Path, work: Path,
                                                  bad: dict[str, t.Any], named: str) -> None:
    result = run_module(collections_dir, work, {**args(prometheus, "green", ["up"]), **bad}, module=SERIES_MODULE)
    assert result["failed"] is True and "no query was sent" in result["msg"] and named in result["msg"], result
