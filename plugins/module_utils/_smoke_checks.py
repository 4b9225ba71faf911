# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The smoke test's checks of one target that create nothing: contract endpoints, authentication, the admin role,
the smoke key's rate limit, CORS and security headers.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import re
import secrets
import typing as t
from collections import Counter
from email.utils import parsedate_to_datetime

from ansible_collections.payments.deploy.plugins.module_utils._smoke_http import HttpResponse
from ansible_collections.payments.deploy.plugins.module_utils._smoke_report import CheckFailed, Outcome
from ansible_collections.payments.deploy.plugins.module_utils._smoke_service import (
    INVALID,
    ServiceTarget,
    error_shape_problem,
    expect_status,
)

READY_DEPENDENCIES = ("postgres", "redis", "stripe")
REQUIRED_METRICS = ("payments_total", "http_requests_total")
VERSION_FIELDS = ("name", "version", "instance", "colour")
# A customer id no service has: the authenticated GETs ask for it (404 is the right answer with a good key).
ABSENT_CUSTOMER = "cus_smokeTestAbsent"
PREFLIGHT_HEADERS = {"Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"}
_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?P<labels>\{[^}]*\})?\s+\S+")


# ----- contract


def _json_field(response: HttpResponse, field: str, wanted: str) -> dict[str, t.Any]:
    expect_status(response, 200)
    data = response.json_object()
    if data.get(field) != wanted:
        raise CheckFailed(f"GET {response.path} answered {field} {data.get(field)!r}, not {wanted!r}")
    return data


def _readyz(service: ServiceTarget, outcome: Outcome) -> None:
    response = service.get("/readyz", None)
    data = response.json_object()
    checks = data.get("checks") if isinstance(data.get("checks"), dict) else {}
    failing = {name: value for name, value in checks.items() if value != "ok"}
    missing = [name for name in READY_DEPENDENCIES if name not in checks]
    if response.status != 200 or data.get("status") != "ready" or failing or missing:
        if not data:
            raise CheckFailed(f"GET /readyz answered {response.describe()} without a JSON body")
        seen = ", ".join(f"{name} {value}" for name, value in failing.items()) or "no failing check"
        lacking = f"; lacks the {', '.join(missing)} check(s)" if missing else ""
        raise CheckFailed(f"GET /readyz answered {response.describe()} {data.get('status')!r} ({seen}){lacking}")
    outcome.ok("ready (" + ", ".join(f"{name} ok" for name in checks) + ")")


def _version(service: ServiceTarget, outcome: Outcome, expected: str | None) -> dict[str, t.Any]:
    data = expect_status(service.get("/version", None), 200).json_object()
    missing = [field for field in VERSION_FIELDS if field not in data]
    if missing:
        raise CheckFailed(f"GET /version lacks {', '.join(missing)}")
    info = {field: data.get(field) for field in VERSION_FIELDS}
    if expected is not None and str(data.get("version")) != expected:
        raise CheckFailed(f"GET /version answered version {data.get('version')!r}, not the expected {expected!r} "
                          f"(instance {data.get('instance')}, colour {data.get('colour')})")
    outcome.ok(f"version {data.get('version')} (instance {data.get('instance')}, colour {data.get('colour')})")
    return info


def metric_samples(text: str) -> tuple[set[str], list[tuple[str, str]]]:
    """The metric names a Prometheus text declares or samples, and every ``(name, labels)`` sample."""
    names: set[str] = set()
    samples: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) > 2:
                names.add(parts[2])
            continue
        found = _SAMPLE.match(line)
        if found:
            names.add(found.group("name"))
            samples.append((found.group("name"), found.group("labels") or ""))
    return names, samples


