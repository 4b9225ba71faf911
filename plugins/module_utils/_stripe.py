# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Shared Stripe client of the payments.deploy modules: the official ``stripe`` SDK plus a record of every API call.

Private to the payments.deploy collection: the interface may change without notice.

Every request goes through ``RecordingHTTPClient``, so the modules can return what they did
(method, path, object id, request id, idempotency key, attempts, duration) without ever
touching the API key: only the ``Idempotency-Key`` request header is looked at.
"""

from __future__ import annotations

import json
import math
import re
import time
import traceback
import typing as t
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils._numbers import number_problem

try:
    from stripe import HTTPClient, RequestsClient, StripeClient, StripeError
except ImportError:
    HAS_STRIPE = False
    STRIPE_IMPORT_ERROR: str | None = traceback.format_exc()

    class HTTPClient:  # type: ignore[no-redef]
        """Placeholder so this file imports without the SDK; modules fail with missing_required_lib first."""

    class StripeError(Exception):  # type: ignore[no-redef]
        """Placeholder: never raised without the SDK."""

else:
    HAS_STRIPE = True
    STRIPE_IMPORT_ERROR = None

DEFAULT_API_BASE = "https://api.stripe.com"
KEY_PATTERN = re.compile(r"\b(?P<prefix>(?:sk|rk|pk)_(?:live|test)_)(?P<body>[0-9A-Za-z]+)")
WEBHOOK_SECRET_PATTERN = re.compile(r"\bwhsec_[0-9A-Za-z+/=]+")
KEY_KINDS = {"sk": "secret", "rk": "restricted", "pk": "publishable"}
ELLIPSIS = "\u2026"
DEFAULT_TIMEOUT = 30.0
# Seconds; a request to Stripe that takes longer than this is broken, and a huge value overflows the socket code.
MAX_TIMEOUT = 600.0


def stripe_argument_spec() -> dict[str, dict[str, t.Any]]:
    """Options shared by the Stripe modules (documented in the payments.deploy.stripe fragment)."""
    return {
        "api_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["STRIPE_SECRET_KEY"])},
        "api_base": {"type": "str", "default": DEFAULT_API_BASE},
        "stripe_version": {"type": "str"},
        "max_network_retries": {"type": "int", "default": 2},
        "timeout": {"type": "float", "default": DEFAULT_TIMEOUT},
    }


def check_common_options(params: t.Mapping[str, t.Any]) -> list[str]:
    """Problems with the shared options, as sentences (empty when they are usable)."""
    problems = []
    key = params.get("api_key")
    if not key:
        problems.append("api_key is required: pass it or set STRIPE_SECRET_KEY in the environment of the module")
    elif any(c.isspace() for c in key):
        problems.append(f"api_key {key_hint(key)} contains whitespace")
    base = urlsplit(params.get("api_base") or "")
    if base.scheme not in ("http", "https") or not base.netloc or base.query or base.fragment:
        problems.append(f"api_base {params.get('api_base')!r} must be an http(s) URL such as {DEFAULT_API_BASE}")
    if not 0 <= params.get("max_network_retries", 0) <= 10:
        problems.append("max_network_retries must be between 0 and 10")
    problem = number_problem("timeout", params.get("timeout", DEFAULT_TIMEOUT), maximum=MAX_TIMEOUT)
    if problem:
        problems.append(problem)
    return problems


def key_kind(key: str) -> tuple[str, str | None]:
    """``(kind, mode)`` from a key's prefix: kind secret|restricted|publishable|unknown, mode live|test|None."""
    match = re.match(r"^(sk|rk|pk)_(live|test)_", key or "")
    if not match:
        return "unknown", None
    return KEY_KINDS[match.group(1)], match.group(2)


