"""Stripe's refusals turned into the service's JSON errors (Stripe being unreachable is handled in app.py)."""

from __future__ import annotations

import stripe

from .web import HTTPError, Response, json_response

KEY_REUSED = "idempotency_key_reused"
KEY_REUSED_MESSAGE = "this Idempotency-Key was already used with other parameters"


def key_reused() -> HTTPError:
    """The error for a key sent again with a different body: a client bug, never a second charge."""
    return HTTPError(409, KEY_REUSED, KEY_REUSED_MESSAGE)


def rejected(exc: stripe.IdempotencyError | stripe.InvalidRequestError) -> Response:
    """409 for a reused idempotency key, else 400 with Stripe's code, parameter and message (they hold no secret)."""
    if isinstance(exc, stripe.IdempotencyError):
        return json_response(409, {"error": {"code": KEY_REUSED, "message": KEY_REUSED_MESSAGE,
                                             "stripe_request_id": exc.request_id}})
    return json_response(400, {"error": {"code": "stripe_invalid_request",
                                         "message": exc.user_message or "Stripe rejected the request",
                                         "stripe_code": exc.code, "param": getattr(exc, "param", None),
                                         "stripe_request_id": exc.request_id}})