def _metrics(service: ServiceTarget, outcome: Outcome) -> None:
    response = expect_status(service.get("/metrics", None), 200)
    names, samples = metric_samples(response.body.decode("utf-8", errors="replace"))
    missing = [name for name in REQUIRED_METRICS if name not in names and name.removesuffix("_total") not in names]
    dependencies = sorted(set(re.findall(r'dependency="([^"]*)"', " ".join(labels for name, labels in samples
                                                                           if name == "dependency_up"))))
    if not dependencies:
        missing.append('dependency_up{dependency="..."}')
    if missing:
        raise CheckFailed(f"GET /metrics lacks {', '.join(missing)}")
    outcome.ok(f"metrics ({', '.join(REQUIRED_METRICS)}, dependency_up for {', '.join(dependencies)})")


def contract(service: ServiceTarget, outcome: Outcome, expected_version: str | None) -> dict[str, t.Any]:
    """The five unauthenticated endpoints answer as the contract says; returns what /version said."""
    info: dict[str, t.Any] = {}
    with outcome.guard():
        _json_field(service.get("/healthz", None), "status", "ok")
        outcome.ok("healthz ok")
    with outcome.guard():
        data = _json_field(service.get("/healthz/lb", None), "status", "serving")
        if not isinstance(data.get("checks"), dict):
            raise CheckFailed("GET /healthz/lb lacks its checks")
        outcome.ok("healthz/lb serving")
    with outcome.guard():
        _readyz(service, outcome)
    with outcome.guard():
        info = _version(service, outcome, expected_version)
    with outcome.guard():
        _metrics(service, outcome)
    return info


# ----- access


def _expect_refused(response: HttpResponse, status: int, what: str, challenge: bool = False) -> None:
    if response.status != status:
        raise CheckFailed(f"{what} answered {response.describe()}, not {status}")
    if challenge and not response.header("WWW-Authenticate"):
        raise CheckFailed(f"{what} answered {status} without WWW-Authenticate")
    problem = error_shape_problem(response)
    if problem:
        raise CheckFailed(problem)


def authentication(service: ServiceTarget, outcome: Outcome) -> None:
    """401 with WWW-Authenticate without a key (and with an invalid one). The POST carries an empty body and no
    Idempotency-Key, so a service that lets it through still cannot make a payment of it."""
    customer = f"/v1/customers/{ABSENT_CUSTOMER}"
    requests = (
        ("POST /v1/payments without a key", lambda: service.call("POST", "/v1/payments", None, json_body={})),
        (f"GET {customer} without a key", lambda: service.get(customer, None)),
        (f"GET {customer} with an invalid key", lambda: service.get(customer, INVALID)),
    )
    for what, send in requests:
        with outcome.guard():
            _expect_refused(send(), 401, what, challenge=True)
            outcome.ok(f"{what}: 401")


def admin_role(service: ServiceTarget, outcome: Outcome) -> None:
    """GET /admin/stats: 401 without a key, 403 with the API key, 200 with the admin key."""
    with outcome.guard():
        _expect_refused(service.get("/admin/stats", None), 401, "GET /admin/stats without a key", challenge=True)
        outcome.ok("401 without a key")
    with outcome.guard():
        _expect_refused(service.get("/admin/stats", "api"), 403, "GET /admin/stats with the API key")
        outcome.ok("403 with the API key")
    with outcome.guard():
        response = expect_status(service.get("/admin/stats", "admin"), 200, what="GET /admin/stats with the admin key")
        if not response.json_object():
            raise CheckFailed("GET /admin/stats with the admin key answered 200 without a JSON object")
        outcome.ok("200 with the admin key")


def _retry_after_ok(value: str | None) -> bool:
    if not value:
        return False
    if value.strip().isdigit():
        return True
    try:
        return parsedate_to_datetime(value) is not None
    except (TypeError, ValueError):
        return False


