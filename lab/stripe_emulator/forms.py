"""Stripe's form encoding: ``metadata[k]=v``, ``enabled_events[]=a``, ``items[0][price]=p``, and typed readers for it.

Values stay strings until a handler reads them with the type it expects, as Stripe does: the same
``metadata[0]=x`` is a hash key for metadata and an array index for a list parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from .errors import StripeError, invalid, missing_param, unimplemented_param, unknown_param

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500


def _split_key(key: str) -> list[str]:
    """``a[b][]`` -> ``["a", "b", ""]``."""
    head, bracket, tail = key.partition("[")
    if not bracket:
        return [key]
    tail = "[" + tail
    segments = _SEGMENT.findall(tail)
    if not head or "".join(f"[{s}]" for s in segments) != tail:
        raise invalid(f"Invalid parameter name: {key}")
    return [head, *segments]


def _insert(node: dict[str, Any] | list[Any], segments: list[str], value: str, key: str) -> None:
    seg, rest = segments[0], segments[1:]
    if isinstance(node, list):
        if seg != "":
            raise invalid(f"Invalid array: {key} mixes [] and [name] for the same parameter")
        if not rest:
            node.append(value)
            return
        last = node[-1] if node and isinstance(node[-1], dict) and rest[0] not in node[-1] else None
        if last is None:
            last = {}
            node.append(last)
        _insert(last, rest, value, key)
        return
    if not rest:
        if seg in node:
            # Repeated scalar keys: the last one wins, as in Stripe's parser.
            if isinstance(node[seg], (dict, list)):
                raise invalid(f"Invalid hash: {key} is given both as a value and as a hash")
        node[seg] = value
        return
    want_list = rest[0] == ""
    child = node.get(seg)
    if child is None or isinstance(child, str) and child == "":
        child = [] if want_list else {}
        node[seg] = child
    if want_list and not isinstance(child, list) or not want_list and not isinstance(child, dict):
        raise invalid(f"Invalid hash: {key} is given both as a value and as a hash")
    _insert(child, rest, value, key)


def parse_form(text: str) -> dict[str, Any]:
    """Parse a form-encoded body or query string into nested dicts and lists of strings."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        _insert(out, _split_key(key), value, key)
    return out


def check_params(params: dict[str, Any], implemented: Iterable[str], stripe_known: Iterable[str], route: str) -> None:
    """Refuse top-level parameters the emulator does not implement, telling apart those Stripe does not know."""
    allowed = set(implemented) | {"expand"}
    known = set(stripe_known)
    for name in params:
        if name not in allowed:
            raise unimplemented_param(name, route) if name in known else unknown_param(name)


def get_str(params: dict[str, Any], name: str, *, required: bool = False, max_len: int = 5000,
            label: str | None = None) -> str | None:
    label = label or name
    if name not in params:
        if required:
            raise missing_param(label)
        return None
    value = params[name]
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {label} must be a string", param=label)
    if len(value) > max_len:
        raise invalid(f"Invalid string: {label} must be at most {max_len} characters", param=label)
    if required and value == "":
        raise missing_param(label)
    return value


def get_int(params: dict[str, Any], name: str, *, required: bool = False, minimum: int | None = None,
            maximum: int | None = None) -> int | None:
    raw = get_str(params, name, required=required)
    if raw is None:
        return None
    if not re.fullmatch(r"-?\d{1,18}", raw):
        raise invalid(f"Invalid integer: {raw}", param=name)
    value = int(raw)
    if minimum is not None and value < minimum:
        raise invalid(f"This value must be greater than or equal to {minimum}.", param=name)
    if maximum is not None and value > maximum:
        raise invalid(f"This value must be less than or equal to {maximum}.", param=name)
    return value


def get_bool(params: dict[str, Any], name: str, *, label: str | None = None) -> bool | None:
    raw = get_str(params, name, label=label)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise invalid(f"Invalid boolean: {raw}", param=label or name)
    return raw == "true"


