"""``expand[]``: replace object ids in a response by the objects, along dotted paths (``data.`` for lists)."""

from __future__ import annotations

from typing import Any

from .context import Ctx
from .errors import invalid

MAX_DEPTH = 4
# For each object type, the (dotted) fields that hold an expandable id.
EXPANDABLE: dict[str, frozenset[str]] = {
    "payment_intent": frozenset({"latest_charge", "customer", "payment_method"}),
    "charge": frozenset({"customer", "payment_intent", "balance_transaction"}),
    "refund": frozenset({"charge", "payment_intent", "balance_transaction"}),
    "customer": frozenset({"invoice_settings.default_payment_method"}),
    "invoice": frozenset({"customer", "default_payment_method"}),
    "invoiceitem": frozenset({"customer", "invoice"}),
    "payment_method": frozenset({"customer"}),
    "balance_transaction": frozenset({"source"}),
}


def _cannot(path: str) -> Exception:
    return invalid(f"This property cannot be expanded ({path}).", param="expand")


def _expand(ctx: Ctx, obj: dict[str, Any], parts: list[str], full: str) -> None:
    kind = obj.get("object")
    if kind == "list":
        if parts[0] != "data":
            raise _cannot(full)
        for item in obj["data"]:
            if len(parts) > 1:
                _expand(ctx, item, parts[1:], full)
        return
    fields = EXPANDABLE.get(str(kind), frozenset())
    for size in range(len(parts), 0, -1):
        field = ".".join(parts[:size])
        if field not in fields:
            continue
        holder = obj
        for name in parts[:size - 1]:
            holder = holder.get(name) or {}
        value = holder.get(parts[size - 1])
        if isinstance(value, str):
            target = ctx.store.lookup(value)
            if target is not None and target["_mode"] == ctx.mode:
                value = ctx.store.render(target)
                holder[parts[size - 1]] = value
        if size < len(parts) and isinstance(value, dict):
            _expand(ctx, value, parts[size:], full)
        return
    raise _cannot(full)


def apply(ctx: Ctx, body: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    for path in paths:
        parts = path.split(".")
        if len(parts) > MAX_DEPTH:
            raise invalid(f"You cannot expand more than {MAX_DEPTH} levels of a property ({path}).", param="expand")
        _expand(ctx, body, parts, path)
    return body
