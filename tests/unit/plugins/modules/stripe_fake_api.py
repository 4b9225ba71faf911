"""A small stateful Stripe API on 127.0.0.1 for the unit tests of the Stripe modules.

It speaks the wire format the ``stripe`` SDK uses (form-encoded bodies with ``a[b]`` keys, JSON answers,
``Request-Id``, ``Idempotency-Key`` replays with ``Idempotent-Replayed``, ``Stripe-Should-Retry``) for the few
endpoints the modules call, so the modules' real SDK and HTTP code runs. The integration tests run them against
the lab's full Stripe emulator.
"""

from __future__ import annotations

import http.server
import itertools
import json
import socket
import threading
import time
import typing as t
from urllib.parse import parse_qsl, urlsplit

Answer = tuple[int, dict[str, t.Any], dict[str, str]]


def decode_form(pairs: t.Iterable[tuple[str, str]]) -> dict[str, t.Any]:
    """``a[b][0]=x`` pairs into nested dicts; dicts whose keys are all digits become lists."""
    root: dict[str, t.Any] = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def listify(node: t.Any) -> t.Any:
        if isinstance(node, dict):
            node = {k: listify(v) for k, v in node.items()}
            if node and all(k.isdigit() for k in node):
                return [node[k] for k in sorted(node, key=int)]
        return node

    return listify(root)


def error(status: int, kind: str, message: str, **extra: t.Any) -> tuple[int, dict[str, t.Any]]:
    return status, {"error": dict({"type": kind, "message": message}, **extra)}


