"""Injected faults: the next ``count`` requests matching a method and path prefix get an error, a delay or a dropped connection.

A fault hits before the request is executed (nothing changes), except ``drop`` with ``after_processing``,
which executes the request and then closes the connection without answering: a lost response, the case
idempotency keys exist for.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("status", "latency", "drop")
MAX_LATENCY_MS = 60_000

# Error bodies in the shapes Stripe answers with, by status (a fault may override type, code and message).
_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Injected fault: bad request."),
    402: ("card_error", "card_declined", "Your card was declined."),
    404: ("invalid_request_error", "resource_missing", "Injected fault: no such object."),
    409: ("invalid_request_error", "idempotency_key_in_use",
          "There is currently another in-progress request using this idempotency key. Retry this request later."),
    429: ("invalid_request_error", "rate_limit",
          "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests."),
}
_LOCK_TIMEOUT = ("This object cannot be accessed right now because another API request or Stripe process is currently accessing it. "
                 "If you see this error intermittently, retry the request. If you see this error frequently and are making multiple "
                 "concurrent requests to a single object, make your requests serially or at a lower rate.")
_SERVER_ERROR = ("api_error", None, "An unknown error occurred on Stripe's end (an injected fault). Retry the request, with the same "
                 "idempotency key, after a short delay.")


class FaultSpecError(ValueError):
    """A fault specification that cannot be used."""


@dataclass
class Fault:
    id: int
    kind: str
    path_prefix: str
    method: str | None
    count: int
    status: int | None = None
    should_retry: bool | None = None
    latency_ms: int = 0
    after_processing: bool = False
    type: str | None = None
    code: str | None = None
    message: str | None = None
    matched: int = 0

    def error_body(self) -> dict[str, Any]:
        assert self.status is not None
        fallback = _SERVER_ERROR if self.status >= 500 else ("invalid_request_error", None, f"Injected fault: HTTP {self.status}.")
        err_type, code, message = _DEFAULTS.get(self.status, fallback)
        code = self.code if self.code is not None else code
        if code == "lock_timeout" and self.message is None:
            message = _LOCK_TIMEOUT
        err: dict[str, Any] = {}
        if code:
            err["code"] = code
            err["doc_url"] = "https://stripe.com/docs/error-codes/" + code.replace("_", "-")
        err["message"] = self.message or message
        err["type"] = self.type or err_type
        return {"error": err}

    def headers(self) -> dict[str, str]:
        return {} if self.should_retry is None else {"Stripe-Should-Retry": "true" if self.should_retry else "false"}


def _optional(spec: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = spec.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is int):
        raise FaultSpecError(f"{name} must be {getattr(kind, '__name__', kind)}, not {value!r}")
    return value


def parse(spec: Any, fault_id: int) -> Fault:
    """Validate a fault specification (the JSON body of ``POST /_emulator/faults``)."""
    if not isinstance(spec, dict):
        raise FaultSpecError("the body must be a JSON object")
    unknown = set(spec) - {"kind", "path_prefix", "method", "count", "status", "should_retry", "latency_ms", "after_processing",
                           "type", "code", "message"}
    if unknown:
        raise FaultSpecError(f"unknown fields: {', '.join(sorted(unknown))}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultSpecError(f"kind must be one of {', '.join(KINDS)}")
    prefix = _optional(spec, "path_prefix", str) or "/v1"
    if not prefix.startswith("/") or prefix.startswith("/_emulator"):
        raise FaultSpecError("path_prefix must start with / and cannot target /_emulator")
    method = _optional(spec, "method", str)
    method = None if method in (None, "*") else method.upper()
    count = _optional(spec, "count", int)
    count = 1 if count is None else count
    if count < 1:
        raise FaultSpecError("count must be at least 1")
    status = _optional(spec, "status", int)
    if kind == "status" and (status is None or not 400 <= status <= 599):
        raise FaultSpecError("a status fault needs a status between 400 and 599")
    latency = _optional(spec, "latency_ms", int) or 0
    if kind == "latency" and not 0 < latency <= MAX_LATENCY_MS:
        raise FaultSpecError(f"a latency fault needs latency_ms between 1 and {MAX_LATENCY_MS}")
    should_retry = _optional(spec, "should_retry", bool)
    if "should_retry" not in spec and spec.get("code") == "lock_timeout":
        should_retry = True  # what Stripe sends with a lock timeout, unless the fault says otherwise
    return Fault(id=fault_id, kind=kind, path_prefix=prefix, method=method, count=count, status=status if kind == "status" else None,
                 should_retry=should_retry, latency_ms=latency,
                 after_processing=bool(_optional(spec, "after_processing", bool)), type=_optional(spec, "type", str),
                 code=_optional(spec, "code", str), message=_optional(spec, "message", str))


class Faults:
    """The active faults, in the order they were added; the first match is used and counted down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: Any) -> Fault:
        with self._lock:
            fault = parse(spec, next(self._ids))
            self._faults.append(fault)
            return fault

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if (fault.method is None or fault.method == method) and path.startswith(fault.path_prefix):
                    fault.count -= 1
                    fault.matched += 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
            return None

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def clear(self) -> int:
        with self._lock:
            cleared = len(self._faults)
            self._faults.clear()
            return cleared
