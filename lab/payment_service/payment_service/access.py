"""Access to the endpoints: a valid token of the right role first, then that token's rate limit."""

from __future__ import annotations

from . import auth
from .build_faults import AUTH_DISABLED
from .service import Service
from .web import HTTPError, Request


def require_api(service: Service, request: Request) -> None:
    """Raise 401/403 without the API role, 429 when the token is over its limit (the smoke and load keys have their
    own)."""
    credential = _authenticate(service, request, auth.API)
    settings = service.settings
    per_minute = {auth.SMOKE_LIMITER: settings.smoke_rate_limit_per_minute,
                  auth.LOAD_LIMITER: settings.load_rate_limit_per_minute}.get(credential.limiter,
                                                                              settings.rate_limit_per_minute)
    service.limiter.check(credential.limiter, credential.token, per_minute)


def require_admin(service: Service, request: Request) -> None:
    """Raise 401/403 without the admin role (admin endpoints are not rate limited)."""
    _authenticate(service, request, auth.ADMIN)


def _authenticate(service: Service, request: Request, role: str) -> auth.Credential:
    """The request's credential; 401 without a valid token (counted), 403 with a token of another role."""
    credential = auth.identify(request, service.settings)
    if AUTH_DISABLED in service.faults:  # a deliberately broken build: every request gets every role
        if credential is None or credential.role != role:
            return auth.Credential(role, auth.API_LIMITER, service.settings.api_key)
        return credential
    if credential is None:
        service.metrics.count_auth_failure()
        raise HTTPError(401, "unauthorized", "a valid bearer token is required",
                        [("WWW-Authenticate", 'Bearer realm="payments"')])
    if credential.role != role:
        raise HTTPError(403, "forbidden", f"this endpoint requires the {role} role")
    return credential
