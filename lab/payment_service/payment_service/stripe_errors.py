"""Stripe's refusals turned into the service's JSON errors (Stripe being unreachable is handled in app.py)."""

from __future__ import annotations

import stripe

from .web import IDEMPOTENCY_ERROR, INVALID_REQUEST_ERROR, HTTPError, Response, error_body, json_response

KEY_REUSED = "idempotency_key_reused"
KEY_REUSED_MESSAGE = "this Idempotency-Key was already used with other parameters"


def key_reused() -> HTTPError:
    """The error for a key sent again with a different body: a client bug, never a second charge."""
    return HTTPError(409, KEY_REUSED, KEY_REUSED_MESSAGE, type_=IDEMPOTENCY_ERROR)


def rejected(exc: stripe.IdempotencyError | stripe.InvalidRequestError) -> Response:
    """409 for a reused idempotency key, else 400 with Stripe's code, parameter and message (they hold no secret)."""
    if isinstance(exc, stripe.IdempotencyError):
        return json_response(409, error_body(IDEMPOTENCY_ERROR, KEY_REUSED, KEY_REUSED_MESSAGE,
                                             stripe_request_id=exc.request_id))
    return json_response(400, error_body(INVALID_REQUEST_ERROR, "stripe_invalid_request",
                                         exc.user_message or "Stripe rejected the request", stripe_code=exc.code,
                                         param=getattr(exc, "param", None), stripe_request_id=exc.request_id))
