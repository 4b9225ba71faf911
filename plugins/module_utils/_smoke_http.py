# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""HTTP for the smoke tests: the standard library's ``http.client``, one connection per request.

Private to the payments.deploy collection: the interface may change without notice.

Redirects are never followed (a payment POST must reach the URL it was meant for), proxies from the environment
are ignored (a colour is tested directly), and TLS certificates are verified. Only requests that change nothing
may be retried, and only after a connection error: a request that got an HTTP answer is never sent again here.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_BODY_BYTES = 4 * 1024 * 1024
USER_AGENT = "payments.deploy-smoke-test"
RETRY_DELAYS = (0.5, 1.0)


class HttpFailure(Exception):
    """No HTTP answer at all: refused, reset, timed out, a TLS failure."""

    def __init__(self, method: str, url: str, reason: str, seconds: float, attempts: int = 1) -> None:
        self.method = method
        self.url = url
        self.reason = reason
        self.seconds = seconds
        self.attempts = attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{method} {url} got no answer{tries}: {reason}")


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP answer with its body read (up to MAX_BODY_BYTES) and how long it took."""

    method: str
    url: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    seconds: float

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case (``application/json``)."""
        return (self.header("Content-Type") or "").split(";", 1)[0].strip().lower()

    def json(self) -> t.Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None

    def json_object(self) -> dict[str, t.Any]:
        """The body as a JSON object, or an empty dict."""
        data = self.json()
        return data if isinstance(data, dict) else {}

    def error(self) -> dict[str, t.Any] | None:
        """The ``error`` object of a ``{"error": {"type", "code", "message"}}`` body, or None."""
        error = self.json_object().get("error")
        return error if isinstance(error, dict) else None

    def describe(self) -> str:
        """``401 unauthorized``: the status and, for an error body, its code (never the body itself)."""
        error = self.error() or {}
        code = error.get("code") or error.get("type")
        return f"{self.status} {code}" if isinstance(code, str) and code else str(self.status)


class HttpClient:
    """Sends one request per connection with a timeout; ``retries`` applies to connection errors only."""

    def __init__(self, timeout: float, retry_delays: t.Sequence[float] = RETRY_DELAYS,
                 sleep: t.Callable[[float], None] = time.sleep) -> None:
        self.timeout = timeout
        self.retry_delays = tuple(retry_delays)
        self.sleep = sleep
        self.context = ssl.create_default_context()

    def request(self, method: str, url: str, headers: t.Mapping[str, str] | None = None, body: bytes | None = None,
                json_body: t.Any = None, retry: bool = False) -> HttpResponse:
        """Send one request; with ``retry`` (only for requests that change nothing, or carry an idempotency key)
        a connection error is retried after each of ``retry_delays``. Raises HttpFailure when nothing answered."""
        send_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        send_headers.update(headers or {})
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            send_headers["Content-Type"] = "application/json"
        delays = self.retry_delays if retry else ()
        started = time.monotonic()
        for attempt in range(len(delays) + 1):
            try:
                return self._once(method, url, send_headers, body)
            except (OSError, http.client.HTTPException) as exc:
                reason = _reason(exc)
                if attempt == len(delays):
                    seconds = round(time.monotonic() - started, 4)
                    raise HttpFailure(method, _shown(url), reason, seconds, attempt + 1) from None
                self.sleep(delays[attempt])
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> HttpResponse:
        parts = urlsplit(url)
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=self.timeout, context=self.context)
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self.timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if body is None and method in ("POST", "PUT", "PATCH"):
            headers = dict(headers, **{"Content-Length": "0"})
        started = time.monotonic()
        try:
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read(MAX_BODY_BYTES)
            return HttpResponse(method, _shown(url), response.status, tuple(response.getheaders()), data,
                                round(time.monotonic() - started, 4))
        finally:
            conn.close()


def _shown(url: str) -> str:
    """A URL as it may appear in results: never with credentials (the options refuse them; this is belt and braces)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return parts._replace(netloc=netloc).geturl()
    return url


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {getattr(exc, 'reason', None) or type(exc).__name__}"
    text = getattr(exc, "strerror", None) or str(exc) or ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def join_url(base: str, path: str) -> str:
    """``base`` (which may carry a path prefix) joined with an absolute ``path``."""
    return base.rstrip("/") + path
