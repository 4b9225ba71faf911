"""Unit tests of the shared Stripe client (module_utils/_stripe.py): helpers, error mapping, the call record and retries.

The client talks to a scripted HTTP server on 127.0.0.1 (one canned answer per request), so the real SDK and HTTP code run.
"""

from __future__ import annotations

import http.server
import json
import threading
import typing as t

import pytest

from ansible_collections.payments.deploy.plugins.module_utils import _stripe
from ansible_collections.payments.deploy.plugins.module_utils._stripe import (
    StripeApi,
    StripeError,
    check_common_options,
    describe_stripe_error,
    key_hint,
    key_kind,
    latency_summary,
    match_endpoints,
    nearest_rank,
    redact,
    sanitize_endpoint,
    stripe_error_info,
)

KEY = "sk_test_" + "k" * 24 + "wxyz"
Script = list[tuple[int, dict[str, str], dict[str, t.Any]]]


class ScriptedServer:
    """Answers each request with the next scripted ``(status, headers, body)``; records method, path and headers."""

    def __init__(self, script: Script) -> None:
        self.script = list(script)
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: t.Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                server.seen.append((self.command, self.path, dict(self.headers)))
                status, headers, body = server.script.pop(0) if server.script else (500, {}, {"error": {"type": "api_error"}})
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer  # noqa: N815 (http.server naming)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def scripted() -> t.Iterator[t.Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK sleeps 0.5 s or more between retries; the tests count attempts, not seconds."""
    monkeypatch.setattr(_stripe.HTTPClient, "_sleep_time_seconds", lambda self, num_retries: 0.0)


BALANCE = {"object": "balance", "livemode": False}


def test_key_hint_and_kind() -> None:
    assert key_hint("sk_live_" + "x" * 20 + "abcd") == "sk_live_\u2026abcd"
    assert key_hint("rk_test_short") == "rk_test_\u2026"
    assert key_hint("whsec_" + "y" * 30 + "9z9z") == "whsec_\u20269z9z"
    assert key_hint("") == "(none)"
    assert key_kind("sk_live_x") == ("secret", "live")
    assert key_kind("rk_test_x") == ("restricted", "test")
    assert key_kind("pk_live_x") == ("publishable", "live")
    assert key_kind("sk_x") == ("unknown", None)


def test_redact_hides_keys_and_webhook_secrets() -> None:
    text = f"bad key {KEY} and pk_live_{'p' * 20}1234 and whsec_{'s' * 30} and secret-value"
    out = redact(text, "secret-value")
    assert KEY not in out and "sk_test_\u2026wxyz" in out
    assert "pk_live_\u20261234" in out and "whsec_\u2026" in out and "s" * 30 not in out
    assert "secret-value" not in out


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(20, 0, -1)]
    assert nearest_rank(values, 95) == 19.0
    assert nearest_rank(values, 50) == 10.0
    assert nearest_rank(values, 100) == 20.0
    assert nearest_rank([0.3, 0.1, 0.2], 50) == 0.2
    assert nearest_rank([0.3, 0.1, 0.2], 95) == 0.3
    assert nearest_rank([], 95) is None
    assert latency_summary([0.5]) == {"count": 1, "p50": 0.5, "p95": 0.5, "max": 0.5}


def test_common_options_are_checked() -> None:
    good = {"api_key": KEY, "api_base": "https://api.stripe.com", "max_network_retries": 2, "timeout": 30.0}
    assert check_common_options(good) == []
    problems = check_common_options({"api_key": "", "api_base": "ftp://x", "max_network_retries": 11, "timeout": 0})
    assert len(problems) == 4 and "STRIPE_SECRET_KEY" in problems[0]
    [whitespace] = check_common_options(dict(good, api_key=KEY + "\n"))
    assert "contains whitespace" in whitespace and KEY not in whitespace


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), float("-inf"), 0.0, -1.0, 601.0])
def test_a_timeout_that_is_not_a_finite_positive_number_is_refused(timeout: float) -> None:
    good = {"api_key": KEY, "api_base": "https://api.stripe.com", "max_network_retries": 2}
    [problem] = check_common_options(dict(good, timeout=timeout))
    assert problem.startswith("timeout must be more than 0 and at most 600 seconds (a finite number; got ")


def test_calls_are_recorded_without_the_key(scripted: t.Callable[[Script], ScriptedServer]) -> None:
    server = scripted([
        (200, {"Request-Id": "req_1"}, BALANCE),
        (200, {"Request-Id": "req_2", "Idempotent-Replayed": "true"}, {"object": "payment_intent", "id": "pi_1", "status": "succeeded"}),
    ])
    api = StripeApi(KEY, server.url, max_network_retries=0, timeout=5)
    assert api.v1.balance.retrieve().livemode is False
    api.v1.payment_intents.create(params={"amount": 50, "currency": "usd"}, options={"idempotency_key": "run:1:create"})
    balance, create = api.calls
    assert (balance["method"], balance["path"], balance["status"], balance["request_id"]) == ("GET", "/v1/balance", 200, "req_1")
    assert balance["attempts"] == 1 and balance["replayed"] is False and balance["duration"] >= 0
    assert (create["object"], create["object_id"], create["idempotency_key"], create["replayed"]) == ("payment_intent", "pi_1", "run:1:create", True)
    assert KEY not in json.dumps(api.calls)
    assert server.seen[0][2]["Authorization"] == f"Bearer {KEY}"


def test_stripe_version_is_sent(scripted: t.Callable[[Script], ScriptedServer]) -> None:
    server = scripted([(200, {}, BALANCE)])
    StripeApi(KEY, server.url, stripe_version="2024-06-20").v1.balance.retrieve()
    assert server.seen[0][2]["Stripe-Version"] == "2024-06-20"


