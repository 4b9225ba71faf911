"""Unit tests of load_test against a real threaded HTTP server on 127.0.0.1 whose latency and answers each test sets:
a healthy server passes, a slow one fails p95, a failing one the error rate, a limiting one is reported as rate
limited; the requests are paced, bounded in count, time and concurrency, and check mode sends nothing."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
import typing as t

import pytest

from loopback_ports import free_port
from stripe_module_runner import LIVE_KEY, TEST_KEY, run

from ansible_collections.payments.deploy.plugins.modules import load_test

API_KEY = "load-key-" + "k" * 24
VERSION = "1.2.0"


class LoadServer:
    """A payment service stand-in: the contract's read endpoints, customers, payments and refunds, on one port.

    ``delay`` slows every answer, ``statuses`` maps a path prefix to the status it answers instead."""

    def __init__(self, delay: float = 0.0, statuses: dict[str, int] | None = None, version: str = VERSION) -> None:
        self.delay = delay
        self.statuses = statuses or {}
        self.version = version
        self.requests: list[dict[str, t.Any]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: t.Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                server.handle(self)

            def do_POST(self) -> None:  # noqa: N802
                server.handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.requests.append({"method": handler.command, "path": handler.path, "at": time.monotonic(),
                                  "headers": dict(handler.headers), "body": body})
        try:
            if self.delay:
                time.sleep(self.delay)
            status, payload = self.answer(handler.command, handler.path, handler.headers)
            data = json.dumps(payload).encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.send_header("X-Service-Version", self.version)
            if status == 429:
                handler.send_header("Retry-After", "30")
            handler.end_headers()
            handler.wfile.write(data)
        finally:
            with self.lock:
                self.in_flight -= 1

    def answer(self, method: str, path: str, headers: t.Any) -> tuple[int, dict[str, t.Any]]:
        for prefix, status in self.statuses.items():
            if path.startswith(prefix):
                return status, {"error": {"type": "api_error", "code": "forced", "message": "forced"}}
        authorised = headers.get("Authorization") == f"Bearer {API_KEY}"
        if path.startswith("/v1/") and not authorised:
            return 401, {"error": {"type": "authentication_error", "code": "unauthorized", "message": "no"}}
        if method == "GET" and path in ("/healthz/lb", "/version"):
            return 200, {"status": "serving", "version": self.version}
        if method == "POST" and path == "/v1/customers":
            return 201, {"id": f"cus_load{next(self.ids)}"}
        if method == "GET" and path.startswith("/v1/customers/cus_"):
            return 200, {"id": path.rsplit("/", 1)[1]}
        if method == "POST" and path == "/v1/payments":
            return 201, {"id": f"pay_{next(self.ids)}", "status": "succeeded"}
        if method == "POST" and path.endswith("/refunds"):
            return 201, {"id": f"ref_{next(self.ids)}", "status": "succeeded"}
        return 404, {"error": {"type": "invalid_request_error", "code": "not_found", "message": "no"}}

    def load_requests(self) -> list[dict[str, t.Any]]:
        """The measured requests (not the customer made before the run, nor the refunds after it)."""
        return [r for r in self.requests if r["path"] != "/v1/customers" and not r["path"].endswith("/refunds")]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> t.Iterator[list[LoadServer]]:
    options = getattr(request, "param", {})
    made = [LoadServer(**options), LoadServer(**options)]
    yield made
    for server in made:
        server.close()


def arguments(servers: list[LoadServer], **extra: t.Any) -> dict[str, t.Any]:
    args = {"targets": [{"name": f"app{i + 1}-green", "url": s.url} for i, s in enumerate(servers)],
            "run_id": "unit-1", "rate": 40, "duration": 2.0, "max_requests": 600, "api_key": API_KEY,
            "expected_version": VERSION, "request_timeout": 3,
            # room for a busy test machine: the rate check is proven by the tests that breach it
            "min_rate_ratio": 0.75}
    args.update(extra)
    return args


def load(servers: list[LoadServer], capsys: pytest.CaptureFixture[str], check: bool = False,
         **extra: t.Any) -> dict[str, t.Any]:
    result = run(load_test, capsys, arguments(servers, **extra), check=check)
    assert API_KEY not in result["_raw"]
    return result


def test_a_healthy_service_passes_with_every_figure(servers: list[LoadServer],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys)
    assert not result.get("failed"), result["msg"]
    assert result["passed"] is True and result["failed_checks"] == []
    assert result["planned_requests"] == 80 and result["requests"] == 80 and result["ok"] == 80
    seen = [r for s in servers for r in s.load_requests()]
    assert len(seen) == 80
    # the mix: one lb check, one version, two customer reads in every four requests of each target
    for server in servers:
        paths = [r["path"] for r in server.load_requests()]
        assert paths.count("/healthz/lb") == paths.count("/version") == 10 and len(paths) == 40
        customer = [r for r in server.load_requests() if r["path"].startswith("/v1/customers/")]
        assert {r["path"] for r in customer} == {f"/v1/customers/{result['customer_id']}"}
        assert all(r["headers"]["Authorization"] == f"Bearer {API_KEY}" for r in customer)
        assert all("Authorization" not in r["headers"] for r in server.load_requests() if r["path"] == "/version")
    assert result["status_counts"] == {"200": 80} and result["errors_by_kind"] == {}
    assert result["achieved_rps"] >= 0.75 * 40
    assert set(result["per_target"]) == {"app1-green", "app2-green"}
    assert [result["per_target"][name]["requests"] for name in ("app1-green", "app2-green")] == [40, 40]
    latency = result["latency"]
    assert latency["count"] == 80 and latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert result["changed"] is True  # the customer made for the run


def test_requests_are_paced_not_sent_in_a_burst(servers: list[LoadServer],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys, rate=20, duration=1.0, mix={"customer": 0})
    assert result["passed"] is True, result["failed_checks"]
    arrivals = sorted(r["at"] for s in servers for r in s.load_requests())
    assert len(arrivals) == 20
    # request N is due N/20 s after the first: the 20 arrivals spread over at least 19/20 s (less a margin for the
    # scheduler), where a burst would have them within a few milliseconds
    assert arrivals[-1] - arrivals[0] >= 0.8 * 19 / 20
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    assert sum(1 for gap in gaps if gap >= 0.02) >= 10


@pytest.mark.parametrize("servers", [{"delay": 0.3}], indirect=True)
def test_a_slow_service_fails_p95_and_keeps_the_offered_rate(servers: list[LoadServer],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys, rate=20, duration=1.0, max_p95=0.2, max_p99=0.25)
    assert result["failed"] is True and result["passed"] is False
    assert any(check.startswith("p95: ") for check in result["failed_checks"]), result["failed_checks"]
    assert any(check.startswith("p99: ") for check in result["failed_checks"])
    assert result["latency"]["p95"] >= 0.3
    # open loop: the slow answers did not hold back the next requests, all 20 were sent
    assert result["sent"] == 20 and sum(len(s.load_requests()) for s in servers) == 20
    assert "p95" in result["msg"]


@pytest.mark.parametrize("servers", [{"statuses": {"/version": 503}}], indirect=True)
def test_a_failing_service_fails_the_error_rate(servers: list[LoadServer], capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys)
    assert result["failed"] is True
    assert result["errors_by_kind"] == {"server_error": 20}
    assert result["status_counts"] == {"200": 60, "503": 20}
    assert result["error_rate"] == 0.25
    assert any(check.startswith("error_rate: 20 of 80") for check in result["failed_checks"]), result["failed_checks"]
    assert result["per_kind"]["version"]["errors"] == 20 and result["per_kind"]["lb_check"]["errors"] == 0


@pytest.mark.parametrize("servers", [{"statuses": {"/v1/customers/": 429}}], indirect=True)
def test_429_answers_are_reported_as_rate_limited(servers: list[LoadServer],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys)
    assert result["failed"] is True
    assert result["rate_limited"] == 40 and result["errors_by_kind"] == {"rate_limited": 40}
    assert result["error_rate"] == 0.0
    assert [c.split(":")[0] for c in result["failed_checks"]] == ["rate", "rate_limited"]

    expected = load(servers, capsys, run_id="unit-2", expect_rate_limited=True)
    assert expected["passed"] is True, expected["failed_checks"]
    assert expected["rate_limited"] == 40


def test_it_stops_at_max_requests(servers: list[LoadServer], capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys, rate=50, duration=30, max_requests=7)
    assert result["planned_requests"] == result["requests"] == 7
    assert sum(len(s.load_requests()) for s in servers) == 7


def test_it_stops_at_the_duration(servers: list[LoadServer], capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys, rate=30, duration=0.5, max_requests=100000)
    assert result["planned_requests"] == result["requests"] == 15
    assert sum(len(s.load_requests()) for s in servers) == 15


@pytest.mark.parametrize("servers", [{"delay": 0.8}], indirect=True)
def test_concurrency_is_bounded(servers: list[LoadServer], capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys, rate=20, duration=0.5, concurrency=2, mix={"customer": 0})
    assert result["failed"] is True
    assert max(s.most_in_flight for s in servers) <= 2
    sent = sum(len(s.load_requests()) for s in servers)
    assert sent == result["sent"] <= 4
    assert result["errors_by_kind"]["concurrency_limit"] == 10 - sent


@pytest.mark.parametrize("servers", [{"version": "1.1.0"}], indirect=True)
def test_answers_from_another_release_are_errors(servers: list[LoadServer],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys, duration=0.5)
    assert result["failed"] is True
    assert result["errors_by_kind"] == {"wrong_version": 20}


def test_check_mode_sends_nothing(servers: list[LoadServer], capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys, check=True, allow_payments=True, mix={"payment": 1}, stripe_api_key=TEST_KEY)
    assert not result.get("failed") and result["changed"] is False and result["passed"] is None
    assert all(not s.requests for s in servers)
    assert result["plan"]["requests"] == 80
    assert result["plan"]["by_kind"] == {"payment": 16, "customer": 32, "lb_check": 16, "version": 16}
    assert result["plan"]["payment_keys"][:2] == ["load-unit-1-1", "load-unit-1-2"]


def test_payments_are_made_with_run_keys_and_refunded(servers: list[LoadServer],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys, duration=0.5, allow_payments=True, stripe_api_key=TEST_KEY,
                  mix={"payment": 1, "customer": 0, "lb_check": 0, "version": 0}, payment_amount=30)
    assert result["passed"] is True, result["failed_checks"]
    posts = [r for s in servers for r in s.requests if r["path"] == "/v1/payments"]
    assert sorted(r["headers"]["Idempotency-Key"] for r in posts) == sorted(f"load-unit-1-{n}" for n in range(1, 21))
    assert {r["body"]["amount"] for r in posts} == {30}
    assert {r["body"]["customer_id"] for r in posts} == {result["customer_id"]}
    refunds = [r for s in servers for r in s.requests if r["path"].endswith("/refunds")]
    assert len(refunds) == 20 and all(entry["refunded"] for entry in result["refunds"])


def test_live_payments_are_refused_before_any_request(servers: list[LoadServer],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    result = load(servers, capsys, allow_payments=True, stripe_api_key=LIVE_KEY, mix={"payment": 1},
                  payment_method="pm_live_card")
    assert result["failed"] is True and "allow_live_payments" in result["msg"]
    assert all(not s.requests for s in servers)
    allowed = load(servers, capsys, allow_payments=True, allow_live_payments=True, stripe_api_key=LIVE_KEY,
                   mix={"payment": 1, "customer": 0, "lb_check": 0, "version": 0}, payment_method="pm_live_card",
                   duration=0.2)
    assert allowed["passed"] is True, allowed["failed_checks"]
    assert len([r for s in servers for r in s.requests if r["path"] == "/v1/payments"]) == allowed["payments"] == 8


def test_a_target_that_is_down_fails_with_connection_errors(capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = run(load_test, capsys, {"targets": [{"name": "gone", "url": closed}], "run_id": "unit-1",
                                     "duration": 0.5, "mix": {"customer": 0}})
    assert result["failed"] is True
    assert result["errors_by_kind"] == {"connection": 10}
    assert result["achieved_rps"] == 0.0
