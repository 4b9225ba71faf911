# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The smoke_test module's options: the argument spec, every check made before any request, the settings.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

from ansible.module_utils.basic import env_fallback

from ansible_collections.payments.deploy.plugins.module_utils._smoke_report import CHECK_NAMES
from ansible_collections.payments.deploy.plugins.module_utils._stripe import DEFAULT_API_BASE, key_hint, key_kind

# Checks that follow the payments the payment check makes.
PAYMENT_FOLLOWERS = ("idempotency", "stripe_record", "service_record", "webhooks", "refund", "email")
# Which secret each check needs (the refund always runs when payments are made, so it needs Stripe too).
NEEDS = {
    "api_key": ("admin_role", "payment", "invoice"),
    "admin_key": ("admin_role",),
    "smoke_key": ("rate_limit",),
    "stripe_api_key": ("stripe_record", "refund", "invoice"),
}
# The service accepts idempotency keys of up to 200 visible characters: room for the longest one made from run_id.
MAX_RUN_ID = 150
RUN_ID = re.compile(r"^[A-Za-z0-9._:@+-]+\Z")
ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
CURRENCY = re.compile(r"^[a-z]{3}\Z")
PAYMENT_METHOD = re.compile(r"^pm_[A-Za-z0-9_]+\Z")
MAX_PAYMENTS = 100


def argument_spec() -> dict[str, dict[str, t.Any]]:
    """The options of payments.deploy.smoke_test (documented in the module)."""
    return {
        "targets": {"type": "list", "elements": "dict", "required": True, "options": {
            "name": {"type": "str", "required": True},
            "url": {"type": "str", "required": True},
        }},
        "run_id": {"type": "str", "required": True},
        "api_key": {"type": "str", "no_log": True},
        "admin_key": {"type": "str", "no_log": True},
        "smoke_key": {"type": "str", "no_log": True},
        "stripe_api_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["STRIPE_SECRET_KEY"])},
        "stripe_api_base": {"type": "str", "default": DEFAULT_API_BASE},
        "expected_version": {"type": "str"},
        "payment_count": {"type": "int", "default": 10},
        "payment_amount": {"type": "int", "default": 50},
        "payment_amount_cap": {"type": "int", "default": 100},
        "currency": {"type": "str", "default": "usd"},
        "payment_method": {"type": "str", "default": "pm_card_visa"},
        "customer_email": {"type": "str", "default": "smoke-test@example.com"},
        "p95_threshold": {"type": "float", "default": 3.0},
        "cors_allowed_origin": {"type": "str"},
        "cors_foreign_origin": {"type": "str", "default": "https://smoke-test.invalid"},
        "rate_limit_attempts": {"type": "int", "default": 30},
        "mailbox_url": {"type": "str"},
        "wait_timeout": {"type": "float", "default": 20.0},
        "request_timeout": {"type": "float", "default": 10.0},
        "checks": {"type": "list", "elements": "str", "choices": list(CHECK_NAMES)},
    }


@dataclass(frozen=True)
class Target:
    """One base URL to test, with the name results and messages use for it."""

    name: str
    url: str

    @property
    def https(self) -> bool:
        return self.url.startswith("https://")


def url_problem(label: str, value: str | None, allow_path: bool = True) -> str | None:
    """Why ``value`` is not a usable http(s) base URL (the URL itself is not repeated when it carries credentials)."""
    parts = urlsplit(value or "")
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.username is not None or parts.password is not None:
        return f"{label} must not contain credentials"
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        return f"{label} {value!r} must be an http:// or https:// URL with a host"
    if parts.query or parts.fragment or (not allow_path and parts.path not in ("", "/")):
        return f"{label} {value!r} must not have a {'query or fragment' if allow_path else 'path, query or fragment'}"
    if any(c.isspace() for c in value or ""):
        return f"{label} {value!r} must not contain whitespace"
    return None


