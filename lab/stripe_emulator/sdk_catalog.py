"""What the installed ``stripe`` SDK knows: event types, API versions and the parameters of each endpoint.

The SDK is generated from Stripe's OpenAPI spec, so its typed request parameters are the closest
local copy of what Stripe accepts. The emulator validates ``enabled_events`` against them and
tells a parameter Stripe does not know (``parameter_unknown``) from one it only does not implement.
"""

from __future__ import annotations

import functools
import importlib
import typing

import stripe
from stripe._request_options import RequestOptions

SDK_VERSION: str = stripe.VERSION
SDK_API_VERSION: str = stripe.api_version


def _literals(annotation: typing.Any) -> list[str]:
    """Every string Literal inside a (nested) type annotation."""
    found: list[str] = []
    for arg in typing.get_args(annotation):
        if isinstance(arg, str):
            found.append(arg)
        else:
            found.extend(_literals(arg))
    return found


def _params_class(module: str, name: str) -> type | None:
    try:
        return getattr(importlib.import_module(f"stripe.params.{module}"), name)
    except (ImportError, AttributeError):
        return None


@functools.cache
def webhook_event_types() -> frozenset[str]:
    """The ``enabled_events`` values Stripe accepts (``*`` included)."""
    cls = _params_class("_webhook_endpoint_create_params", "WebhookEndpointCreateParams")
    if cls is None:
        raise RuntimeError("the installed stripe SDK has no WebhookEndpointCreateParams: cannot derive the event types")
    return frozenset(_literals(cls.__annotations__["enabled_events"]))


@functools.cache
def api_versions() -> frozenset[str]:
    """The API versions a webhook endpoint may be pinned to, plus the one the SDK is built for."""
    cls = _params_class("_webhook_endpoint_create_params", "WebhookEndpointCreateParams")
    versions = set(_literals(cls.__annotations__["api_version"])) if cls else set()
    versions.add(SDK_API_VERSION)
    return frozenset(versions)


@functools.cache
def known_params(module: str, name: str) -> frozenset[str]:
    """The parameter names of one SDK params TypedDict, without the per-request options."""
    cls = _params_class(module, name)
    if cls is None:
        return frozenset()
    options = set(RequestOptions.__annotations__)
    return frozenset(k for k in _all_annotations(cls) if k not in options)


def _all_annotations(cls: type) -> list[str]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        names.extend(getattr(klass, "__annotations__", {}))
    return names