def key_hint(key: str | None) -> str:
    """A key's prefix and last four characters (``sk_live_…abcd``): enough to tell keys apart, never the key."""
    if not key:
        return "(none)"
    match = re.match(r"^([a-z]{2,5}_(?:live_|test_)?)", key)
    prefix = match.group(1) if match else ""
    rest = key[len(prefix):]
    tail = rest[-4:] if len(rest) >= 12 else ""
    return f"{prefix}{ELLIPSIS}{tail}"


def redact(text: str | None, *secrets: str | None) -> str:
    """``text`` with the given secrets, anything shaped like a Stripe key and any webhook secret replaced by hints."""
    out = str(text or "")
    for secret in secrets:
        if secret:
            out = out.replace(secret, key_hint(secret))
    out = KEY_PATTERN.sub(lambda m: key_hint(m.group(0)), out)
    return WEBHOOK_SECRET_PATTERN.sub("whsec_" + ELLIPSIS, out)


def nearest_rank(values: t.Sequence[float], percentile: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least ``percentile`` % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile / 100.0 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(values: t.Sequence[float]) -> dict[str, t.Any]:
    """``{count, p50, p95, max}`` of ``values`` in seconds (nearest-rank); None figures when there are none."""
    return {
        "count": len(values),
        "p50": nearest_rank(values, 50),
        "p95": nearest_rank(values, 95),
        "max": max(values) if values else None,
    }


def to_plain(obj: t.Any) -> t.Any:
    """A StripeObject (or anything nested in one) as plain dicts and lists."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict(recursive=True)
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    return obj


def _error_body(exc: BaseException) -> dict[str, t.Any]:
    body = getattr(exc, "json_body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return {}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name.replace("API", "Api")).lower()


def stripe_error_info(exc: BaseException, *secrets: str | None) -> dict[str, t.Any]:
    """The structured part of a Stripe error: type, code, decline_code, http_status, request_id, param, message."""
    body = _error_body(exc)
    return {
        "type": body.get("type") or _snake(type(exc).__name__),
        "code": getattr(exc, "code", None) or body.get("code"),
        "decline_code": body.get("decline_code"),
        "http_status": getattr(exc, "http_status", None),
        "request_id": getattr(exc, "request_id", None),
        "param": body.get("param"),
        "message": " ".join(redact(getattr(exc, "user_message", None) or str(exc), *secrets).split()),
    }


def describe_stripe_error(info: t.Mapping[str, t.Any]) -> str:
    """One line for people: ``HTTP 402 card_error (code card_declined, decline_code ..., request req_...): message``."""
    labels = (("code", "code"), ("decline_code", "decline_code"), ("param", "param"), ("request", "request_id"))
    details = [f"{name} {info[key]}" for name, key in labels if info.get(key)]
    status = f"HTTP {info['http_status']} " if info.get("http_status") else ""
    text = f"{status}{info.get('type')}"
    if details:
        text += f" ({', '.join(details)})"
    return f"{text}: {info.get('message')}"


def _header(headers: t.Any, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        value = {k.lower(): v for k, v in dict(headers).items()}.get(name.lower())
    return value


def _parse_json(body: t.Any) -> t.Any:
    try:
        return json.loads(body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body)
    except (TypeError, ValueError, AttributeError):
        return None


class RecordingHTTPClient(HTTPClient):
    """Wraps the SDK's own HTTP client and records each API call (one record per call, retries counted in it)."""

    name = "payments.deploy.recording"

    def __init__(self, inner: t.Any, calls: list[dict[str, t.Any]]) -> None:
        super().__init__()
        self._inner = inner
        self.calls = calls
        self._attempts: list[dict[str, t.Any]] = []

    def request_with_retries(self, method: str, url: str, headers: t.Mapping[str, str], post_data: t.Any = None,
                             max_network_retries: int | None = None, *, _usage: list[str] | None = None) -> t.Any:
        parts = urlsplit(url)
        record: dict[str, t.Any] = {
            "method": method.upper(),
            "path": parts.path + (f"?{parts.query}" if parts.query else ""),
            "status": None, "object": None, "object_id": None, "request_id": None,
            "idempotency_key": _header(headers, "Idempotency-Key"), "replayed": False,
            "attempts": 0, "attempt_statuses": [], "duration": None,
        }
        self._attempts = []
        started = time.monotonic()
        try:
            response = super().request_with_retries(method, url, headers, post_data, max_network_retries, _usage=_usage)
        except Exception as exc:
            record["error"] = type(exc).__name__
            raise
        finally:
            record["duration"] = round(time.monotonic() - started, 4)
            record["attempts"] = len(self._attempts)
            record["attempt_statuses"] = [a["status"] for a in self._attempts]
            self.calls.append(record)
        body, status, rheaders = response
        record.update(status=status, request_id=_header(rheaders, "Request-Id"),
                      replayed=str(_header(rheaders, "Idempotent-Replayed") or "").lower() == "true")
        data = _parse_json(body)
        if isinstance(data, dict):
            if isinstance(data.get("error"), dict):
                record["error_type"] = data["error"].get("type")
                record["error_code"] = data["error"].get("code")
            elif data.get("object") == "list":
                record["object"] = "list"
                record["count"] = len(data.get("data") or [])
            else:
                record["object"] = data.get("object")
                record["object_id"] = data.get("id")
        return response

    def request(self, method: str, url: str, headers: t.Mapping[str, str] | None, post_data: t.Any = None) -> t.Any:
        started = time.monotonic()
        attempt: dict[str, t.Any] = {"status": None}
        self._attempts.append(attempt)
        try:
            response = self._inner.request(method, url, headers, post_data)
        except Exception as exc:
            attempt["status"] = "connection_error"
            attempt["error"] = type(exc).__name__
            raise
        finally:
            attempt["duration"] = round(time.monotonic() - started, 4)
        attempt["status"] = response[1]
        return response

    def close(self) -> None:
        self._inner.close()


class StripeApi:
    """A ``stripe.StripeClient`` whose every request is recorded in ``calls``."""

    def __init__(self, api_key: str, api_base: str = DEFAULT_API_BASE, max_network_retries: int = 2,
                 timeout: float = 30.0, stripe_version: str | None = None, inner_http_client: t.Any = None) -> None:
        if not HAS_STRIPE:
            raise RuntimeError("the stripe Python SDK is not installed")
        self.api_key = api_key
        self.calls: list[dict[str, t.Any]] = []
        inner = inner_http_client if inner_http_client is not None else RequestsClient(timeout=timeout)
        self.http_client = RecordingHTTPClient(inner, self.calls)
        self.client = StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")},
            max_network_retries=max_network_retries,
            stripe_version=stripe_version,
            http_client=self.http_client,
        )
        self.v1 = self.client.v1

    @property
    def last_call(self) -> dict[str, t.Any]:
        return self.calls[-1] if self.calls else {}

    def list_all(self, service: t.Any, params: dict[str, t.Any] | None = None, page_size: int = 100,
                 max_pages: int = 100, stop: t.Callable[[t.Any], bool] | None = None) -> list[t.Any]:
        """Every object of a list endpoint, page by page (``starting_after``); ``stop(obj)`` ends the walk early."""
        items: list[t.Any] = []
        query = dict(params or {}, limit=page_size)
        for dummy in range(max_pages):
            page = service.list(params=query)
            for obj in page.data:
                items.append(obj)
                if stop is not None and stop(obj):
                    return items
            if not page.has_more or not page.data:
                return items
            query["starting_after"] = page.data[-1].id
        raise RuntimeError(f"more than {max_pages} pages of {page_size}: refusing to read further")


