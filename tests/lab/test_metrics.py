"""Prometheus metrics: request counters and latency by route template, business counters, service info."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import RunningService

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