class FakeStripe:
    """State, faults and a record of the requests; ``url`` is the api_base to give the modules."""

    def __init__(self, keys: t.Iterable[str] = ("sk_test_" + "a" * 20 + "t3st",), account: str = "acct_1UnitTest0000001") -> None:
        self.keys = set(keys)
        self.account = account
        self.restricted_denied: set[str] = {"/v1/account"}
        self.endpoints: dict[str, dict[str, t.Any]] = {}
        self.intents: dict[str, dict[str, t.Any]] = {}
        self.charges: dict[str, dict[str, t.Any]] = {}
        self.refunds: dict[str, dict[str, t.Any]] = {}
        self.idempotency: dict[tuple[str, str], tuple[str, Answer]] = {}
        self.faults: list[dict[str, t.Any]] = []
        self.requests: list[dict[str, t.Any]] = []
        self.refund_status = "succeeded"
        self.balance_livemode: bool | None = None  # None: follow the key
        self._ids = itertools.count(1)
        self._clock = itertools.count(int(time.time()))
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: t.Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle's algorithm adds ~40 ms per answer
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                status, payload, headers = fake.handle(self.command, self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle  # noqa: N815 (http.server naming)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    # ----- helpers for tests

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):014d}"

    def add_endpoint(self, **fields: t.Any) -> dict[str, t.Any]:
        endpoint = {
            "id": self.new_id("we"), "object": "webhook_endpoint", "api_version": None, "application": None,
            "created": next(self._clock), "description": None, "enabled_events": ["*"], "livemode": False,
            "metadata": {}, "status": "enabled", "url": "https://example.com/hook",
        }
        endpoint.update(fields)
        self.endpoints[endpoint["id"]] = endpoint
        return endpoint

    def writes(self) -> list[str]:
        return [f"{r['method']} {r['path']}" for r in self.requests if r["method"] != "GET"]

    def add_fault(self, method: str, path_prefix: str, status: int, count: int = 1, should_retry: bool | None = None) -> None:
        self.faults.append({"method": method, "path_prefix": path_prefix, "status": status, "count": count, "should_retry": should_retry})

    # ----- the API

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: str) -> Answer:
        with self._lock:
            parts = urlsplit(raw_path)
            params = decode_form(parse_qsl(body if method == "POST" else parts.query, keep_blank_values=True))
            key = (headers.get("Authorization") or "").removeprefix("Bearer ")
            record = {"method": method, "path": parts.path, "params": params, "idempotency_key": headers.get("Idempotency-Key"),
                      "stripe_version": headers.get("Stripe-Version")}
            self.requests.append(record)
            request_id = f"req_{next(self._ids):012d}"
            for fault in self.faults:
                if fault["count"] > 0 and fault["method"] == method and parts.path.startswith(fault["path_prefix"]):
                    fault["count"] -= 1
                    extra = {} if fault["should_retry"] is None else {"Stripe-Should-Retry": str(fault["should_retry"]).lower()}
                    status, payload = error(fault["status"], "api_error", "injected fault")
                    return status, payload, {"Request-Id": request_id, **extra}
            if key not in self.keys:
                status, payload = error(401, "invalid_request_error", f"Invalid API Key provided: {key[:8]}****{key[-4:]}")
                return status, payload, {"Request-Id": request_id}
            if key.startswith("rk_") and parts.path in self.restricted_denied:
                status, payload = error(403, "invalid_request_error", "The provided key does not have the required permissions",
                                        code="secret_key_required")
                return status, payload, {"Request-Id": request_id}
            idem = headers.get("Idempotency-Key") if method == "POST" else None
            fingerprint = f"{parts.path}?{json.dumps(params, sort_keys=True)}"
            if idem and (key, idem) in self.idempotency:
                seen, answer = self.idempotency[(key, idem)]
                if seen != fingerprint:
                    status, payload = error(400, "idempotency_error", "Keys for idempotent requests can only be used with the same parameters")
                    return status, payload, {"Request-Id": request_id}
                return answer[0], answer[1], dict(answer[2], **{"Idempotent-Replayed": "true", "Request-Id": request_id})
            status, payload = self.route(method, parts.path, params, livemode=key.startswith(("sk_live_", "rk_live_")))
            answer = (status, payload, {"Request-Id": request_id})
            if idem and status < 500:
                self.idempotency[(key, idem)] = (fingerprint, answer)
            return answer

    def route(self, method: str, path: str, params: dict[str, t.Any], livemode: bool) -> tuple[int, dict[str, t.Any]]:
        segments = path.strip("/").split("/")[1:]
        name = segments[0] if segments else ""
        ident = segments[1] if len(segments) > 1 else None
        if name == "balance" and method == "GET":
            live = livemode if self.balance_livemode is None else self.balance_livemode
            return 200, {"object": "balance", "livemode": live, "available": [], "pending": []}
        if name == "account" and method == "GET":
            return 200, {"object": "account", "id": self.account}
        if name == "webhook_endpoints":
            return self.webhook_endpoints(method, ident, params, livemode)
        if name == "payment_intents":
            return self.payment_intents(method, ident, params, livemode)
        if name == "refunds" and method == "POST" and ident is None:
            return self.create_refund(params)
        if name == "refunds" and method == "GET" and ident in self.refunds:
            return 200, self.refunds[ident]
        if name == "charges" and method == "GET" and ident in self.charges:
            return 200, self.charges[ident]
        return error(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})", code="resource_missing")

    def page(self, objects: list[dict[str, t.Any]], params: dict[str, t.Any], url: str) -> tuple[int, dict[str, t.Any]]:
        ordered = sorted(objects, key=lambda o: (o["created"], o["id"]), reverse=True)
        after = params.get("starting_after")
        if after:
            ids = [o["id"] for o in ordered]
            ordered = ordered[ids.index(after) + 1:] if after in ids else []
        limit = int(params.get("limit") or 10)
        return 200, {"object": "list", "url": url, "data": ordered[:limit], "has_more": len(ordered) > limit}

    def webhook_endpoints(self, method: str, ident: str | None, params: dict[str, t.Any], livemode: bool) -> tuple[int, dict[str, t.Any]]:
        if ident is None and method == "GET":
            return self.page(list(self.endpoints.values()), params, "/v1/webhook_endpoints")
        if ident is None and method == "POST":
            if not params.get("url") or not params.get("enabled_events"):
                return error(400, "invalid_request_error", "Missing required param: url or enabled_events.", param="url")
            unknown = set(params) - {"url", "enabled_events", "description", "metadata", "api_version", "connect"}
            if unknown:
                return error(400, "invalid_request_error", f"Received unknown parameter: {sorted(unknown)[0]}", param=sorted(unknown)[0])
            endpoint = self.add_endpoint(url=params["url"], enabled_events=params["enabled_events"], description=params.get("description"),
                                         metadata={k: v for k, v in (params.get("metadata") or {}).items() if v},
                                         api_version=params.get("api_version"), livemode=livemode)
            return 200, dict(endpoint, secret=f"whsec_{endpoint['id']}Secret0123456789")
        if ident not in self.endpoints:
            return error(404, "invalid_request_error", f"No such webhook endpoint: '{ident}'", code="resource_missing", param="id")
        endpoint = self.endpoints[ident]
        if method == "GET":
            return 200, endpoint
        if method == "DELETE":
            del self.endpoints[ident]
            return 200, {"id": ident, "object": "webhook_endpoint", "deleted": True}
        unknown = set(params) - {"url", "enabled_events", "description", "metadata", "disabled"}
        if unknown:
            return error(400, "invalid_request_error", f"Received unknown parameter: {sorted(unknown)[0]}", param=sorted(unknown)[0])
        for field in ("url", "enabled_events"):
            if field in params:
                endpoint[field] = params[field]
        if "description" in params:
            endpoint["description"] = params["description"] or None
        if "disabled" in params:
            endpoint["status"] = "disabled" if params["disabled"] == "true" else "enabled"
        for k, v in (params.get("metadata") or {}).items():
            if v == "":
                endpoint["metadata"].pop(k, None)
            else:
                endpoint["metadata"][k] = v
        return 200, endpoint

    def payment_intents(self, method: str, ident: str | None, params: dict[str, t.Any], livemode: bool) -> tuple[int, dict[str, t.Any]]:
        if ident is None and method == "GET":
            gte = int((params.get("created") or {}).get("gte") or 0)
            return self.page([i for i in self.intents.values() if i["created"] >= gte], params, "/v1/payment_intents")
        if ident is None and method == "POST":
            intent = {
                "id": self.new_id("pi"), "object": "payment_intent", "amount": int(params["amount"]), "currency": params["currency"],
                "created": next(self._clock), "livemode": livemode, "metadata": params.get("metadata") or {},
                "payment_method": params.get("payment_method"), "status": "requires_payment_method", "latest_charge": None,
                "amount_received": 0, "description": params.get("description"),
            }
            self.intents[intent["id"]] = intent
            if params.get("confirm") == "true":
                if str(params.get("payment_method", "")).startswith("pm_card_chargeDeclined"):
                    return error(402, "card_error", "Your card has insufficient funds.", code="card_declined",
                                 decline_code="insufficient_funds", payment_intent=intent)
                charge = {"id": self.new_id("ch"), "object": "charge", "amount": intent["amount"], "amount_refunded": 0,
                          "refunded": False, "payment_intent": intent["id"], "status": "succeeded"}
                self.charges[charge["id"]] = charge
                intent.update(status="succeeded", latest_charge=charge["id"], amount_received=intent["amount"])
            return 200, intent
        if method == "GET" and ident in self.intents:
            return 200, self.intents[ident]
        return error(404, "invalid_request_error", f"No such payment_intent: '{ident}'", code="resource_missing")

    def create_refund(self, params: dict[str, t.Any]) -> tuple[int, dict[str, t.Any]]:
        intent = self.intents.get(params.get("payment_intent", ""))
        if intent is None or intent["latest_charge"] is None:
            return error(400, "invalid_request_error", "This PaymentIntent has no charge to refund", param="payment_intent")
        charge = self.charges[intent["latest_charge"]]
        refund = {"id": self.new_id("re"), "object": "refund", "amount": charge["amount"], "charge": charge["id"],
                  "payment_intent": intent["id"], "status": self.refund_status, "metadata": params.get("metadata") or {}}
        self.refunds[refund["id"]] = refund
        if self.refund_status == "succeeded":
            charge.update(refunded=True, amount_refunded=charge["amount"])
        return 200, refund
