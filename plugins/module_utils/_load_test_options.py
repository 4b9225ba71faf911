# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The load_test module's options: the argument spec, every check made before any request, and the request plan.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import math
import os
import re
import typing as t
from dataclasses import dataclass

from ansible.module_utils.basic import env_fallback

from ansible_collections.payments.deploy.plugins.module_utils._numbers import number_problems
from ansible_collections.payments.deploy.plugins.module_utils._smoke_options import (
    CURRENCY,
    EMAIL,
    MAX_RUN_ID,
    PAYMENT_METHOD,
    RUN_ID,
    url_problem,
)
from ansible_collections.payments.deploy.plugins.module_utils._stripe import key_hint, key_kind

# What each request kind sends, the answer it expects and whether it needs the API key. Only endpoints of the
# service contract (docs/service-contract.md); the payment is the one write, allowed by an option only.
KINDS: dict[str, dict[str, t.Any]] = {
    "lb_check": {"method": "GET", "path": "/healthz/lb", "expect": 200, "key": False},
    "version": {"method": "GET", "path": "/version", "expect": 200, "key": False},
    "customer": {"method": "GET", "path": "/v1/customers/{customer_id}", "expect": 200, "key": True},
    "payment": {"method": "POST", "path": "/v1/payments", "expect": 201, "key": True},
}
DEFAULT_MIX = {"lb_check": 1, "version": 1, "customer": 2, "payment": 0}
CUSTOMER_ID = re.compile(r"^cus_[A-Za-z0-9]{1,60}\Z")
MAX_RATE = 1000.0
MAX_DURATION = 600.0
MAX_REQUESTS = 100000
MAX_CONCURRENCY = 256
MAX_PAYMENTS = 1000


def argument_spec() -> dict[str, dict[str, t.Any]]:
    """The options of payments.deploy.load_test (documented in the module)."""
    return {
        "targets": {"type": "list", "elements": "dict", "required": True, "options": {
            "name": {"type": "str", "required": True},
            "url": {"type": "str", "required": True},
        }},
        "run_id": {"type": "str", "required": True},
        "rate": {"type": "float", "default": 20.0},
        "duration": {"type": "float", "default": 15.0},
        "max_requests": {"type": "int", "default": 600},
        "concurrency": {"type": "int", "default": 16},
        "mix": {"type": "dict", "options": {name: {"type": "int", "default": weight}
                                            for name, weight in DEFAULT_MIX.items()}},
        "api_key": {"type": "str", "no_log": True},
        "customer_id": {"type": "str"},
        "customer_email": {"type": "str", "default": "load-test@example.com"},
        "allow_payments": {"type": "bool", "default": False},
        "allow_live_payments": {"type": "bool", "default": False},
        "stripe_api_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["STRIPE_SECRET_KEY"])},
        "payment_amount": {"type": "int", "default": 50},
        "payment_amount_cap": {"type": "int", "default": 100},
        "max_payments": {"type": "int", "default": 100},
        "currency": {"type": "str", "default": "usd"},
        "payment_method": {"type": "str", "default": "pm_card_visa"},
        "expected_version": {"type": "str"},
        "expect_rate_limited": {"type": "bool", "default": False},
        "min_rate_ratio": {"type": "float", "default": 0.9},
        "max_error_rate": {"type": "float", "default": 0.01},
        "max_p95": {"type": "float", "default": 1.0},
        "max_p99": {"type": "float", "default": 2.0},
        "request_timeout": {"type": "float", "default": 5.0},
        "ca_path": {"type": "path"},
    }


@dataclass(frozen=True)
class Planned:
    """One request of the plan: sent at ``index / rate`` seconds after the start."""

    index: int
    target: int
    kind: str
    payment_n: int = 0  # the payment's number (from 1) for a payment request


def mix_of(params: t.Mapping[str, t.Any]) -> dict[str, int]:
    given = params.get("mix") or {}
    return {name: (DEFAULT_MIX[name] if given.get(name) is None else int(given[name])) for name in DEFAULT_MIX}