class StripeModule:
    """An AnsibleModule with a StripeApi: checks the shared options, fails and exits with the API calls attached."""

    def __init__(self, module: AnsibleModule, extra_problems: t.Sequence[str] = ()) -> None:
        self.module = module
        self.started = time.monotonic()
        self.api: StripeApi | None = None
        if not HAS_STRIPE:
            module.fail_json(msg=missing_required_lib("stripe"), exception=STRIPE_IMPORT_ERROR, api_calls=[])
        params = module.params
        problems = check_common_options(params) + list(extra_problems)
        if problems:
            module.fail_json(msg="; ".join(problems), api_calls=[])
        self.api_key: str = params["api_key"]
        self.api = StripeApi(params["api_key"], params["api_base"], params["max_network_retries"], params["timeout"],
                             params["stripe_version"])

    @property
    def calls(self) -> list[dict[str, t.Any]]:
        return self.api.calls if self.api is not None else []

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def error_info(self, exc: StripeError) -> dict[str, t.Any]:
        return stripe_error_info(exc, self.api_key)

    def fail(self, msg: str, exc: BaseException | None = None, **extra: t.Any) -> t.NoReturn:
        """fail_json with ``stripe_error`` (when ``exc`` is a Stripe error), ``api_calls`` and ``elapsed``; the key redacted."""
        if exc is not None:
            info = self.error_info(exc)
            msg = f"{msg}: {describe_stripe_error(info)}"
            extra["stripe_error"] = info
        self.module.fail_json(msg=redact(msg, self.api_key), api_calls=self.calls, elapsed=self.elapsed(), **extra)

    def exit(self, **result: t.Any) -> t.NoReturn:
        self.module.exit_json(api_calls=self.calls, elapsed=self.elapsed(), **result)


