"""Errors in Stripe's shape: ``{"error": {"type", "code", "message", "param", ...}}``."""

from __future__ import annotations

from typing import Any

DOC_BASE = "https://stripe.com/docs/error-codes/"
KEY_PREFIXES = ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "pk_live_", "pk_test_")


class StripeError(Exception):
    """An API error answered to the client.

    ``saved`` marks errors raised after the request changed state (card declines): Stripe keeps
    their idempotent result, while validation errors are not saved and may be retried with the key.
    """

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, extra: dict[str, Any] | None = None, saved: bool = False,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.extra = extra or {}
        self.saved = saved
        self.headers = headers or {}

    def body(self, request_log_url: str | None) -> dict[str, Any]:
        """The JSON body: absent fields are left out, as Stripe does."""
        err: dict[str, Any] = {}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = DOC_BASE + self.code.replace("_", "-")
        err.update(self.extra)
        err["message"] = self.message
        if self.param:
            err["param"] = self.param
        if request_log_url:
            err["request_log_url"] = request_log_url
        err["type"] = self.type
        return {"error": err}


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """A 400 invalid_request_error."""
    return StripeError(400, message, param=param, code=code)


def missing_param(name: str) -> StripeError:
    return StripeError(400, f"Missing required param: {name}.", param=name, code="parameter_missing")


def unknown_param(name: str) -> StripeError:
    return StripeError(400, f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def unimplemented_param(name: str, route: str) -> StripeError:
    """A parameter that Stripe accepts on this route but the emulator does not implement."""
    return StripeError(400, f"Received parameter {name}, which Stripe accepts on {route} but this emulator does not implement"
                       " (see docs/stripe-emulator.md).", param=name, code="parameter_unknown")


def no_such(kind: str, object_id: str, param: str = "id", status: int = 404, other_mode: str | None = None) -> StripeError:
    message = f"No such {kind}: '{object_id}'"
    if other_mode:
        used = "test" if other_mode == "live" else "live"
        message += f"; a similar object exists in {other_mode} mode, but a {used} mode key was used to make this request."
    return StripeError(status, message, param=param, code="resource_missing")


def mask_key(key: str) -> str:
    """Mask an API key like Stripe does in its 401 message: the prefix and the last four characters at most."""
    prefix = next((p for p in KEY_PREFIXES if key.startswith(p)), "")
    rest = key[len(prefix):]
    if len(rest) > 8:
        return prefix + "*" * (len(rest) - 4) + rest[-4:]
    return prefix + "*" * len(rest)


def unauthorized(key: str | None) -> StripeError:
    if not key:
        return StripeError(401, "You did not provide an API key. You need to provide your API key in the Authorization header,"
                           " using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication"
                           " for details, or we can help at https://support.stripe.com/.")
    return StripeError(401, f"Invalid API Key provided: {mask_key(key)}")
