# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One smoke-test run: the checks of each target, then the payments, then the verdict and the results.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import time
import typing as t

from ansible_collections.payments.deploy.plugins.module_utils._smoke_checks import (
    admin_role,
    authentication,
    contract,
    cors,
    rate_limit,
    security_header_probes,
    security_headers,
)
from ansible_collections.payments.deploy.plugins.module_utils._smoke_http import HttpClient
from ansible_collections.payments.deploy.plugins.module_utils._smoke_options import (
    PAYMENT_FOLLOWERS,
    invoice_key,
    payment_plan,
    selected_checks,
    targets_of,
)
from ansible_collections.payments.deploy.plugins.module_utils._smoke_payments import PaymentFlow
from ansible_collections.payments.deploy.plugins.module_utils._smoke_report import (
    ALL_TARGETS,
    CHECK_NAMES,
    LATENCY,
    Redactor,
    Report,
)
from ansible_collections.payments.deploy.plugins.module_utils._smoke_service import Credentials, ServiceTarget
from ansible_collections.payments.deploy.plugins.module_utils._smoke_stripe import StripeReader
from ansible_collections.payments.deploy.plugins.module_utils._stripe import latency_summary

# The checks that create objects: not run in check mode.
CREATING = ("payment", *PAYMENT_FOLLOWERS, "invoice")


def redactor_for(params: t.Mapping[str, t.Any], *extra: str) -> Redactor:
    """Every secret the options hold (and ``extra`` made-up ones), named in place of its value."""
    secrets = {name: params.get(name) for name in ("api_key", "admin_key", "smoke_key", "stripe_api_key")}
    secrets.update({f"secret {i}": value for i, value in enumerate(extra)})
    return Redactor(secrets)


class SmokeTest:
    """Runs every selected check and collects the results; ``run()`` returns them and the failure message."""

    def __init__(self, params: t.Mapping[str, t.Any], check_mode: bool) -> None:
        self.params = params
        self.check_mode = check_mode
        self.targets = targets_of(params)
        self.checks = selected_checks(params)
        self.http = HttpClient(params["request_timeout"])
        credentials = Credentials.of(params.get("api_key"), params.get("admin_key"), params.get("smoke_key"))
        self.services = [ServiceTarget(target, self.http, credentials) for target in self.targets]
        self.report = Report([target.name for target in self.targets])
        key = params.get("stripe_api_key")
        self.stripe = StripeReader(self.http, params["stripe_api_base"], key) if key else None
        self.redactor = redactor_for(params, credentials.invalid)
        self.versions: dict[str, dict[str, t.Any]] = {}
        self.flow: PaymentFlow | None = None

    def selected(self, name: str) -> bool:
        return name in self.checks

    def target_checks(self, service: ServiceTarget) -> None:
        params = self.params
        outcome = self.report.outcome
        if self.selected("contract"):
            self.versions[service.name] = contract(service, outcome("contract", service.name),
                                                   params.get("expected_version"))
        if self.selected("authentication"):
            authentication(service, outcome("authentication", service.name))
        if self.selected("admin_role"):
            admin_role(service, outcome("admin_role", service.name))
        if self.selected("rate_limit"):
            rate_limit(service, outcome("rate_limit", service.name), params["rate_limit_attempts"])
        if self.selected("cors"):
            cors(service, outcome("cors", service.name), params.get("cors_allowed_origin"),
                 params["cors_foreign_origin"])
        if self.selected("security_headers"):
            with outcome("security_headers", service.name).guard():
                security_header_probes(service)

    def latency(self) -> dict[str, t.Any]:
        """The nearest-rank figures of the payment POSTs answered 201, and the p95 gate as a check on all targets."""
        values = self.flow.latencies if self.flow is not None else []
        summary = dict(latency_summary(values), threshold=self.params["p95_threshold"], method="nearest-rank")
        if self.check_mode or not self.selected("payment"):
            return summary
        outcome = self.report.outcome(LATENCY, ALL_TARGETS)
        if not values:
            outcome.skip("no payment POST was answered 201")
        elif summary["p95"] >= self.params["p95_threshold"]:
            outcome.fail(f"p95 {summary['p95']} s of {len(values)} payment POSTs is not under p95_threshold "
                         f"{self.params['p95_threshold']:g} s (p50 {summary['p50']} s, max {summary['max']} s)")
        else:
            outcome.ok(f"p95 {summary['p95']} s of {len(values)} payment POSTs < {self.params['p95_threshold']:g} s")
        return summary

    def run(self) -> tuple[dict[str, t.Any], str | None]:
        started = time.monotonic()
        for name in CHECK_NAMES:
            if not self.selected(name):
                self.report.skip_everywhere(name, "not selected (checks)")
        for service in self.services:
            self.target_checks(service)
        if self.check_mode:
            for name in CREATING:
                if self.selected(name):
                    self.report.skip_everywhere(name, "check mode: not run, it creates objects")
        else:
            self.flow = PaymentFlow(self.params, self.services, self.checks, self.report, self.http, self.stripe)
            self.flow.run()
            for name in CREATING:
                for target in self.targets:
                    if self.selected(name) and not self.report.has(name, target.name):
                        self.report.outcome(name, target.name).skip("no payment was made on this target")
        if self.selected("security_headers"):
            for service in self.services:
                security_headers(service, self.report.outcome("security_headers", service.name))
        latency = self.latency()
        result = self.result(latency, round(time.monotonic() - started, 3))
        failures = self.report.failures()
        message = None
        if failures:
            message = self.report.failure_message() + self.refund_summary()
        return self.redactor.deep(result), (self.redactor.text(message) if message else None)

    def refund_summary(self) -> str:
        if self.flow is None or not self.flow.payments:
            return ""
        made = [p for p in self.flow.payments if p.made]
        kept = [p.payment_id for p in made if p.payment_status != "refunded"]
        # a POST that got no answer, and whose replay got none either: the service may hold that payment
        unknown = [p.idempotency_key for p in self.flow.payments if p.lost and not p.payment_id]
        text = f". NOT refunded: {', '.join(str(k) for k in kept)}" if kept else (
            f". All {len(made)} payment(s) made were refunded" if made else ". No payment was made")
        if unknown:
            text += f". Not known whether these were made (no answer): {', '.join(unknown)}"
        return text

    def target_result(self, name: str, url: str) -> dict[str, t.Any]:
        """A target with what its /version said (``service`` is the name the service gives itself)."""
        seen = self.versions.get(name, {})
        return {"name": name, "url": url, "service": seen.get("name"), "version": seen.get("version"),
                "instance": seen.get("instance"), "colour": seen.get("colour")}

    def result(self, latency: dict[str, t.Any], duration: float) -> dict[str, t.Any]:
        flow = self.flow
        result: dict[str, t.Any] = {
            "changed": bool(flow and flow.created_anything),
            "run_id": self.params["run_id"],
            "checks": self.report.records(),
            "failed_checks": self.report.failed_names(),
            "payments": [p.as_result() for p in flow.payments] if flow else [],
            "invoices": flow.invoices if flow else [],
            "customer_id": flow.customer_id if flow else None,
            "latency": latency,
            "duration": duration,
            "targets": [self.target_result(target.name, target.url) for target in self.targets],
        }
        if self.check_mode:
            result["plan"] = {
                "checks": self.checks,
                "payments": payment_plan(self.params, self.targets) if self.selected("payment") else [],
                "invoices": [{"target": target.name, "idempotency_key": invoice_key(self.params["run_id"], i)}
                             for i, target in enumerate(self.targets)] if self.selected("invoice") else [],
            }
        return result