def selected_checks(params: t.Mapping[str, t.Any]) -> list[str]:
    """The checks that run, in their order: ``checks`` or all; the refund always follows the payments."""
    wanted = set(params.get("checks") or CHECK_NAMES)
    if "payment" in wanted:
        wanted.add("refund")
    return [name for name in CHECK_NAMES if name in wanted]


def _target_problems(targets: t.Sequence[t.Mapping[str, t.Any]]) -> list[str]:
    problems = []
    if not targets:
        problems.append("targets must list at least one {name, url}")
    names: dict[str, int] = {}
    urls: dict[str, str] = {}
    for index, target in enumerate(targets):
        name = (target.get("name") or "").strip()
        label = f"targets[{index}]" + (f" ({name})" if name else "")
        if not name or any(c.isspace() for c in name):
            problems.append(f"{label}: name must be a non-empty word without whitespace")
        elif name in names:
            problems.append(f"{label}: name {name!r} is used twice")
        names.setdefault(name, index)
        problem = url_problem(f"{label} url", target.get("url"))
        if problem:
            problems.append(problem)
            continue
        url = (target.get("url") or "").rstrip("/")
        if url in urls:
            problems.append(f"{label}: url {url} is the url of {urls[url]} too")
        urls.setdefault(url, name or label)
    return problems


def _secret_problems(params: t.Mapping[str, t.Any], checks: t.Sequence[str]) -> list[str]:
    problems = []
    for option, users in NEEDS.items():
        value = params.get(option)
        needed_by = [name for name in users if name in checks]
        if not value and needed_by:
            problems.append(f"{option} is required by the {', '.join(needed_by)} check(s)")
        elif value and any(c.isspace() for c in value):
            problems.append(f"{option} must not contain whitespace")
    keys = {option: params.get(option) for option in ("api_key", "admin_key", "smoke_key")}
    seen: dict[str, str] = {}
    for option, value in keys.items():
        if value and value in seen:
            problems.append(f"{option} must differ from {seen[value]} (each role is checked with its own key)")
        elif value:
            seen[value] = option
    stripe_key = params.get("stripe_api_key")
    if stripe_key and key_kind(stripe_key)[0] not in ("secret", "restricted"):
        problems.append(f"stripe_api_key {key_hint(stripe_key)} is not a Stripe secret or restricted key "
                        "(sk_..., rk_...)")
    return problems


def _bounds_problems(params: t.Mapping[str, t.Any], target_count: int) -> list[str]:
    problems = []
    count, least = params["payment_count"], max(1, target_count)
    if not least <= count <= MAX_PAYMENTS:
        problems.append(f"payment_count must be from {least} (one payment per target) to {MAX_PAYMENTS}, got {count}")
    if params["payment_amount_cap"] < 1:
        problems.append("payment_amount_cap must be a positive amount in the currency's smallest unit")
    if params["payment_amount"] < 1:
        problems.append("payment_amount must be a positive amount in the currency's smallest unit")
    elif params["payment_amount"] > params["payment_amount_cap"]:
        problems.append(f"payment_amount {params['payment_amount']} is above payment_amount_cap "
                        f"{params['payment_amount_cap']}: smoke payments must stay small (with a live key they are "
                        "real money)")
    if not 0 < params["p95_threshold"] <= 60:
        problems.append(f"p95_threshold must be a number of seconds above 0 and at most 60, "
                        f"got {params['p95_threshold']}")
    if not 1 <= params["rate_limit_attempts"] <= 1000:
        problems.append(f"rate_limit_attempts must be from 1 to 1000, got {params['rate_limit_attempts']}")
    if not 0 <= params["wait_timeout"] <= 600:
        problems.append(f"wait_timeout must be from 0 to 600 seconds, got {params['wait_timeout']}")
    if not 0 < params["request_timeout"] <= 300:
        problems.append(f"request_timeout must be above 0 and at most 300 seconds, got {params['request_timeout']}")
    return problems