@pytest.mark.parametrize(("status", "headers", "attempts"), [
    (429, {"Stripe-Should-Retry": "true"}, [429, 200]),
    (500, {}, [500, 200]),
    (409, {}, [409, 200]),
])
def test_retryable_answers_are_retried(scripted: t.Callable[[Script], ScriptedServer], status: int, headers: dict[str, str], attempts: list[int]) -> None:
    server = scripted([(status, headers, {"error": {"type": "api_error"}}), (200, {"Request-Id": "req_ok"}, BALANCE)])
    api = StripeApi(KEY, server.url, max_network_retries=2)
    api.v1.balance.retrieve()
    assert api.last_call["attempt_statuses"] == attempts and api.last_call["request_id"] == "req_ok"


@pytest.mark.parametrize(("status", "headers"), [(429, {}), (500, {"Stripe-Should-Retry": "false"}), (400, {})])
def test_other_answers_are_not_retried(scripted: t.Callable[[Script], ScriptedServer], status: int, headers: dict[str, str]) -> None:
    server = scripted([(status, dict(headers, **{"Request-Id": "req_bad"}), {"error": {"type": "invalid_request_error", "message": "no"}}),
                       (200, {}, BALANCE)])
    api = StripeApi(KEY, server.url, max_network_retries=2)
    with pytest.raises(StripeError) as caught:
        api.v1.balance.retrieve()
    assert api.last_call["attempts"] == 1 and api.last_call["status"] == status
    assert stripe_error_info(caught.value)["request_id"] == "req_bad"


def test_retries_stop_at_the_limit(scripted: t.Callable[[Script], ScriptedServer]) -> None:
    server = scripted([(503, {}, {"error": {"type": "api_error", "message": "down"}})] * 4)
    api = StripeApi(KEY, server.url, max_network_retries=2)
    with pytest.raises(StripeError):
        api.v1.balance.retrieve()
    assert api.last_call["attempt_statuses"] == [503, 503, 503]
    assert len(server.seen) == 3


def test_card_error_is_structured(scripted: t.Callable[[Script], ScriptedServer]) -> None:
    body = {"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds", "param": "payment_method",
                      "message": "Your card has insufficient funds."}}
    server = scripted([(402, {"Request-Id": "req_decl"}, body)])
    api = StripeApi(KEY, server.url, max_network_retries=0)
    with pytest.raises(StripeError) as caught:
        api.v1.payment_intents.create(params={"amount": 50, "currency": "usd", "confirm": True})
    info = stripe_error_info(caught.value)
    assert info == {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds", "http_status": 402,
                    "request_id": "req_decl", "param": "payment_method", "message": "Your card has insufficient funds."}
    assert describe_stripe_error(info) == ("HTTP 402 card_error (code card_declined, decline_code insufficient_funds, param payment_method, "
                                           "request req_decl): Your card has insufficient funds.")
    assert api.last_call["error_type"] == "card_error" and api.last_call["error_code"] == "card_declined"


def test_authentication_error_message_is_redacted(scripted: t.Callable[[Script], ScriptedServer]) -> None:
    server = scripted([(401, {}, {"error": {"type": "invalid_request_error", "message": f"Invalid API Key provided: {KEY}"}})])
    with pytest.raises(StripeError) as caught:
        StripeApi(KEY, server.url).v1.balance.retrieve()
    info = stripe_error_info(caught.value, KEY)
    assert KEY not in json.dumps(info) and "sk_test_\u2026wxyz" in info["message"] and info["http_status"] == 401


def test_connection_errors_are_retried_and_recorded() -> None:
    api = StripeApi(KEY, "http://127.0.0.1:9", max_network_retries=1, timeout=2)
    with pytest.raises(StripeError) as caught:
        api.v1.balance.retrieve()
    assert api.last_call["attempt_statuses"] == ["connection_error", "connection_error"]
    assert api.last_call["error"] == "APIConnectionError"
    assert stripe_error_info(caught.value)["type"] == "api_connection_error"


def test_list_all_walks_every_page(scripted: t.Callable[[Script], ScriptedServer]) -> None:
    def page(ids: list[str], more: bool) -> tuple[int, dict[str, str], dict[str, t.Any]]:
        data = [{"object": "webhook_endpoint", "id": i, "url": f"https://x/{i}", "metadata": {}, "status": "enabled", "secret": "whsec_x"}
                for i in ids]
        return 200, {}, {"object": "list", "url": "/v1/webhook_endpoints", "data": data, "has_more": more}

    server = scripted([page(["we_3", "we_2"], True), page(["we_1"], False)])
    api = StripeApi(KEY, server.url)
    endpoints = [sanitize_endpoint(e) for e in api.list_all(api.v1.webhook_endpoints, page_size=2)]
    assert [e["id"] for e in endpoints] == ["we_3", "we_2", "we_1"]
    assert all("secret" not in e for e in endpoints)
    paths = [path for method, path, headers in server.seen]
    assert paths == ["/v1/webhook_endpoints?limit=2", "/v1/webhook_endpoints?limit=2&starting_after=we_2"]


def test_match_endpoints_prefers_the_marker() -> None:
    endpoints = [
        {"id": "we_a", "url": "https://a", "marker": None},
        {"id": "we_b", "url": "https://b", "marker": "prod"},
        {"id": "we_c", "url": "https://a", "marker": "staging"},
    ]
    assert match_endpoints(endpoints, "prod", "https://a") == ([endpoints[1]], "marker")
    assert match_endpoints(endpoints, "new", "https://a") == ([endpoints[0]], "url")
    assert match_endpoints(endpoints, None, "https://a") == ([endpoints[0], endpoints[2]], "url")
    assert match_endpoints(endpoints, "new", "https://z") == ([], "none")