def one_of(choices: Iterable[str]) -> str:
    items = list(choices)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + ", or " + items[-1]


def get_enum(params: dict[str, Any], name: str, choices: Iterable[str], *, required: bool = False,
             label: str | None = None) -> str | None:
    label = label or name
    raw = get_str(params, name, required=required, label=label)
    if raw is None:
        return None
    options = list(choices)
    if raw not in options:
        raise invalid(f"Invalid {label}: must be one of {one_of(options)}", param=label)
    return raw


def get_dict(params: dict[str, Any], name: str, *, label: str | None = None) -> dict[str, Any] | None:
    """A hash parameter; an empty string means an empty hash (Stripe's way to unset it)."""
    if name not in params:
        return None
    value = params[name]
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {label or name} must be a hash", param=label or name)
    return value


def get_list(params: dict[str, Any], name: str) -> list[Any] | None:
    """An array parameter: ``a[]=x`` or ``a[0]=x``; an empty string is an empty array."""
    if name not in params:
        return None
    value = params[name]
    if value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and value and all(k.isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    raise invalid(f"Invalid array: {name} must be an array", param=name)


def get_str_list(params: dict[str, Any], name: str) -> list[str] | None:
    values = get_list(params, name)
    if values is None:
        return None
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {name}[{i}] must be a string", param=f"{name}[{i}]")
    return values


def get_expand(params: dict[str, Any]) -> list[str]:
    return get_str_list(params, "expand") or []


def apply_metadata(current: dict[str, str], params: dict[str, Any]) -> dict[str, str]:
    """Stripe's metadata update: keys set to '' are removed, ``metadata=''`` clears all of them."""
    if "metadata" not in params:
        return current
    value = params["metadata"]
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid("Invalid object: metadata must be a hash", param="metadata")
    merged = dict(current)
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid(f"Invalid string: metadata[{key}] must be a string", param=f"metadata[{key}]")
        if len(key) > METADATA_KEY_MAX:
            raise invalid(f"Metadata keys can have up to {METADATA_KEY_MAX} characters; the key '{key}' is too long.", param="metadata")
        if len(item) > METADATA_VALUE_MAX:
            raise invalid(f"Metadata values can have up to {METADATA_VALUE_MAX} characters, but the value of '{key}' is longer.",
                          param=f"metadata[{key}]")
        if item == "":
            merged.pop(key, None)
        else:
            merged[key] = item
    if len(merged) > METADATA_MAX_KEYS:
        raise invalid(f"You can have up to {METADATA_MAX_KEYS} metadata keys.", param="metadata")
    return merged


def get_created_filter(params: dict[str, Any], name: str = "created") -> dict[str, int] | None:
    """``created=N`` or ``created[gt|gte|lt|lte]=N`` as a dict of comparisons."""
    if name not in params:
        return None
    value = params[name]
    if isinstance(value, str):
        return {"eq": _to_int(value, name)}
    if not isinstance(value, dict):
        raise invalid(f"Invalid {name}: must be an integer or a hash", param=name)
    out = {}
    for op, raw in value.items():
        if op not in ("gt", "gte", "lt", "lte"):
            raise StripeError(400, f"Received unknown parameter: {name}[{op}]", param=f"{name}[{op}]", code="parameter_unknown")
        out[op] = _to_int(raw, f"{name}[{op}]")
    return out


def _to_int(raw: Any, param: str) -> int:
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d{1,18}", raw):
        raise invalid(f"Invalid integer: {raw}", param=param)
    return int(raw)


def created_matches(created: int, spec: dict[str, int] | None) -> bool:
    if not spec:
        return True
    checks = {"eq": created == spec.get("eq"), "gt": created > spec.get("gt", 0), "gte": created >= spec.get("gte", 0),
              "lt": created < spec.get("lt", 0), "lte": created <= spec.get("lte", 0)}
    return all(checks[op] for op in spec)
