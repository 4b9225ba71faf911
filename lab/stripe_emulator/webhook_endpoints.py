"""``/v1/webhook_endpoints``: create, retrieve, update, list, delete. Changes to endpoints are not events (as in Stripe)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from . import forms, listing, sdk_catalog
from .context import Ctx
from .errors import invalid, missing_param
from .store import random_token

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SECRET_LENGTH = 32


def _url(params: dict[str, Any]) -> str | None:
    url = forms.get_str(params, "url", max_len=2048)
    if url is None:
        return None
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("http", "https"):
        raise invalid(f"Invalid URL: {url}", param="url")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise invalid(f"Invalid URL: {url}: webhook endpoints must use HTTPS (the emulator also accepts http:// to "
                      "127.0.0.1, localhost or [::1] for the lab).", param="url")
    return url


def _events(params: dict[str, Any]) -> list[str] | None:
    events = forms.get_str_list(params, "enabled_events")
    if events is None:
        return None
    if not events:
        raise missing_param("enabled_events")
    known = sdk_catalog.webhook_event_types()
    unique: list[str] = []
    for i, name in enumerate(events):
        if name not in known:
            raise invalid(f"Invalid enabled_events[{i}]: '{name}' is not a Stripe event type (nor '*').", param=f"enabled_events[{i}]")
        if name not in unique:
            unique.append(name)
    return unique


def create(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    url = _url(params)
    if url is None:
        raise missing_param("url")
    events = _events(params)
    if events is None:
        raise missing_param("enabled_events")
    api_version = forms.get_str(params, "api_version")
    if api_version is not None and api_version not in sdk_catalog.api_versions():
        raise invalid(f"Invalid Stripe API version: {api_version}", param="api_version")
    connect = forms.get_bool(params, "connect") or False
    description = forms.get_str(params, "description") or None
    metadata = forms.apply_metadata({}, params)
    store = ctx.store
    limit = store.settings.webhook_endpoint_limit
    if len(store.find("webhook_endpoint", ctx.mode)) >= limit:
        raise invalid(f"You have reached the maximum of {limit} webhook endpoints in {ctx.mode} mode for this account. "
                      "Delete an endpoint before creating another one.", param="url")
    endpoint = {
        "id": store.new_id("we"),
        "object": "webhook_endpoint",
        "api_version": api_version,
        "application": None,
        "created": ctx.now,
        "description": description,
        "enabled_events": events,
        "livemode": ctx.livemode,
        "metadata": metadata,
        "status": "enabled",
        "url": url,
        "_secret": f"whsec_{random_token(SECRET_LENGTH)}",
        "_connect": connect,
    }
    store.add(endpoint, ctx.mode)
    # The secret is in this one response only, as in Stripe.
    return {**store.render(endpoint), "secret": endpoint["_secret"]}


def retrieve(ctx: Ctx, endpoint_id: str) -> dict[str, Any]:
    return ctx.store.render(ctx.store.get("webhook_endpoint", endpoint_id, ctx.mode))


def update(ctx: Ctx, endpoint_id: str) -> dict[str, Any]:
    params = ctx.params
    endpoint = ctx.store.get("webhook_endpoint", endpoint_id, ctx.mode)
    url = _url(params)
    events = _events(params)
    description = forms.get_str(params, "description")
    disabled = forms.get_bool(params, "disabled")
    metadata = forms.apply_metadata(endpoint["metadata"], params)
    if url is not None:
        endpoint["url"] = url
    if events is not None:
        endpoint["enabled_events"] = events
    if description is not None:
        endpoint["description"] = description or None
    if disabled is not None:
        endpoint["status"] = "disabled" if disabled else "enabled"
    endpoint["metadata"] = metadata
    return ctx.store.render(endpoint)


def list_endpoints(ctx: Ctx) -> dict[str, Any]:
    return listing.page(ctx, "webhook_endpoint", "/v1/webhook_endpoints")


def delete(ctx: Ctx, endpoint_id: str) -> dict[str, Any]:
    ctx.store.get("webhook_endpoint", endpoint_id, ctx.mode)
    ctx.store.remove(endpoint_id)
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}
