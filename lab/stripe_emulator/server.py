"""The HTTP front: authentication, faults, idempotency, routing, expansion and Stripe's response headers.

Every API request runs its handler while holding the state lock, so concurrent requests see each other's
effects whole and idempotent replays cannot race; the state file is written by a background writer, outside the lock.
"""

from __future__ import annotations

import base64
import collections
import ipaddress
import json
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from . import expand, faults, forms, routes, sdk_catalog, webhooks
from .context import Ctx
from .errors import StripeError, invalid, mask_key, unauthorized
from .store import Store, random_token

MAX_BODY = 1 << 20
MAX_IDEMPOTENCY_KEY = 255
REQUEST_LOG_SIZE = 2000
LIVE_PREFIXES = ("sk_live_", "rk_live_")


def _canonical(method: str, path: str, params: dict[str, Any]) -> str:
    return json.dumps([method, path, params], sort_keys=True, separators=(",", ":"))


class Emulator:
    """Everything a request handler needs: the state, the faults, the delivery worker and the request log."""

    def __init__(self, store: Store, quiet: bool = False) -> None:
        self.store = store
        self.faults = faults.Faults()
        self.worker = webhooks.DeliveryWorker(store)
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self.requests_lock = threading.Lock()
        self.quiet = quiet

    def log_request(self, entry: dict[str, Any]) -> None:
        with self.requests_lock:
            self.requests.append(entry)
        if not self.quiet:
            print(f"{entry['request_id']} {entry['method']} {entry['path']} -> {entry['status']} ({entry['ms']} ms)"
                  f"{' fault=' + entry['fault'] if entry['fault'] else ''}{' replayed' if entry['replayed'] else ''}",
                  file=sys.stderr, flush=True)


