"""Prometheus metrics: request counters and latency by route template, business counters, service info, payment
failures by reason, amounts, database latency and process metrics; a valid exposition (prometheus_client's parser,
promtool's linter)."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from conftest import RunningService

SOURCE = Path(__file__).resolve().parents[2] / "lab" / "payment_service"

pytestmark = pytest.mark.timeout(120)


def sample(text: str, series: str) -> float:
    """The value of one exact series line, e.g. 'refunds_total'."""
    for line in text.splitlines():
        name, _sep, value = line.rpartition(" ")
        if name == series:
            return float(value)
    raise AssertionError(f"series {series} not found in:\n{text}")


def test_metrics_after_requests(service: RunningService, api_key: str) -> None:
    service.call("GET", "/healthz")
    service.call("GET", "/v1/customers/cus_rawid12345", token=api_key)
    reply = service.call("GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = reply.body.decode()
    assert sample(text, 'http_requests_total{method="GET",route="/healthz",status="200"}') >= 1
    assert sample(text, 'http_requests_total{method="GET",route="/v1/customers/{id}",status="404"}') >= 1
    assert "cus_rawid12345" not in text
    for le in ("0.005", "5.0", "+Inf"):
        assert sample(text, f'http_request_duration_seconds_bucket{{route="/healthz",le="{le}"}}') >= 1
    assert sample(text, 'http_request_duration_seconds_count{route="/healthz"}') >= 1
    assert sample(text, 'payments_total{outcome="succeeded"}') == 0
    assert sample(text, 'payments_total{outcome="failed"}') == 0
    assert sample(text, "refunds_total") == 0
    assert sample(text, 'service_info{version="1.1.0",instance="app1-green",colour="green"}') == 1
    for family, kind in (("http_requests_total", "counter"), ("http_request_duration_seconds", "histogram"),
                         ("payments_total", "counter"), ("refunds_total", "counter")):
        assert f"# TYPE {family} {kind}" in text


def test_unknown_paths_share_one_label(service: RunningService) -> None:
    service.call("GET", "/random/path/123")
    text = service.call("GET", "/metrics").body.decode()
    assert "/random/path/123" not in text
    assert re.search(r'http_requests_total\{method="GET",route="unmatched",status="404"\} \d+', text)


def families(text: str) -> dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]:
    """Family name to its type and samples (sample name plus sorted labels to value), parsed strictly."""
    parsed = {}
    for family in text_string_to_metric_families(text):
        samples = {((("__name__", sample.name),) + tuple(sorted(sample.labels.items()))): sample.value
                   for sample in family.samples}
        parsed[family.name] = (family.type, samples)
    return parsed


def service_metrics() -> object:
    """payment_service.metrics, imported from the source tree."""
    sys.path.insert(0, str(SOURCE))
    try:
        from payment_service import metrics  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(str(SOURCE))
    return metrics


def test_every_series_exists_from_the_start_in_a_valid_exposition(
        launcher: Callable[..., RunningService], service_env: dict[str, str]) -> None:
    metrics = service_metrics()
    before = time.time()
    running = launcher(service_env)
    text = running.call("GET", "/metrics").body.decode()
    found = families(text)  # raises on anything the text format does not allow
    # prometheus_client names a counter family without its _total suffix.
    for family, kind in (("payments", "counter"), ("payments_failed", "counter"), ("refunds", "counter"),
                         ("stripe_webhook_events", "counter"), ("cache_requests", "counter"),
                         ("payment_amount_minor_units", "histogram"), ("db_query_duration_seconds", "histogram"),
                         ("process_start_time_seconds", "gauge"), ("process_resident_memory_bytes", "gauge"),
                         ("process_cpu_seconds", "counter")):
        assert found[family][0] == kind, family
    for reason in metrics.FAILURE_REASONS:  # type: ignore[attr-defined]
        assert sample(text, f'payments_failed_total{{reason="{reason}"}}') == 0
    for outcome in ("succeeded", "failed", "pending", "error"):
        assert sample(text, f'payment_amount_minor_units_bucket{{outcome="{outcome}",le="1000.0"}}') == 0
        assert sample(text, f'payment_amount_minor_units_count{{outcome="{outcome}"}}') == 0
    for outcome in ("stored", "duplicate", "rejected", "error"):
        assert sample(text, f'stripe_webhook_events_total{{outcome="{outcome}"}}') == 0
    for result in ("hit", "miss", "error"):  # hit ratio = hit / (hit + miss + error)
        assert sample(text, f'cache_requests_total{{result="{result}"}}') == 0
    for operation in ("select", "insert", "update", "delete", "other"):
        assert sample(text, f'db_query_duration_seconds_count{{operation="{operation}"}}') == 0
    assert sample(text, 'db_query_duration_seconds_count{operation="ping"}') >= 1  # /metrics asked PostgreSQL
    # The worker's own start (not the master's, nor the scrape's), and its current memory.
    assert before - 1 <= sample(text, "process_start_time_seconds") <= time.time()
    assert sample(text, "process_resident_memory_bytes") > 10 * 1024 * 1024
    again = running.call("GET", "/metrics").body.decode()
    assert sample(again, "process_start_time_seconds") == sample(text, "process_start_time_seconds")


def test_promtool_accepts_the_exposition(service: RunningService) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    text = service.call("GET", "/metrics").body
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_declines_are_counted_by_code_with_their_amounts(stripe_service: RunningService, api_key: str) -> None:
    def pay(amount: int, card: str) -> int:
        return stripe_service.call("POST", "/v1/payments", token=api_key,
                                   headers={"Idempotency-Key": "metrics-" + secrets.token_hex(6)},
                                   body={"amount": amount, "currency": "eur", "payment_method": card}).status

    series = ('payments_failed_total{reason="insufficient_funds"}', 'payments_failed_total{reason="lost_card"}',
              'payment_amount_minor_units_bucket{outcome="failed",le="1000.0"}',
              'payment_amount_minor_units_bucket{outcome="failed",le="2500.0"}',
              'payment_amount_minor_units_sum{outcome="failed"}',
              'payment_amount_minor_units_bucket{outcome="succeeded",le="500.0"}',
              'payment_amount_minor_units_bucket{outcome="succeeded",le="1000.0"}',
              'db_query_duration_seconds_count{operation="insert"}')
    start = {name: stripe_service.metric(name) for name in series}
    assert pay(1500, "pm_card_chargeDeclinedInsufficientFunds") == 402
    assert pay(2000, "pm_card_chargeDeclinedLostCard") == 402
    assert pay(700, "pm_card_visa") == 201
    delta = [stripe_service.metric(name) - start[name] for name in series]
    assert delta[:-1] == [1, 1, 0, 2, 3500, 0, 1]
    assert delta[-1] >= 3  # a row per payment, and the webhook events Stripe delivers meanwhile


def test_failure_reasons_stay_bounded() -> None:
    metrics = service_metrics()
    registry = metrics.Metrics("9.9.9", "app1-blue", "blue")  # type: ignore[attr-defined]
    registry.count_payment("failed", 100, "a-code-stripe-adds-next-year")
    registry.count_payment("error", 100, None)
    registry.count_payment("succeeded", 100, "ignored-for-a-success")
    registry.observe_db("vacuum", 0.01)
    text = registry.render()
    assert sample(text, 'payments_failed_total{reason="other"}') == 2
    assert "a-code-stripe-adds-next-year" not in text and "vacuum" not in text
    assert sample(text, 'db_query_duration_seconds_count{operation="other"}') == 1
    families(text)
