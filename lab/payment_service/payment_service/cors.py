"""CORS for the browser-facing API (/v1/...): only the origins listed in PAYMENTS_CORS_ORIGINS, never '*'."""

from __future__ import annotations

from typing import Any

from .config import Settings
from .routes import Match
from .web import HTTPError, Request, Response

API_PREFIX = "/v1/"
ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key"
EXPOSED_HEADERS = "Retry-After, X-Served-By, X-Service-Version"
MAX_AGE_S = 600


def is_preflight(request: Request) -> bool:
    """An OPTIONS request a browser sends before a cross-origin call."""
    return request.method == "OPTIONS" and bool(request.header("Origin")) \
        and bool(request.header("Access-Control-Request-Method"))


def _allowed(settings: Settings, request: Request, template: str) -> str | None:
    """The request's origin when it may call this route, else None."""
    origin = request.header("Origin")
    return origin if template.startswith(API_PREFIX) and origin in settings.cors_origins else None


def headers(settings: Settings, request: Request, template: str) -> list[tuple[str, str]]:
    """The CORS headers of an actual (not preflight) API response; none for other origins."""
    if not settings.cors_origins or not template.startswith(API_PREFIX):
        return []
    origin = _allowed(settings, request, template)
    if origin is None:
        return [("Vary", "Origin")]
    return [("Access-Control-Allow-Origin", origin), ("Access-Control-Expose-Headers", EXPOSED_HEADERS),
            ("Vary", "Origin")]


def preflight(settings: Settings, request: Request, match: Match[Any]) -> Response:
    """204 with the allowed methods and headers, or 403 for an origin or method that is not allowed."""
    origin = _allowed(settings, request, match.template)
    method = request.header("Access-Control-Request-Method").upper()
    if origin is None or method not in match.allowed:
        raise HTTPError(403, "cors_forbidden", "this origin or method may not call this endpoint")
    return Response(204, b"", headers=[("Access-Control-Allow-Origin", origin),
                                       ("Access-Control-Allow-Methods", ", ".join(match.allowed)),
                                       ("Access-Control-Allow-Headers", ALLOWED_HEADERS),
                                       ("Access-Control-Max-Age", str(MAX_AGE_S)), ("Vary", "Origin")])