class Handler(BaseHTTPRequestHandler):
    """One HTTP request to the emulator."""

    protocol_version = "HTTP/1.1"
    _entry: tuple[dict[str, Any], float] | None = None  # this request's log entry and start, until it is logged
    # Headers and body go out in two writes on a kept-alive connection: without this, Nagle's algorithm
    # and the client's delayed ACK add about 40 ms to every answer.
    disable_nagle_algorithm = True
    server_version = "stripe-emulator"
    sys_version = ""
    emulator: Emulator  # set on the subclass made by make_server

    # http.server entry points ----------------------------------------------------------------------------------
    def do_GET(self) -> None:  # pylint: disable=invalid-name
        self._handle()

    def do_POST(self) -> None:  # pylint: disable=invalid-name
        self._handle()

    def do_DELETE(self) -> None:  # pylint: disable=invalid-name
        self._handle()

    def do_PUT(self) -> None:  # pylint: disable=invalid-name
        self._handle()

    def do_PATCH(self) -> None:  # pylint: disable=invalid-name
        self._handle()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        """Requests are logged by Emulator.log_request instead."""

    # plumbing --------------------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise invalid(f"The request body is larger than {MAX_BODY} bytes.")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body, indent=2).encode()
        self._log_entry()  # before the answer: a client that has it finds its request in the log
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, no-store")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        """Close the connection without answering."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _api_key(self) -> str | None:
        header = self.headers.get("Authorization", "")
        scheme, _sep, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip() or None
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(value.strip()).decode().split(":", 1)[0] or None
            except (ValueError, UnicodeDecodeError):
                return None
        return None

    # the request -----------------------------------------------------------------------------------------------
    def _handle(self) -> None:
        started = time.monotonic()
        request_id = f"req_{random_token(14)}"
        split = urlsplit(self.path)
        path = split.path
        entry: dict[str, Any] = {"request_id": request_id, "method": self.command, "path": path, "status": 0, "at": time.time(),
                                 "idempotency_key": self.headers.get("Idempotency-Key"), "replayed": False, "fault": None, "ms": 0}
        self._entry = None if path.startswith("/_emulator") else (entry, started)
        try:
            if path.startswith("/_emulator/") or path == "/_emulator":
                status, body = self._admin(path, split.query)
                self._send(status, body, {"Request-Id": request_id})
                return
            self._api(request_id, path, split.query, entry)
        finally:
            self._log_entry()  # a request answered by no response (a dropped connection) is logged here

    def _log_entry(self) -> None:
        """Log this request once, with its status and duration so far."""
        if self._entry is not None:
            entry, started = self._entry
            self._entry = None
            entry["ms"] = round((time.monotonic() - started) * 1000)
            self.emulator.log_request(entry)

    def _api(self, request_id: str, path: str, query: str, entry: dict[str, Any]) -> int:
        emulator = self.emulator
        store = emulator.store
        fault = emulator.faults.take(self.command, path)
        headers = {"Request-Id": request_id, "Stripe-Version": self.headers.get("Stripe-Version") or store.settings.api_version}
        if fault is not None:
            entry["fault"] = fault.kind
            raw = self._read_body()
            if fault.kind == "latency":
                time.sleep(fault.latency_ms / 1000)
            elif fault.kind == "status":
                assert fault.status is not None
                entry["status"] = fault.status
                self._send(fault.status, fault.error_body(), {**headers, **fault.headers()})
                return fault.status
            elif not fault.after_processing:
                self._drop()
                return 0
        else:
            raw = self._read_body()
        key = entry["idempotency_key"]
        mode = "test"
        status, body = 500, {}
        try:
            api_key = self._api_key()
            if not api_key or api_key not in store.settings.keys:
                raise unauthorized(api_key)
            mode = "live" if api_key.startswith(LIVE_PREFIXES) else "test"
            connected = self.headers.get("Stripe-Account")
            if connected and connected != store.settings.account:
                # The emulator has no connected accounts: Stripe's answer for an account the key cannot reach.
                raise StripeError(403, f"The provided key '{mask_key(api_key)}' does not have access to account '{connected}' "
                                  "(or that account does not exist). Application access may have been revoked.",
                                  type_="invalid_request_error", code="account_invalid")
            version = self.headers.get("Stripe-Version")
            if version and version not in sdk_catalog.api_versions():
                raise invalid(f"Invalid Stripe API version: {version}")
            if key is not None and (not key or len(key) > MAX_IDEMPOTENCY_KEY):
                raise invalid(f"Idempotency-Key must be between 1 and {MAX_IDEMPOTENCY_KEY} characters long.")
            status, body = self._execute(request_id, path, query, raw, mode, key, headers, entry)
        except StripeError as exc:
            status, body = exc.status, exc.body(self._log_url(request_id, mode) if exc.status != 401 else None)
            headers.update(exc.headers)
        except Exception:  # pylint: disable=broad-exception-caught
            # A bug in the emulator: answer like Stripe's own internal errors and keep serving.
            traceback.print_exc(file=sys.stderr)
            status, body = 500, StripeError(500, "An unknown error occurred in the emulator (see its log).", type_="api_error").body(
                self._log_url(request_id, mode))
        if key is not None and self.command == "POST":
            headers["Idempotency-Key"] = key
        if fault is not None and fault.kind == "drop":
            self._drop()
            return 0
        entry["status"] = status
        self._send(status, body, headers)
        return status

    @staticmethod
    def _log_url(request_id: str, mode: str) -> str:
        return f"https://dashboard.stripe.com/{'test/' if mode == 'test' else ''}logs/{request_id}?t={int(time.time())}"

    def _execute(self, request_id: str, path: str, query: str, raw: bytes, mode: str, key: str | None,
                 headers: dict[str, str], entry: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Route, validate and run the request under the state lock; replay or refuse a reused idempotency key."""
        store = self.emulator.store
        found = routes.match(self.command, path)
        if found is None:
            raise StripeError(404, f"Unrecognized request URL ({self.command}: {path}). This emulator implements: {routes.summary()}. "
                              "See docs/stripe-emulator.md.")
        route, args = found
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if raw and content_type == "application/json":
            raise invalid("The v1 API takes form-encoded bodies (application/x-www-form-urlencoded), not JSON.")
        params = forms.parse_form(query)
        params.update(forms.parse_form(raw.decode("utf-8", errors="replace")))
        forms.check_params(params, route.params, route.stripe_known(), route.template)
        api_version = self.headers.get("Stripe-Version") or store.settings.api_version
        use_key = key if self.command == "POST" else None
        with store.lock:
            if use_key is not None:
                fingerprint = _canonical(self.command, path, params)
                previous = store.idempotent_result(mode, use_key)
                if previous is not None:
                    if previous["fingerprint"] != fingerprint:
                        raise StripeError(400, "Keys for idempotent requests can only be used with the same parameters they were first "
                                          f"used with. Try using a key other than '{use_key}' if you meant to execute a different "
                                          "request.", type_="idempotency_error")
                    headers.update({"Idempotent-Replayed": "true", "Original-Request": previous["request_id"]})
                    entry["replayed"] = True
                    return previous["status"], previous["body"]
            ctx = Ctx(store=store, mode=mode, request_id=request_id, idempotency_key=use_key, api_version=api_version,
                      route=route.label, params=params)
            store.mutating = self.command != "GET"
            try:
                body = route.handler(ctx, *args.values())
                body = expand.apply(ctx, body, forms.get_expand(params))
                status = 200
            except StripeError as exc:
                if not exc.saved:
                    raise
                status, body = exc.status, exc.body(self._log_url(request_id, mode))
            finally:
                store.mutating = False
            if use_key is not None:
                store.remember(mode, use_key, _canonical(self.command, path, params), status, body, request_id)
            if self.command != "GET":
                store.save()
            return status, body

    # admin -----------------------------------------------------------------------------------------------------
    def _admin(self, path: str, query: str) -> tuple[int, dict[str, Any]]:
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            return 403, {"error": {"type": "invalid_request_error", "message": "The /_emulator/ API is for loopback clients only."}}
        emulator = self.emulator
        raw = self._read_body()
        route = (self.command, path.rstrip("/"))
        params = forms.parse_form(query)
        if route == ("GET", "/_emulator/health"):
            return 200, self._health()
        if route == ("GET", "/_emulator/faults"):
            return 200, {"object": "list", "data": emulator.faults.listing()}
        if route == ("POST", "/_emulator/faults"):
            try:
                spec = json.loads(raw or b"null")
                fault = emulator.faults.add(spec)
            except (ValueError, faults.FaultSpecError) as exc:
                return 400, {"error": {"type": "invalid_request_error", "message": f"Invalid fault: {exc}"}}
            return 200, {"object": "fault", **fault.__dict__}
        if route == ("DELETE", "/_emulator/faults"):
            return 200, {"object": "list", "deleted": emulator.faults.clear()}
        if route == ("GET", "/_emulator/deliveries"):
            with emulator.store.lock:
                return 200, webhooks.list_deliveries(emulator.store, params)
        if route == ("GET", "/_emulator/requests"):
            with emulator.requests_lock:
                rows = [r for r in emulator.requests
                        if r["path"].startswith(params.get("path_prefix", "")) and params.get("method", r["method"]) == r["method"]]
            return 200, {"object": "list", "data": rows}
        if route == ("DELETE", "/_emulator/requests"):
            with emulator.requests_lock:
                emulator.requests.clear()
            return 200, {"object": "list", "deleted": True}
        if route == ("POST", "/_emulator/reset"):
            with emulator.store.wakeup:
                emulator.store.reset()
                emulator.store.save()
                emulator.store.wakeup.notify_all()
            emulator.faults.clear()
            with emulator.requests_lock:
                emulator.requests.clear()
            return 200, {"reset": True}
        return 404, {"error": {"type": "invalid_request_error",
                               "message": f"Unrecognized emulator URL ({self.command}: {path}). It has: GET /_emulator/health, "
                                          "GET|POST|DELETE /_emulator/faults, GET /_emulator/deliveries, GET|DELETE /_emulator/requests, "
                                          "POST /_emulator/reset."}}

    def _health(self) -> dict[str, Any]:
        store = self.emulator.store
        with store.lock:
            counts = store.counts()
            deliveries = collections.Counter(d["status"] for d in store.deliveries().values())
        return {"status": "ok", "account": store.settings.account, "api_version": store.settings.api_version,
                "sdk_version": sdk_catalog.SDK_VERSION, "objects": dict(counts), "deliveries": dict(deliveries),
                "faults": len(self.emulator.faults.listing())}


def make_server(host: str, port: int, emulator: Emulator) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"emulator": emulator})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
