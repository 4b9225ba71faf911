"""release_analysis against a real Prometheus scraping exporters whose counters the tests control: a healthy colour
passes, one failing a fifth of its payments fails at the first measurement, the rate-based success ratio survives a
counter reset (a restarted process), a colour without data is inconclusive, and Prometheus' own 400 is named."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import pytest

from real_prometheus import MODULE, SCRAPE_SECONDS, Exporter, RealPrometheus, run_module

SELECTOR = 'environment="${environment}",colour="${colour}"'
ATTEMPTS = f'payments_total{{{SELECTOR},outcome=~"succeeded|failed|error"}}'
SUCCESS_RATE = (f'sum(increase(payments_total{{{SELECTOR},outcome="succeeded"}}[${{elapsed}}])) '
                f'/ sum(increase({ATTEMPTS}[${{elapsed}}]))')
PAYMENT_SUCCESS = {"name": "payment_success", "unit": "ratio", "query": SUCCESS_RATE,
                   "failure_condition": {"op": "<", "threshold": 0.90},
                   "min_traffic_query": f"sum(increase({ATTEMPTS}[${{elapsed}}]))", "min_samples": 20}


@pytest.fixture
def work() -> t.Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="analysis-") as directory:
        yield Path(directory)


def args(prometheus: RealPrometheus, environment: str, colour: str, **extra: t.Any) -> dict[str, t.Any]:
    out = {"prometheus_url": prometheus.url, "metrics": [PAYMENT_SUCCESS], "interval": 2 * SCRAPE_SECONDS, "count": 3,
           "scrape_interval": SCRAPE_SECONDS, "labels": {"environment": environment, "colour": colour}, "timeout": 5}
    out.update(extra)
    return out


def wait_for_history(prometheus: RealPrometheus, environment: str, colour: str) -> None:
    """Until two scrapes of the colour are stored (a rate over the first window needs them)."""
    prometheus.wait_for(f'sum(rate(payments_total{{environment="{environment}",colour="{colour}"}}[3s]))')


def test_a_healthy_colour_is_successful(prometheus: RealPrometheus, collections_dir: Path, work: Path) -> None:
    wait_for_history(prometheus, "production", "green")
    result = run_module(collections_dir, work, args(prometheus, "production", "green"))
    assert result["phase"] == "Successful", result["message"]
    measurements = result["metrics"][0]["measurements"]
    assert len(measurements) == 3 and all(0.9 <= m["value"] <= 1.0 and m["traffic"] >= 20 for m in measurements)
    assert [m["window"] for m in measurements] == ["2s", "4s", "6s"]
    assert result["queries_sent"] == 6


def test_a_fifth_of_payments_failing_fails_at_the_first_measurement(prometheus: RealPrometheus, collections_dir: Path,
                                                                    work: Path) -> None:
    wait_for_history(prometheus, "production", "blue")
    result = run_module(collections_dir, work, args(prometheus, "production", "blue", count=10))
    assert result["phase"] == "Failed"
    (only,) = result["metrics"][0]["measurements"]
    assert only["verdict"] == "Failed" and 0.75 <= only["value"] <= 0.85, only
    assert result["stopped_early"] == "payment_success failed at measurement 1 of 10"


def test_the_success_ratio_survives_a_counter_reset(prometheus: RealPrometheus, exporters: dict[str, Exporter],
                                                    collections_dir: Path, work: Path) -> None:
    wait_for_history(prometheus, "staging", "green")
    args_file = work / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args(prometheus, "staging", "green")}))
    analysis = subprocess.Popen([sys.executable, "-m", MODULE, str(args_file)], stdout=subprocess.PIPE, text=True,
                                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(collections_dir)})
    time.sleep(2.5 * SCRAPE_SECONDS)
    exporters["reset"].restart()  # 5000 payments counted so far; the new process starts at 0
    reset_at = time.time()
    out = analysis.communicate(timeout=60)[0]
    result = json.loads(out)
    assert result["phase"] == "Successful", result["message"]
    assert all(0.9 <= m["value"] <= 1.0 for m in result["metrics"][0]["measurements"])

    selector = 'environment="staging",colour="green"'
    # a window around the reset: increase() counts the payments on both sides, delta() would see thousands lost
    around = reset_at + 2 * SCRAPE_SECONDS
    assert 0 < prometheus.value(f'sum(increase(payments_total{{{selector}}}[4s]))', around) < 1000
    assert prometheus.value(f'sum(delta(payments_total{{{selector}}}[4s]))', around) < -1000
    # and the restart shows where the bake looks for it
    assert prometheus.value(f'sum(changes(process_start_time_seconds{{{selector}}}[4s]))', around) == 1


def test_a_colour_without_data_is_inconclusive(prometheus: RealPrometheus, collections_dir: Path, work: Path) -> None:
    result = run_module(collections_dir, work, args(prometheus, "production", "purple", count=1))
    assert result["phase"] == "Inconclusive"
    assert result["metrics"][0]["measurements"][0]["reason"] == "no traffic data (None)"


def test_validate_reports_values_and_names_a_query_prometheus_rejects(prometheus: RealPrometheus,
                                                                      collections_dir: Path, work: Path) -> None:
    ok = run_module(collections_dir, work, args(prometheus, "production", "green", mode="validate"))
    assert "failed" not in ok and 0.9 <= ok["metrics"][0]["value"] <= 1.0
    broken = dict(PAYMENT_SUCCESS, name="broken", query="sum(rate(payments_total[${elapsed}])")
    result = run_module(collections_dir, work, args(prometheus, "production", "green", mode="validate",
                                                    metrics=[PAYMENT_SUCCESS, broken]))
    assert result["failed"] is True and result["rejected"] is True
    assert result["msg"].startswith("metric broken: Prometheus rejected the query (HTTP 400 bad_data: ")
    assert result["msg"].endswith("; query: sum(rate(payments_total[6s])")
