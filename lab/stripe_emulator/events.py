"""Events: one for every state change, with a snapshot of the object, listed and retrieved like Stripe's."""

from __future__ import annotations

from typing import Any

from . import forms, listing, sdk_catalog, webhooks
from .context import Ctx
from .errors import invalid

MAX_TYPES = 20


def emit(ctx: Ctx, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record an event about obj (as it is now) and queue its webhook deliveries."""
    if type_ not in sdk_catalog.webhook_event_types():
        raise AssertionError(f"the emulator emits {type_}, which is no Stripe event type")
    store = ctx.store
    data: dict[str, Any] = {"object": store.render(obj)}
    if previous:
        data["previous_attributes"] = previous
    event = {
        "id": store.new_id("evt"),
        "object": "event",
        "api_version": store.settings.api_version,
        "created": ctx.now,
        "data": data,
        "livemode": ctx.livemode,
        "pending_webhooks": 0,
        "request": {"id": ctx.request_id, "idempotency_key": ctx.idempotency_key},
        "type": type_,
    }
    store.add(event, ctx.mode)
    webhooks.enqueue(store, event)
    return event


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``previous_attributes``: the old values of the top-level fields that changed."""
    return {k: v for k, v in before.items() if not k.startswith("_") and after.get(k) != v}


def _type_matches(event_type: str, pattern: str) -> bool:
    # Stripe accepts one trailing wildcard segment in the type filter: "payment_intent.*".
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def list_events(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    type_ = forms.get_str(params, "type")
    types = forms.get_str_list(params, "types")
    if type_ is not None and types is not None:
        raise invalid("You may only specify one of these parameters: type, types.", param="types")
    if types is not None and len(types) > MAX_TYPES:
        raise invalid(f"You may only specify up to {MAX_TYPES} types.", param="types")
    patterns = [type_] if type_ is not None else types
    created = forms.get_created_filter(params)

    def match(event: dict[str, Any]) -> bool:
        if patterns and not any(_type_matches(event["type"], p) for p in patterns):
            return False
        return forms.created_matches(event["created"], created)

    return listing.page(ctx, "event", "/v1/events", match)


def retrieve(ctx: Ctx, event_id: str) -> dict[str, Any]:
    return ctx.store.render(ctx.store.get("event", event_id, ctx.mode))
