"""List objects with Stripe's cursor pagination: newest first, ``limit``, ``starting_after``, ``ending_before``."""

from __future__ import annotations

from typing import Any, Callable

from . import forms
from .context import Ctx
from .errors import invalid, no_such

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


def list_object(url: str, data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def page(ctx: Ctx, kind: str, url: str, match: Callable[[dict[str, Any]], bool] | None = None,
         render: Callable[[dict[str, Any]], dict[str, Any]] | None = None, oldest_first: bool = False) -> dict[str, Any]:
    """One page of the objects of a kind (in the key's mode) that match, as a Stripe list object.

    Lists are newest first, except where Stripe keeps a document's order (an invoice's lines: ``oldest_first``).
    """
    params = ctx.params
    limit = forms.get_int(params, "limit", minimum=1, maximum=MAX_LIMIT)
    limit = DEFAULT_LIMIT if limit is None else limit
    after = forms.get_str(params, "starting_after")
    before = forms.get_str(params, "ending_before")
    if after and before:
        raise invalid("You may only specify one of these parameters: ending_before, starting_after.", param="ending_before")
    items = ctx.store.find(kind, ctx.mode, match)
    if oldest_first:
        items.reverse()
    cursor_id = after or before
    if cursor_id:
        cursor = ctx.store.lookup(cursor_id)
        if cursor is None or cursor.get("object") != kind or cursor["_mode"] != ctx.mode:
            raise no_such(kind, cursor_id, param="starting_after" if after else "ending_before", status=400)
        seq = cursor["_seq"]
        if after:
            rest = [o for o in items if (o["_seq"] > seq if oldest_first else o["_seq"] < seq)]
            chosen, has_more = rest[:limit], len(rest) > limit
        else:
            earlier = [o for o in items if (o["_seq"] < seq if oldest_first else o["_seq"] > seq)]
            chosen, has_more = earlier[-limit:], len(earlier) > limit
    else:
        chosen, has_more = items[:limit], len(items) > limit
    render = render or ctx.store.render
    return list_object(url, [render(o) for o in chosen], has_more)