def kind_cycle(mix: t.Mapping[str, int]) -> list[str]:
    """One cycle of the request kinds in proportion to their weights, interleaved (smooth weighted round robin)."""
    weights = {name: weight for name, weight in mix.items() if weight > 0}
    total = sum(weights.values())
    current = dict.fromkeys(weights, 0)
    cycle = []
    for _step in range(total):
        for name, weight in weights.items():
            current[name] += weight
        chosen = max(current, key=lambda name: current[name])
        current[chosen] -= total
        cycle.append(chosen)
    return cycle


def planned_count(params: t.Mapping[str, t.Any]) -> int:
    """How many requests the run schedules: every 1/rate s for ``duration`` s, and never more than ``max_requests``."""
    return min(params["max_requests"], math.ceil(params["duration"] * params["rate"] - 1e-9))


def plan(params: t.Mapping[str, t.Any]) -> list[Planned]:
    """Every request of the run, in order. Targets take turns; each target gets the whole mix."""
    cycle = kind_cycle(mix_of(params))
    count = len(params["targets"])
    planned, payments = [], 0
    for index in range(planned_count(params)):
        kind = cycle[(index // count) % len(cycle)]
        if kind == "payment":
            if payments >= params["max_payments"]:
                kind = next((k for k in cycle if k != "payment"), "lb_check")
            else:
                payments += 1
        planned.append(Planned(index, index % count, kind, payments if kind == "payment" else 0))
    return planned


def payment_key(run_id: str, n: int) -> str:
    """The Idempotency-Key of load-test payment ``n`` (from 1): the same run id never charges twice."""
    return f"load-{run_id}-{n}"


def refund_key(run_id: str, n: int) -> str:
    return f"load-{run_id}-{n}-refund"


def _target_problems(targets: t.Sequence[t.Mapping[str, t.Any]]) -> list[str]:
    problems = [] if targets else ["targets must list at least one {name, url}"]
    names: set[str] = set()
    urls: set[str] = set()
    for index, target in enumerate(targets):
        name = str(target.get("name") or "").strip()
        label = f"targets[{index}]" + (f" ({name})" if name else "")
        if not name or any(c.isspace() for c in name) or len(name) > 100:
            problems.append(f"{label}: name must be a word of 1 to 100 characters without whitespace")
        elif name in names:
            problems.append(f"{label}: name {name!r} is used twice")
        names.add(name)
        problem = url_problem(f"{label} url", target.get("url"))
        if problem:
            problems.append(problem)
        elif str(target["url"]).rstrip("/") in urls:
            problems.append(f"{label}: url {target['url']} is listed twice")
        urls.add(str(target.get("url") or "").rstrip("/"))
    return problems


def _bounds_problems(params: t.Mapping[str, t.Any]) -> list[str]:
    problems = number_problems(params, {
        "rate": {"maximum": MAX_RATE, "unit": "requests per second"},
        "duration": {"maximum": MAX_DURATION},
        "min_rate_ratio": {"maximum": 1.0, "unit": "(a fraction of rate)"},
        "max_error_rate": {"minimum": 0.0, "allow_minimum": True, "maximum": 1.0, "unit": "(a fraction)"},
        "max_p95": {"maximum": 60.0},
        "max_p99": {"maximum": 60.0},
        "request_timeout": {"maximum": 300.0},
    })
    for option, low, high in (("max_requests", 1, MAX_REQUESTS), ("concurrency", 1, MAX_CONCURRENCY),
                              ("max_payments", 0, MAX_PAYMENTS)):
        if not low <= params[option] <= high:
            problems.append(f"{option} must be from {low} to {high}, got {params[option]}")
    p95, p99 = params["max_p95"], params["max_p99"]
    if not problems and p99 < p95:
        problems.append(f"max_p99 {p99:g} s must not be below max_p95 {p95:g} s")
    return problems


def _mix_problems(params: t.Mapping[str, t.Any]) -> list[str]:
    mix = mix_of(params)
    problems = [f"mix.{name} must be a weight from 0 to 100, got {weight}"
                for name, weight in mix.items() if not 0 <= weight <= 100]
    if not problems and not any(mix.values()):
        problems.append("mix must give at least one request kind a weight above 0")
    if mix["payment"] > 0 and not params["allow_payments"]:
        problems.append("mix.payment asks for payments but allow_payments is false (the load test only reads unless "
                        "payments are allowed)")
    needs_key = [name for name, weight in mix.items() if weight > 0 and KINDS[name]["key"]]
    key = params.get("api_key")
    if needs_key and not key:
        problems.append(f"api_key is required by the {', '.join(needs_key)} request(s)")
    elif key and any(c.isspace() for c in key):
        problems.append("api_key must not contain whitespace")
    customer = params.get("customer_id")
    if customer is not None and not CUSTOMER_ID.match(customer):
        problems.append("customer_id must be a customer id such as cus_a1B2c3 when given")
    if not EMAIL.match(params.get("customer_email") or "") or len(params.get("customer_email") or "") > 254:
        problems.append(f"customer_email {params.get('customer_email')!r} must be an email address")
    return problems


def _payment_problems(params: t.Mapping[str, t.Any]) -> list[str]:
    """The payments' bounds, and the key's mode: a live key is refused unless allow_live_payments."""
    problems = []
    if params["payment_amount_cap"] < 1:
        problems.append("payment_amount_cap must be a positive amount in the currency's smallest unit")
    if params["payment_amount"] < 1:
        problems.append("payment_amount must be a positive amount in the currency's smallest unit")
    elif params["payment_amount"] > params["payment_amount_cap"]:
        problems.append(f"payment_amount {params['payment_amount']} is above payment_amount_cap "
                        f"{params['payment_amount_cap']}: load-test payments must stay small")
    if not CURRENCY.match(params.get("currency") or ""):
        problems.append(f"currency {params.get('currency')!r} must be a three-letter ISO code in lower case")
    method = params.get("payment_method") or ""
    if not PAYMENT_METHOD.match(method):
        problems.append("payment_method must be a PaymentMethod id such as pm_card_visa")
    if mix_of(params)["payment"] <= 0:
        return problems
    stripe_key = params.get("stripe_api_key")
    kind, mode = key_kind(stripe_key or "")
    if not stripe_key:
        problems.append("stripe_api_key is required with payments in the mix: it tells a test key from a live one "
                        "(it is not sent anywhere)")
    elif kind not in ("secret", "restricted"):
        problems.append(f"stripe_api_key {key_hint(stripe_key)} is not a Stripe secret or restricted key")
    elif mode == "live" and not params["allow_live_payments"]:
        problems.append("stripe_api_key is a live key: load-test payments would be real money; they are refused "
                        "unless allow_live_payments is true")
    elif mode == "live" and method.startswith("pm_card_"):
        problems.append(f"payment_method {method} is a test payment method: Stripe refuses it in live mode")
    return problems


def validate(params: t.Mapping[str, t.Any]) -> list[str]:
    """Every problem with the options, as sentences; empty when the load test may start."""
    problems = _target_problems(params.get("targets") or [])
    run_id = params.get("run_id") or ""
    if not RUN_ID.match(run_id) or len(run_id) > MAX_RUN_ID:
        problems.append(f"run_id must be 1 to {MAX_RUN_ID} characters among letters, digits and . _ : @ + - "
                        "(it makes the payments' idempotency keys)")
    problems += _bounds_problems(params) + _mix_problems(params) + _payment_problems(params)
    version = params.get("expected_version")
    if version is not None and (not version.strip() or any(c.isspace() for c in version) or len(version) > 100):
        problems.append("expected_version must be a version such as 1.2.0 when given")
    ca_path = params.get("ca_path")
    if ca_path is not None and not os.path.isfile(ca_path):
        problems.append(f"ca_path {ca_path!r} is not a readable file")
    return problems
