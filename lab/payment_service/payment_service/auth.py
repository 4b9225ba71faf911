"""Bearer-token authentication: the API, smoke and load keys grant the API role, the admin key the admin role."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from .config import Settings
from .web import Request

API = "api"
ADMIN = "admin"
# The rate limiter a token counts against; the smoke key has its own, small limit, the load key its own, large one.
API_LIMITER = "api"
SMOKE_LIMITER = "smoke"
LOAD_LIMITER = "load"


@dataclass(frozen=True)
class Credential:
    """What a valid bearer token grants."""

    role: str
    limiter: str
    token: str


def identify(request: Request, settings: Settings) -> Credential | None:
    """The credential of the request's bearer token, compared in constant time; None if the token grants nothing."""
    scheme, _sep, token = request.header("Authorization").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    supplied = token.strip().encode("utf-8")
    known = ((settings.api_key, API, API_LIMITER), (settings.smoke_key, API, SMOKE_LIMITER),
             (settings.load_key, API, LOAD_LIMITER),
             (settings.admin_key, ADMIN, ADMIN))
    # Every key is compared, so the time taken does not tell which one matched.
    matches = [Credential(role, limiter, key) for key, role, limiter in known
               if key and hmac.compare_digest(supplied, key.encode("utf-8"))]
    return matches[0] if matches else None
