# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Instant queries against Prometheus' HTTP API (``POST /api/v1/query``) through Ansible's ``open_url``.

Private to the payments.deploy collection: the interface may change without notice.

A measurement needs one number: a scalar, or a vector of exactly one series. An empty vector is "no data" (value
None); NaN and infinities are returned as they are, the caller decides what they mean.
"""

from __future__ import annotations

import json
import time
import typing as t
from dataclasses import dataclass
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

from ansible.module_utils.urls import open_url

MAX_BODY_BYTES = 1024 * 1024
MAX_ERROR_TEXT = 300


class QueryError(Exception):
    """The query got no usable answer. ``rejected`` is True when Prometheus refused the query itself (HTTP 400 or
    422: bad PromQL, or a query that cannot be evaluated), False when Prometheus could not be asked or answered
    something else (unreachable, timeout, 5xx, not Prometheus' JSON, more than one series)."""

    def __init__(self, message: str, rejected: bool = False) -> None:
        super().__init__(message)
        self.rejected = rejected


@dataclass(frozen=True)
class Sample:
    """One instant query's answer: ``value`` None means no data (an empty vector)."""

    value: float | None
    seconds: float


class Prometheus:
    """Sends instant queries; every query sent is counted and its time summed (the module reports both)."""

    def __init__(self, url: str, timeout: float, bearer_token: str | None = None, validate_certs: bool = True) -> None:
        self.endpoint = url.rstrip("/") + "/api/v1/query"
        self.timeout = timeout
        self.headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        if bearer_token:
            self.headers["Authorization"] = f"Bearer {bearer_token}"
        self.validate_certs = validate_certs
        self.sent = 0
        self.seconds = 0.0

    def query(self, promql: str, at: float | None = None) -> Sample:
        """The value of ``promql`` evaluated at ``at`` (epoch seconds; Prometheus' now when None)."""
        form = {"query": promql, "timeout": f"{max(1, int(self.timeout))}s"}
        if at is not None:
            form["time"] = f"{at:.3f}"
        started = time.monotonic()
        self.sent += 1
        try:
            body = self._post(urlencode(form))
        finally:
            self.seconds += time.monotonic() - started
        return Sample(_single_value(body), round(time.monotonic() - started, 4))

    def _post(self, data: str) -> dict[str, t.Any]:
        try:
            response = open_url(self.endpoint, data=data, headers=self.headers, method="POST", timeout=self.timeout,
                                validate_certs=self.validate_certs, use_proxy=False, follow_redirects="none")
            raw = response.read(MAX_BODY_BYTES)
        except HTTPError as exc:
            raise _http_error(exc) from None
        except (URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise QueryError(f"Prometheus at {self.endpoint} could not be reached: {reason}") from None
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise QueryError(f"Prometheus at {self.endpoint} answered something that is not JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            raise QueryError(f"Prometheus answered status {body.get('status') if isinstance(body, dict) else None!r}")
        return body


def _http_error(exc: HTTPError) -> QueryError:
    try:
        body = json.loads(exc.read(MAX_BODY_BYTES).decode("utf-8"))
        detail = f"{body.get('errorType')}: {body.get('error')}"
    except (UnicodeDecodeError, ValueError, AttributeError, OSError):
        detail = str(exc.reason)
    detail = detail[:MAX_ERROR_TEXT]
    if exc.code in (400, 422):
        return QueryError(f"Prometheus rejected the query (HTTP {exc.code} {detail})", rejected=True)
    return QueryError(f"Prometheus answered HTTP {exc.code} ({detail})")


def _number(pair: t.Any) -> float:
    try:
        return float(pair[1])  # "NaN", "+Inf" and "-Inf" parse as such
    except (TypeError, ValueError, IndexError):
        raise QueryError(f"Prometheus answered a value that is not a number: {str(pair)[:80]}") from None


def _single_value(body: dict[str, t.Any]) -> float | None:
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _number(result)
    if kind == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise QueryError(f"the query returned {len(result)} series; a measurement needs one value "
                             "(aggregate it, for example with sum() or max())")
        return _number(result[0].get("value"))
    raise QueryError(f"the query returned a {kind}; a measurement needs a scalar or a one-element vector")