# Webhook endpoints: Stripe returns neither the signing secret (after creation) nor ``connect``, so the modules
# keep their identity marker and the ``connect`` setting they created an endpoint with in its metadata.
MARKER_KEY = "payments_deploy_id"
CONNECT_KEY = "payments_deploy_connect"
RESERVED_METADATA_KEYS = (MARKER_KEY, CONNECT_KEY)


def endpoint_connect(metadata: t.Mapping[str, t.Any]) -> bool | None:
    """The ``connect`` setting recorded in an endpoint's metadata; None when it was not recorded."""
    value = (metadata or {}).get(CONNECT_KEY)
    return {"true": True, "false": False}.get(str(value).lower()) if value is not None else None


def sanitize_endpoint(endpoint: t.Any) -> dict[str, t.Any]:
    """The fields of a webhook endpoint that are safe to show: never ``secret``."""
    data = to_plain(endpoint)
    metadata = dict(data.get("metadata") or {})
    return {
        "id": data.get("id"),
        "url": data.get("url"),
        "enabled_events": list(data.get("enabled_events") or []),
        "description": data.get("description"),
        "metadata": metadata,
        "status": data.get("status"),
        "disabled": data.get("status") == "disabled",
        "api_version": data.get("api_version"),
        "application": data.get("application"),
        "connect": endpoint_connect(metadata),
        "marker": metadata.get(MARKER_KEY),
        "created": data.get("created"),
        "livemode": data.get("livemode"),
    }


def match_endpoints(endpoints: t.Sequence[t.Mapping[str, t.Any]], marker: str | None = None,
                    url: str | None = None) -> tuple[list[dict[str, t.Any]], str]:
    """The endpoints that are "the one" for ``marker``/``url``, and how they were found (marker, url or none).

    The marker wins; an endpoint found by URL must not carry another marker.
    """
    if marker:
        found = [dict(e) for e in endpoints if e.get("marker") == marker]
        if found:
            return found, "marker"
    if url:
        found = [dict(e) for e in endpoints if e.get("url") == url and (not marker or not e.get("marker"))]
        if found:
            return found, "url"
    return [], "none"


def list_webhook_endpoints(api: StripeApi) -> list[dict[str, t.Any]]:
    """Every webhook endpoint of the account, sanitized, in Stripe's order (newest first)."""
    return [sanitize_endpoint(e) for e in api.list_all(api.v1.webhook_endpoints)]
