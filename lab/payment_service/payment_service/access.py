"""Access to the API endpoints: a valid API key first, then that key's rate limit."""

from __future__ import annotations

from . import auth
from .service import Service
from .web import Request


def require_api(service: Service, request: Request) -> None:
    """Raise 401/403 without the API role, 429 when the key is over its limit."""
    auth.require(request, service.settings, auth.API)
    service.limiter.check(service.settings.api_key)
