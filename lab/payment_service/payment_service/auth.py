"""Bearer-token authentication with two roles: the API key and the admin key."""

from __future__ import annotations

import hmac

from .config import Settings
from .web import HTTPError, Request

API = "api"
ADMIN = "admin"


def role_of(request: Request, settings: Settings) -> str | None:
    """The role the request's bearer token grants, compared in constant time; None if it grants none."""
    scheme, _sep, token = request.header("Authorization").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    supplied = token.strip().encode("utf-8")
    roles = {API: settings.api_key, ADMIN: settings.admin_key}
    granted = [role for role, key in roles.items() if key and hmac.compare_digest(supplied, key.encode("utf-8"))]
    return granted[0] if granted else None


def require(request: Request, settings: Settings, role: str) -> None:
    """Raise 401 without a valid token, 403 when the token's role is not the one required."""
    granted = role_of(request, settings)
    if granted is None:
        raise HTTPError(401, "unauthorized", "a valid bearer token is required",
                        [("WWW-Authenticate", 'Bearer realm="payments"')])
    if granted != role:
        raise HTTPError(403, "forbidden", f"this endpoint requires the {role} role")
