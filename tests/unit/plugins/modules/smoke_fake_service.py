"""A small payment service that keeps the smoke-test contract, in-process on 127.0.0.1, for the smoke_test unit tests.

It makes its payments and refunds at the unit tests' fake Stripe (called in-process, with the wire format the SDK
uses), keeps a mailbox of receipts under ``/mailbox``, and can be broken on purpose, one fault at a time, to prove
that the smoke test catches each fault with the matching check.
"""

from __future__ import annotations

import hashlib
import http.server
import itertools
import json
import socket
import threading
import time
import typing as t
from urllib.parse import parse_qs, urlencode, urlsplit

from stripe_fake_api import FakeStripe, error

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'",
                    "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
# The faults a variant of the service can have, each meant to be caught by one check.
FAULTS = ("auth_disabled", "admin_open", "no_rate_limit", "cors_any_origin", "no_nosniff", "no_webhook", "refund_fails",
          "no_email", "slow_payment", "payments_hang", "payment_processing", "no_idempotency")


class SmokeStripe(FakeStripe):
    """The unit tests' fake Stripe with invoices (created in-process by the fake service, read over HTTP)."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.invoices: dict[str, dict[str, t.Any]] = {}

    def add_invoice(self, customer: str, amount: int, currency: str, description: str) -> dict[str, t.Any]:
        with self._lock:
            invoice = {"id": self.new_id("in"), "object": "invoice", "customer": customer, "amount_due": amount,
                       "currency": currency, "description": description, "status": "open",
                       "number": f"SMOKE-{len(self.invoices) + 1:04d}"}
            self.invoices[invoice["id"]] = invoice
            return invoice

    def route(self, method: str, path: str, params: dict[str, t.Any], livemode: bool) -> tuple[int, dict[str, t.Any]]:
        segments = path.strip("/").split("/")
        if len(segments) == 3 and segments[1] == "invoices" and method == "GET":
            found = self.invoices.get(segments[2])
            if found is None:
                return error(404, "invalid_request_error", "No such invoice", code="resource_missing")
            return 200, found
        return super().route(method, path, params, livemode)


class Answer(t.NamedTuple):
    status: int
    payload: t.Any
    headers: dict[str, str]


def answer(status: int, payload: t.Any = None, **headers: str) -> Answer:
    return Answer(status, payload, {k.replace("_", "-"): v for k, v in headers.items()})


def fail(status: int, code: str, message: str, **headers: str) -> Answer:
    kinds = {401: "authentication_error", 402: "card_error", 429: "rate_limit_error"}
    kind = "api_error" if status >= 500 else kinds.get(status, "invalid_request_error")
    return answer(status, {"error": {"type": kind, "code": code, "message": message}}, **headers)


class FakePaymentService:
    """The service on ``listeners`` ports sharing one state (like app hosts sharing a database)."""

    def __init__(self, stripe: SmokeStripe, stripe_key: str, keys: dict[str, str], faults: t.Iterable[str] = (),
                 listeners: int = 2, smoke_limit: int = 5,
                 cors_origins: t.Iterable[str] = ("https://shop.example.com",), payment_delay: float = 0.0) -> None:
        self.stripe = stripe
        self.stripe_key = stripe_key
        self.keys = keys
        self.faults = set(faults)
        unknown = self.faults - set(FAULTS)
        assert not unknown, f"unknown faults {unknown}"
        self.smoke_limit = smoke_limit
        self.smoke_count = 0
        self.cors_origins = set(cors_origins)
        self.payment_delay = payment_delay
        self.customers: dict[str, dict[str, t.Any]] = {}
        self.payments: dict[str, dict[str, t.Any]] = {}
        self.payment_keys: dict[str, str] = {}
        self.refunds: dict[str, dict[str, t.Any]] = {}
        self.refund_requests: list[str] = []
        self.invoices: list[dict[str, t.Any]] = []
        self.mailbox: list[dict[str, t.Any]] = []
        self.requests: list[dict[str, t.Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self.servers = [self._listen() for _unused in range(listeners)]
        self.urls = [f"http://127.0.0.1:{server.server_address[1]}" for server, _thread in self.servers]
        self.mailbox_url = f"{self.urls[0]}/mailbox"

    def _listen(self) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: t.Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                result = service.handle(self.command, self.path, self.headers, body)
                data = b"" if result.payload is None else (
                    result.payload.encode() if isinstance(result.payload, str) else json.dumps(result.payload).encode())
                self.send_response(result.status)
                headers = dict(SECURITY_HEADERS)
                if "no_nosniff" in service.faults:
                    headers.pop("X-Content-Type-Options")
                headers.update(result.headers)
                if result.status != 204:
                    headers.setdefault("Content-Type", "application/json")
                    headers["Content-Length"] = str(len(data))
                headers["Connection"] = "close"
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_OPTIONS = _handle  # noqa: N815 (http.server naming)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        return server, thread

    def close(self) -> None:
        for server, thread in self.servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    # ----- what the tests look at

    def paths(self, method: str | None = None) -> list[str]:
        return [f"{r['method']} {r['path']}" for r in self.requests if method in (None, r["method"])]

    # ----- the API

    def role(self, headers: t.Any) -> str | None:
        scheme, _sep, token = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return {value: name for name, value in self.keys.items()}.get(token.strip())

    def access(self, role: str | None, needed: str) -> Answer | None:
        """None when the request may go on, else the refusal (401, 403 or 429)."""
        if role is None and needed == "api" and "auth_disabled" in self.faults:
            return None  # the API lets anonymous requests through; the admin endpoint is still protected
        if role is None:
            return fail(401, "unauthorized", "a valid bearer token is required",
                        WWW_Authenticate='Bearer realm="payments"')
        granted = {"api": "api", "smoke": "api", "admin": "admin"}[role]
        if needed == "admin" and role == "api" and "admin_open" in self.faults:
            return None
        if granted != needed:
            return fail(403, "forbidden", f"this endpoint requires the {needed} role")
        if role == "smoke" and "no_rate_limit" not in self.faults:
            self.smoke_count += 1
            if self.smoke_count > self.smoke_limit:
                return fail(429, "rate_limited", "too many requests", Retry_After="42")
        return None

    def handle(self, method: str, raw_path: str, headers: t.Any, body: bytes) -> Answer:
        parts = urlsplit(raw_path)
        path = parts.path
        with self._lock:
            self.requests.append({"method": method, "path": path, "role": self.role(headers)})
        if path.startswith("/mailbox/"):
            return self.read_mailbox(parts.query)
        if method == "OPTIONS":
            return self.preflight(path, headers)
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return fail(400, "invalid_json", "request body is not valid JSON")
        segments = path.strip("/").split("/")
        simple = {"/healthz": {"status": "ok"}, "/healthz/lb": {"status": "serving", "checks": {"postgres": "ok"}},
                  "/readyz": {"status": "ready",
                              "checks": {"postgres": "ok", "redis": "ok", "stripe": "ok", "smtp": "ok"}},
                  "/version": {"name": "payment-service", "version": "1.2.3", "instance": "fake-1", "colour": "green"}}
        if method == "GET" and path in simple:
            return answer(200, simple[path])
        if method == "GET" and path == "/metrics":
            return answer(200, self.metrics(), Content_Type="text/plain; version=0.0.4")
        if path == "/admin/stats" and method == "GET":
            return self.access(self.role(headers), "admin") or answer(200, {"customers": len(self.customers)})
        if segments[0] != "v1":
            return fail(404, "not_found", "no such route")
        refused = self.access(self.role(headers), "api")
        if refused:
            return refused
        with self._lock:
            result = self.api(method, segments[1:], headers, payload)
        if method == "POST" and path == "/v1/payments" and (
                ("slow_payment" in self.faults and result.status == 201) or "payments_hang" in self.faults):
            time.sleep(self.payment_delay)  # stored and charged, but the answer comes too late for the client
        return result

    def api(self, method: str, segments: list[str], headers: t.Any, payload: t.Any) -> Answer:
        key = headers.get("Idempotency-Key")
        if segments == ["customers"] and method == "POST":
            customer = {"id": f"cus_fake{next(self._ids):010d}", **payload}
            self.customers[customer["id"]] = customer
            return answer(201, customer)
        if len(segments) == 2 and segments[0] == "customers" and method == "GET":
            found = self.customers.get(segments[1])
            return answer(200, found) if found else fail(404, "customer_not_found", "no customer with this id")
        if segments == ["payments"] and method == "POST":
            return self.create_payment(key, payload)
        if len(segments) == 2 and segments[0] == "payments" and method == "GET":
            found = self.payments.get(segments[1])
            return answer(200, found) if found else fail(404, "payment_not_found", "no payment with this id")
        if len(segments) == 3 and segments[0] == "payments" and segments[2] == "refunds" and method == "POST":
            return self.refund(segments[1], key)
        if segments == ["invoices"] and method == "POST":
            return self.invoice(payload)
        return fail(404, "not_found", "no such route")

    def create_payment(self, key: str | None, order: t.Any) -> Answer:
        if not key:
            return fail(400, "idempotency_key_required", "the Idempotency-Key header is required")
        if not isinstance(order, dict) or not {"amount", "currency", "payment_method"} <= set(order):
            return fail(400, "invalid_request", "missing field(s)")
        if key in self.payment_keys and "no_idempotency" in self.faults:
            key = f"{key}#{next(self._ids)}"  # a replay is taken for a new payment
        if key in self.payment_keys:
            stored = self.payments[self.payment_keys[key]]
            if (stored["amount"], stored["customer_id"]) != (order["amount"], order.get("customer_id")):
                return fail(400, "idempotency_key_reused", "this Idempotency-Key was used for another request")
            return answer(200, {k: v for k, v in stored.items() if k != "webhook_events"})
        payment_id = "pay_" + hashlib.sha256(f"payments:{key}".encode()).hexdigest()[:24]
        form = urlencode({"amount": order["amount"], "currency": order["currency"], "confirm": "true",
                          "payment_method": order["payment_method"], "metadata[payment_id]": payment_id})
        status, intent, _headers = self.stripe.handle("POST", "/v1/payment_intents", {
            "Authorization": f"Bearer {self.stripe_key}", "Idempotency-Key": f"payments:{key}"}, form)
        if status == 402:
            return fail(402, "card_declined", "the card was declined")
        state = "processing" if "payment_processing" in self.faults else "succeeded"
        payment = {"id": payment_id, "stripe_payment_intent_id": intent["id"], "customer_id": order.get("customer_id"),
                   "amount": order["amount"], "currency": order["currency"], "status": state,
                   "created": int(time.time()), "webhook_events": []}
        if "no_webhook" not in self.faults:
            payment["webhook_events"].append("payment_intent.succeeded")
        self.payments[payment_id] = payment
        self.payment_keys[key] = payment_id
        customer = self.customers.get(order.get("customer_id") or "")
        if customer and "no_email" not in self.faults:
            self.mailbox.append({"message_id": f"<{payment_id}@payments.test>", "from": "receipts@payments.test",
                                 "to": [customer["email"]], "subject": "Receipt for your payment",
                                 "headers": {"X-Payment-Id": payment_id, "X-Payment-Intent": intent["id"]},
                                 "received_at": "2026-01-01T00:00:00Z"})
        return answer(201, {k: v for k, v in payment.items() if k != "webhook_events"})

    def refund(self, payment_id: str, key: str | None) -> Answer:
        self.refund_requests.append(payment_id)
        payment = self.payments.get(payment_id)
        if payment is None:
            return fail(404, "payment_not_found", "no payment with this id")
        if not key:
            return fail(400, "idempotency_key_required", "the Idempotency-Key header is required")
        if key in self.refunds:
            return answer(200, {**self.refunds[key], "payment_status": payment["status"]})
        if "refund_fails" in self.faults:
            return fail(500, "internal_error", "internal error")
        form = urlencode({"payment_intent": payment["stripe_payment_intent_id"], "metadata[payment_id]": payment_id})
        status, refund, _headers = self.stripe.handle("POST", "/v1/refunds", {
            "Authorization": f"Bearer {self.stripe_key}", "Idempotency-Key": f"refunds:{key}"}, form)
        if status != 200:
            return fail(502, "stripe_error", "Stripe refused the refund")
        stored = {"id": "ref_" + hashlib.sha256(f"refunds:{key}".encode()).hexdigest()[:24], "payment_id": payment_id,
                  "stripe_refund_id": refund["id"], "amount": refund["amount"], "status": refund["status"],
                  "created": int(time.time())}
        self.refunds[key] = stored
        if refund["status"] == "succeeded":
            payment["status"] = "refunded"
            if "no_webhook" not in self.faults:
                payment["webhook_events"].append("charge.refunded")
        return answer(201, {**stored, "payment_status": payment["status"]})

    def invoice(self, order: t.Any) -> Answer:
        if order.get("customer_id") not in self.customers:
            return fail(400, "customer_not_found", "no customer with this customer_id")
        invoice = self.stripe.add_invoice(f"cus_stripe{order['customer_id'][4:]}", order["amount"], order["currency"],
                                          order["description"])
        self.invoices.append(invoice)
        return answer(201, {"invoice_id": invoice["id"], "number": invoice["number"], "status": invoice["status"],
                            "amount_due": invoice["amount_due"], "currency": invoice["currency"],
                            "customer_id": order["customer_id"], "stripe_customer_id": invoice["customer"]})

    def preflight(self, path: str, headers: t.Any) -> Answer:
        origin = headers.get("Origin") or ""
        allowed = path.startswith("/v1/") and (origin in self.cors_origins or "cors_any_origin" in self.faults)
        if not allowed or (headers.get("Access-Control-Request-Method") or "").upper() != "POST":
            return fail(403, "cors_forbidden", "this origin or method may not call this endpoint")
        return answer(204, None, Access_Control_Allow_Origin=origin, Access_Control_Allow_Methods="POST",
                      Vary="Origin")

    def read_mailbox(self, query: str) -> Answer:
        wanted = (parse_qs(query).get("header") or [""])[0]
        name, _sep, value = wanted.partition(":")
        found = [m for m in self.mailbox if m["headers"].get(name) == value]
        return answer(200, {"messages": found})

    def metrics(self) -> str:
        return "\n".join([
            "# TYPE payments_total counter", f'payments_total{{outcome="succeeded"}} {len(self.payments)}',
            "# TYPE http_requests_total counter",
            f'http_requests_total{{method="GET",route="/healthz",status="200"}} {len(self.requests)}',
            "# TYPE dependency_up gauge", 'dependency_up{dependency="postgres"} 1',
            'dependency_up{dependency="redis"} 1', 'dependency_up{dependency="stripe"} 1', "",
        ])
