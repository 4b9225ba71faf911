"""Minimal WSGI request and JSON response types."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Iterable, Mapping

MAX_BODY_BYTES = 64 * 1024
JSON_TYPE = "application/json"

SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'"),
    ("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),
    ("Referrer-Policy", "no-referrer"),
)


# Stripe's error types, so that a client written for Stripe's errors reads the service's the same way.
API_ERROR = "api_error"
AUTHENTICATION_ERROR = "authentication_error"
CARD_ERROR = "card_error"
IDEMPOTENCY_ERROR = "idempotency_error"
INVALID_REQUEST_ERROR = "invalid_request_error"
RATE_LIMIT_ERROR = "rate_limit_error"
_TYPE_OF_STATUS = {401: AUTHENTICATION_ERROR, 402: CARD_ERROR, 429: RATE_LIMIT_ERROR}


def error_type(status: int) -> str:
    """The Stripe error type of a status: the service's fault (5xx) is an api_error, a client's an invalid request."""
    if status >= 500:
        return API_ERROR
    return _TYPE_OF_STATUS.get(status, INVALID_REQUEST_ERROR)


class HTTPError(Exception):
    """An error that becomes a JSON error response."""

    def __init__(self, status: int, code: str, message: str, headers: Iterable[tuple[str, str]] = (),
                 type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers)
        self.type = type_ or error_type(status)


@dataclass
class Response:
    """A response with a body that is already encoded."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)

    def status_line(self) -> str:
        """The WSGI status string, e.g. '200 OK'."""
        return f"{self.status} {HTTPStatus(self.status).phrase}"


def json_response(status: int, payload: Mapping[str, Any], headers: Iterable[tuple[str, str]] = ()) -> Response:
    """A JSON response with a compact, stable encoding."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return Response(status=status, body=body, headers=list(headers))


def error_body(type_: str, code: str, message: str, **details: Any) -> dict[str, Any]:
    """Stripe's error shape: {"error": {"type", "code", "message", ...details}}."""
    return {"error": {"type": type_, "code": code, "message": message, **details}}


def error_response(error: HTTPError) -> Response:
    """The JSON body every error uses: Stripe's error type, a stable code and a human message."""
    return json_response(error.status, error_body(error.type, error.code, error.message), error.headers)


class Request:
    """The parts of a WSGI environ the handlers use."""

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET").upper()
        self.path: str = environ.get("PATH_INFO", "/") or "/"

    def header(self, name: str) -> str:
        """A request header by its HTTP name, or an empty string."""
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = f"HTTP_{key}"
        return str(self.environ.get(key, ""))

    def json(self) -> Any:
        """The request body decoded as JSON, or an HTTPError."""
        if self.header("Content-Type").split(";", maxsplit=1)[0].strip().lower() != JSON_TYPE:
            raise HTTPError(415, "unsupported_media_type", "Content-Type must be application/json")
        raw = self.body(MAX_BODY_BYTES)
        try:
            return json.loads(raw)
        except ValueError:
            raise HTTPError(400, "invalid_json", "request body is not valid JSON") from None

    def body(self, limit: int) -> bytes:
        """The raw request body, or 413 when it is longer than limit bytes."""
        raw: bytes = self.environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise HTTPError(413, "payload_too_large", f"request body is limited to {limit} bytes")
        return raw