def _text_problems(params: t.Mapping[str, t.Any]) -> list[str]:
    problems = []
    run_id = params.get("run_id") or ""
    if not RUN_ID.match(run_id) or len(run_id) > MAX_RUN_ID:
        problems.append(f"run_id must be 1 to {MAX_RUN_ID} characters among letters, digits and . _ : @ + - "
                        "(it makes the payments' idempotency keys)")
    if not CURRENCY.match(params.get("currency") or ""):
        problems.append(f"currency {params.get('currency')!r} must be a three-letter ISO code in lower case, "
                        "such as usd")
    method = params.get("payment_method") or ""
    if not PAYMENT_METHOD.match(method):
        problems.append("payment_method must be a PaymentMethod id such as pm_card_visa")
    elif method.startswith("pm_card_") and key_kind(params.get("stripe_api_key") or "")[1] == "live":
        problems.append(f"payment_method {method} is a test payment method: Stripe refuses it in live mode "
                        "(stripe_api_key is a live key)")
    if not EMAIL.match(params.get("customer_email") or ""):
        problems.append(f"customer_email {params.get('customer_email')!r} must be an email address")
    version = params.get("expected_version")
    if version is not None and (not version.strip() or any(c.isspace() for c in version)):
        problems.append("expected_version must be a version such as 1.2.0 when given")
    allowed, foreign = params.get("cors_allowed_origin"), params.get("cors_foreign_origin")
    for option, origin in (("cors_allowed_origin", allowed), ("cors_foreign_origin", foreign)):
        if (origin is not None or option == "cors_foreign_origin") and not ORIGIN.match(origin or ""):
            problems.append(f"{option} {origin!r} must be an origin such as https://shop.example.com "
                            "(scheme, host, port)")
    if allowed and allowed == foreign:
        problems.append("cors_foreign_origin must differ from cors_allowed_origin")
    for option in ("stripe_api_base", "mailbox_url"):
        if params.get(option) is not None:
            problem = url_problem(option, params[option])
            if problem:
                problems.append(problem)
    return problems


def _check_problems(params: t.Mapping[str, t.Any]) -> list[str]:
    given = params.get("checks")
    if given is not None and not given:
        return ["checks must name at least one check when given (leave it out to run all)"]
    wanted = set(given or CHECK_NAMES)
    followers = [name for name in PAYMENT_FOLLOWERS if name in wanted]
    if followers and "payment" not in wanted:
        return [f"the {', '.join(followers)} check(s) follow the smoke payments: add payment to checks"]
    return []


def validate(params: t.Mapping[str, t.Any]) -> list[str]:
    """Every problem with the options, as sentences; empty when the smoke test may start."""
    targets = params.get("targets") or []
    checks = selected_checks(params)
    return (_target_problems(targets) + _check_problems(params) + _secret_problems(params, checks)
            + _bounds_problems(params, len(targets)) + _text_problems(params))


def targets_of(params: t.Mapping[str, t.Any]) -> list[Target]:
    return [Target(str(target["name"]).strip(), str(target["url"]).rstrip("/")) for target in params["targets"]]


def payment_key(run_id: str, n: int) -> str:
    """The Idempotency-Key of smoke payment ``n`` (from 1)."""
    return f"smoke-{run_id}-{n}"


def refund_key(run_id: str, n: int, duplicate: bool = False) -> str:
    return f"smoke-{run_id}-{n}-refund" + ("-duplicate" if duplicate else "")


def invoice_key(run_id: str, target_index: int) -> str:
    return f"smoke-{run_id}-invoice-{target_index + 1}"


def payment_plan(params: t.Mapping[str, t.Any], targets: t.Sequence[Target]) -> list[dict[str, t.Any]]:
    """The payments the run makes, round-robin over the targets."""
    return [{"n": n, "target": targets[(n - 1) % len(targets)].name,
             "idempotency_key": payment_key(params["run_id"], n),
             "amount": params["payment_amount"], "currency": params["currency"]}
            for n in range(1, params["payment_count"] + 1)]