def rate_limit(service: ServiceTarget, outcome: Outcome, attempts: int) -> None:
    """The smoke key is answered 429 with Retry-After within ``attempts`` requests (never retried: each counts)."""
    path = f"/v1/customers/{ABSENT_CUSTOMER}"
    with outcome.guard():
        answers: Counter[int] = Counter()
        for count in range(1, attempts + 1):
            response = service.call("GET", path, "smoke")
            if response.status == 429:
                retry_after = response.header("Retry-After")
                if not _retry_after_ok(retry_after):
                    raise CheckFailed(f"429 after {count} request(s) without a valid Retry-After ({retry_after!r})")
                outcome.ok(f"429 after {count} request(s) of the smoke key, Retry-After {retry_after}")
                return
            if response.status in (401, 403):
                raise CheckFailed(f"the smoke key is refused: GET {path} answered {response.describe()}")
            answers[response.status] += 1
        seen = ", ".join(f"{status} x{n}" for status, n in sorted(answers.items()))
        raise CheckFailed(f"no 429 within {attempts} requests of the smoke key (answers: {seen})")


def cors(service: ServiceTarget, outcome: Outcome, allowed: str | None, foreign: str) -> None:
    """A preflight from a foreign origin gets no Access-Control-Allow-Origin; one from the allowed origin gets it."""
    with outcome.guard():
        response = service.call("OPTIONS", "/v1/payments", None, headers={"Origin": foreign, **PREFLIGHT_HEADERS})
        granted = response.header("Access-Control-Allow-Origin")
        if granted:
            raise CheckFailed(f"a preflight from the foreign origin {foreign} answered {response.status} with "
                              f"Access-Control-Allow-Origin: {granted}")
        outcome.ok(f"{foreign} refused ({response.status}, no Access-Control-Allow-Origin)")
    if allowed is None:
        outcome.skip("no cors_allowed_origin: the allowed origin was not checked")
        return
    with outcome.guard():
        response = service.call("OPTIONS", "/v1/payments", None, headers={"Origin": allowed, **PREFLIGHT_HEADERS})
        granted = response.header("Access-Control-Allow-Origin")
        methods = response.header("Access-Control-Allow-Methods")
        if response.status not in (200, 204) or granted != allowed:
            header = (f"with Access-Control-Allow-Origin {granted!r}" if granted
                      else "without Access-Control-Allow-Origin")
            raise CheckFailed(f"a preflight from the allowed origin {allowed} answered {response.describe()} {header}")
        if methods is not None and "POST" not in [m.strip().upper() for m in methods.split(",")]:
            raise CheckFailed(f"a preflight from {allowed} allows {methods!r}, not POST")
        outcome.ok(f"{allowed} allowed ({response.status})")


# ----- security headers


def security_header_probes(service: ServiceTarget) -> None:
    """A few more answers of different kinds for the header check: a JSON 200, an unknown route, an error."""
    service.get("/healthz", None)
    service.get(f"/smoke-test-absent-{secrets.token_hex(4)}", None)
    service.get(f"/v1/customers/{ABSENT_CUSTOMER}", None)


def header_problems(response: HttpResponse, https: bool) -> list[str]:
    problems = []
    if (response.header("X-Content-Type-Options") or "").strip().lower() != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    if response.content_type == "text/html" and not response.header("Content-Security-Policy"):
        problems.append("an HTML answer without Content-Security-Policy")
    if https and "max-age=" not in (response.header("Strict-Transport-Security") or "").lower():
        problems.append("no Strict-Transport-Security (max-age) over https")
    return problems


def security_headers(service: ServiceTarget, outcome: Outcome) -> None:
    """Every answer this target gave during the whole run carries the security headers."""
    problems: dict[str, list[str]] = {}
    for response in service.responses:
        for problem in header_problems(response, service.target.https):
            problems.setdefault(problem, []).append(f"{response.method} {response.path} ({response.status})")
    for problem, where in problems.items():
        more = f" and {len(where) - 1} more of {len(service.responses)} answers" if len(where) > 1 else ""
        outcome.fail(f"{problem}: {where[0]}{more}")
    if not problems and service.responses:
        html = sum(1 for r in service.responses if r.content_type == "text/html")
        extra = f", {html} HTML with Content-Security-Policy" if html else ""
        hsts = ", Strict-Transport-Security" if service.target.https else ""
        outcome.ok(f"{len(service.responses)} answers with X-Content-Type-Options: nosniff{hsts}{extra}")
    elif not service.responses:
        outcome.fail("no answer to check")
