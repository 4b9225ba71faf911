# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The smoke payments: a customer for the run, payments round-robin over the targets, each followed to Stripe, to
the service's record and its webhooks, then refunded (always, whatever else failed); an invoice per target and
the receipt emails.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import quote

from ansible_collections.payments.deploy.plugins.module_utils._smoke_http import (
    HttpClient,
    HttpFailure,
    HttpResponse,
    join_url,
)
from ansible_collections.payments.deploy.plugins.module_utils._smoke_options import (
    invoice_key,
    payment_key,
    refund_key,
)
from ansible_collections.payments.deploy.plugins.module_utils._smoke_report import CheckFailed, Outcome, Report
from ansible_collections.payments.deploy.plugins.module_utils._smoke_service import ServiceTarget, expect_status
from ansible_collections.payments.deploy.plugins.module_utils._smoke_stripe import StripeReader

SUCCEEDED_EVENT = "payment_intent.succeeded"
POLL_INTERVAL = 0.5
# A refund carries its own idempotency key, so it is safe to send again: after a connection error or a 503.
REFUND_ATTEMPTS = 3
MAX_RETRY_AFTER = 5.0


@dataclass
class SmokePayment:
    """One smoke payment as the run learns about it."""

    n: int
    service: ServiceTarget
    idempotency_key: str
    body: dict[str, t.Any]
    payment_id: str | None = None
    payment_intent: str | None = None
    status: str | None = None
    seconds: float | None = None  # the first POST, when it was answered 201
    lost: bool = False  # the first POST got no answer: only a replay can tell whether it was made
    duplicate_of: int | None = None
    charge: str | None = None
    events: list[str] = field(default_factory=list)
    refund_id: str | None = None
    stripe_refund_id: str | None = None
    refund_status: str | None = None
    payment_status: str | None = None

    @property
    def label(self) -> str:
        name = f"payment {self.n}" + (" (duplicate)" if self.duplicate_of else "")
        return f"{name} ({self.payment_id})" if self.payment_id else name

    @property
    def made(self) -> bool:
        """The service holds this payment and it was not declined: there is money to follow and give back."""
        return bool(self.payment_id) and self.status != "failed"

    def adopt(self, data: t.Mapping[str, t.Any]) -> None:
        self.payment_id = data.get("id") if isinstance(data.get("id"), str) else self.payment_id
        self.payment_intent = data.get("stripe_payment_intent_id") or self.payment_intent
        self.status = data.get("status") or self.status

    def as_result(self) -> dict[str, t.Any]:
        result = {
            "n": self.n, "target": self.service.name, "idempotency_key": self.idempotency_key,
            "payment_id": self.payment_id, "payment_intent": self.payment_intent, "status": self.status,
            "seconds": self.seconds, "webhook_events": self.events, "refund_id": self.refund_id,
            "stripe_refund_id": self.stripe_refund_id, "refund_status": self.refund_status,
            "payment_status": self.payment_status, "refunded": self.payment_status == "refunded",
        }
        if self.duplicate_of:
            result["duplicate_of"] = self.duplicate_of
        return result


def _mismatches(data: t.Mapping[str, t.Any], wanted: t.Mapping[str, t.Any]) -> list[str]:
    return [f"{name} {data.get(name)!r} (expected {value!r})"
            for name, value in wanted.items() if data.get(name) != value]


def _object_id(value: t.Any) -> str | None:
    """An expandable Stripe field as its id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


class PaymentFlow:
    """The checks that create objects, in order; refunds in a ``finally``."""

    def __init__(self, params: t.Mapping[str, t.Any], services: t.Sequence[ServiceTarget], checks: t.Sequence[str],
                 report: Report, http: HttpClient, stripe: StripeReader | None) -> None:
        self.params = params
        self.services = list(services)
        self.checks = set(checks)
        self.report = report
        self.http = http
        self.stripe = stripe
        self.customer_id: str | None = None
        self.customer_error = ""
        self.payments: list[SmokePayment] = []
        self.invoices: list[dict[str, t.Any]] = []

    # ----- the run

    def run(self) -> None:
        if {"payment", "invoice"} & self.checks:
            self.create_customer()
        if "payment" in self.checks:
            try:
                self.make_payments()
                if "webhooks" in self.checks:
                    self.wait_for_webhooks()
            finally:
                self.refund_all()
        if "invoice" in self.checks:
            for index, service in enumerate(self.services):
                self.invoice(index, service)
        if "email" in self.checks:
            self.check_receipts()

    def reader(self) -> StripeReader:
        """The Stripe reader (the options require stripe_api_key for every check that uses it)."""
        if self.stripe is None:
            raise CheckFailed("no stripe_api_key: Stripe cannot be asked")
        return self.stripe

    @property
    def latencies(self) -> list[float]:
        return [p.seconds for p in self.payments if p.seconds is not None]

    @property
    def created_anything(self) -> bool:
        return bool(self.customer_id or any(p.payment_id for p in self.payments) or self.invoices)

    def _skip_unmade(self, name: str, payment: SmokePayment) -> bool:
        """Skip ``name`` for a payment that was not made (the payment check says why); True when skipped."""
        if payment.made:
            return False
        self.report.outcome(name, payment.service.name).skip(f"{payment.label} was not made")
        return True

    # ----- customer and payments

    def create_customer(self) -> None:
        service = self.services[0]
        body = {"email": self.params["customer_email"], "name": f"Smoke test {self.params['run_id']}"}
        try:
            response = service.call("POST", "/v1/customers", "api", json_body=body)
            data = expect_status(response, 201, what="POST /v1/customers").json_object()
            if not str(data.get("id") or "").startswith("cus_"):
                raise CheckFailed(f"POST /v1/customers answered 201 without a cus_ id ({data.get('id')!r})")
            self.customer_id = data["id"]
        except (CheckFailed, HttpFailure) as exc:
            self.customer_error = f"no customer for the run: {exc}"

    def make_payments(self) -> None:
        params = self.params
        for n in range(1, params["payment_count"] + 1):
            service = self.services[(n - 1) % len(self.services)]
            body = {"amount": params["payment_amount"], "currency": params["currency"],
                    "payment_method": params["payment_method"], "customer_id": self.customer_id,
                    "description": f"smoke test {params['run_id']} payment {n}"}
            payment = SmokePayment(n, service, payment_key(params["run_id"], n), body)
            self.payments.append(payment)
            outcome = self.report.outcome("payment", service.name)
            with outcome.guard(f"payment {n}: "):
                if self.customer_id is None:
                    raise CheckFailed(self.customer_error)
                self.post_payment(payment, outcome)
            if payment.payment_id or payment.lost:
                if "idempotency" in self.checks or payment.lost:
                    self.replay(payment)
            for name, check in (("stripe_record", self.stripe_record), ("service_record", self.service_record)):
                if name in self.checks and not self._skip_unmade(name, payment):
                    with self.report.outcome(name, service.name).guard(f"{payment.label}: "):
                        check(payment)

    def post_payment(self, payment: SmokePayment, outcome: Outcome) -> None:
        """The payment POST: never sent twice here (the replay is the idempotency check's business)."""
        try:
            response = payment.service.call("POST", "/v1/payments", "api", json_body=payment.body,
                                            headers={"Idempotency-Key": payment.idempotency_key})
        except HttpFailure:
            payment.lost = True
            raise
        data = response.json_object()
        if response.status == 402:
            error = response.error() or {}
            payment.status = "failed"
            payment.payment_id = error.get("payment_id") if isinstance(error.get("payment_id"), str) else None
            raise CheckFailed(f"declined: {response.describe()} (decline_code {error.get('decline_code')})")
        if response.status == 200:
            payment.adopt(data)
            raise CheckFailed(f"POST /v1/payments answered 200 with {payment.payment_id}: the key "
                              f"{payment.idempotency_key} was used before (use a new run_id)")
        if response.status != 201:
            retry_after = response.header("Retry-After")
            after = f" (Retry-After {retry_after})" if retry_after else ""
            raise CheckFailed(f"POST /v1/payments answered {response.describe()}{after}")
        payment.adopt(data)
        payment.seconds = response.seconds
        amount, currency = payment.body["amount"], payment.body["currency"]
        problems = _mismatches(data, {"status": "succeeded", "amount": amount, "currency": currency,
                                      "customer_id": payment.body["customer_id"]})
        if not str(payment.payment_id or "").startswith("pay_"):
            problems.append(f"id {payment.payment_id!r} (expected pay_...)")
        if not str(payment.payment_intent or "").startswith("pi_"):
            problems.append(f"stripe_payment_intent_id {payment.payment_intent!r} (expected pi_...)")
        if problems:
            raise CheckFailed(f"POST /v1/payments answered 201 with {', '.join(problems)}")
        outcome.ok(f"payment {payment.n}: {payment.payment_id} succeeded in {payment.seconds} s")

    def replay(self, payment: SmokePayment) -> None:
        """The same POST with the same key must answer 200 with the same payment. After a lost first POST this is
        also how the run learns whether that POST made a payment (which must then be refunded)."""
        outcome = self.report.outcome("idempotency", payment.service.name)
        if "idempotency" not in self.checks:
            outcome = Outcome("idempotency", payment.service.name)  # discovery only: not reported as a check
        with outcome.guard(f"payment {payment.n}: "):
            response = payment.service.call("POST", "/v1/payments", "api", json_body=payment.body,
                                            headers={"Idempotency-Key": payment.idempotency_key})
            data = response.json_object()
            if payment.lost and response.status in (200, 201):
                payment.adopt(data)
                made = "made it" if response.status == 200 else "did not: the replay made it"
                outcome.ok(f"payment {payment.n}: the first POST got no answer and {made} ({payment.payment_id})")
                return
            if response.status == 201 and data.get("id") and data.get("id") != payment.payment_id:
                duplicate = SmokePayment(payment.n, payment.service, payment.idempotency_key, payment.body,
                                         duplicate_of=payment.n)
                duplicate.adopt(data)
                self.payments.append(duplicate)
                raise CheckFailed(f"the same Idempotency-Key made a second payment {duplicate.payment_id} (201)")
            expect_status(response, 200, what=f"the replay of {payment.payment_id}")
            problems = _mismatches(data, {"id": payment.payment_id, "stripe_payment_intent_id": payment.payment_intent,
                                          "amount": payment.body["amount"]})
            if problems:
                raise CheckFailed(f"the replay answered 200 with {', '.join(problems)}")
            outcome.ok(f"payment {payment.n}: replay 200 with {payment.payment_id}")

    def stripe_record(self, payment: SmokePayment) -> None:
        intent = self.reader().payment_intent(str(payment.payment_intent))
        payment.charge = _object_id(intent.get("latest_charge"))
        metadata = intent.get("metadata") if isinstance(intent.get("metadata"), dict) else {}
        problems = _mismatches(intent, {"status": "succeeded", "amount": payment.body["amount"],
                                        "currency": payment.body["currency"]})
        problems += _mismatches(metadata, {"payment_id": payment.payment_id})
        if problems:
            raise CheckFailed(f"PaymentIntent {payment.payment_intent} at Stripe has {', '.join(problems)}")
        self.report.outcome("stripe_record", payment.service.name).ok(f"{payment.payment_intent} succeeded at Stripe")

    def service_record(self, payment: SmokePayment) -> None:
        path = f"/v1/payments/{quote(str(payment.payment_id), safe='')}"
        data = expect_status(payment.service.get(path), 200).json_object()
        problems = _mismatches(data, {"id": payment.payment_id, "stripe_payment_intent_id": payment.payment_intent,
                                      "amount": payment.body["amount"], "currency": payment.body["currency"],
                                      "customer_id": payment.body["customer_id"], "status": "succeeded"})
        if problems:
            raise CheckFailed(f"GET {path} answered {', '.join(problems)}")
        if isinstance(data.get("webhook_events"), list):
            payment.events = [str(e) for e in data["webhook_events"]]
        self.report.outcome("service_record", payment.service.name).ok(f"{payment.payment_id} matches")

    # ----- webhooks

    def wait_for_webhooks(self) -> None:
        """Poll each payment until the service lists payment_intent.succeeded for it, up to wait_timeout in all."""
        wait = self.params["wait_timeout"]
        started = time.monotonic()
        pending = [p for p in self.payments if not self._skip_unmade("webhooks", p)]
        errors: dict[int, str] = {}
        while True:
            for payment in [p for p in pending if SUCCEEDED_EVENT not in p.events]:
                try:
                    response = payment.service.get(f"/v1/payments/{quote(str(payment.payment_id), safe='')}")
                except HttpFailure as exc:
                    errors[id(payment)] = str(exc)
                    continue
                events = response.json_object().get("webhook_events")
                if response.status == 200 and isinstance(events, list):
                    payment.events = [str(e) for e in events]
                    errors.pop(id(payment), None)
                else:
                    errors[id(payment)] = f"GET /v1/payments/{payment.payment_id} answered {response.describe()}"
            if all(SUCCEEDED_EVENT in p.events for p in pending) or time.monotonic() - started >= wait:
                break
            time.sleep(POLL_INTERVAL)
        seconds = time.monotonic() - started
        for payment in pending:
            outcome = self.report.outcome("webhooks", payment.service.name)
            outcome.seconds = seconds
            if SUCCEEDED_EVENT in payment.events:
                outcome.ok(f"{payment.payment_id}: {', '.join(payment.events)}")
            else:
                seen = errors.get(id(payment)) or f"events: {', '.join(payment.events) or 'none'}"
                outcome.fail(f"{payment.label}: no {SUCCEEDED_EVENT} within {wait:g} s ({seen})")

    # ----- refunds

    def refund_all(self) -> None:
        """Refund every payment the run made, whatever else failed: smoke payments must never keep money."""
        for payment in self.payments:
            if not payment.made:
                continue
            with self.report.outcome("refund", payment.service.name).guard(f"{payment.label}: "):
                self.refund(payment)

    def _post_refund(self, payment: SmokePayment) -> HttpResponse:
        path = f"/v1/payments/{quote(str(payment.payment_id), safe='')}/refunds"
        headers = {"Idempotency-Key": refund_key(self.params["run_id"], payment.n, bool(payment.duplicate_of))}
        for attempt in range(1, REFUND_ATTEMPTS + 1):
            try:
                response = payment.service.call("POST", path, "api", headers=headers, retry=True)
            except HttpFailure as exc:
                raise CheckFailed(f"NOT refunded: {exc}") from None
            if response.status != 503 or attempt == REFUND_ATTEMPTS:
                return response
            retry_after = response.header("Retry-After") or "1"
            time.sleep(min(MAX_RETRY_AFTER, float(retry_after)) if retry_after.isdigit() else 1.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def refund(self, payment: SmokePayment) -> None:
        response = self._post_refund(payment)
        if response.status not in (200, 201):
            raise CheckFailed(f"NOT refunded: POST {response.path} answered {response.describe()}")
        data = response.json_object()
        payment.refund_id = data.get("id")
        payment.stripe_refund_id = data.get("stripe_refund_id")
        payment.refund_status = data.get("status")
        payment.payment_status = data.get("payment_status")
        problems = _mismatches(data, {"payment_status": "refunded", "amount": payment.body["amount"]})
        if payment.refund_status not in ("succeeded", "pending"):
            problems.append(f"status {payment.refund_status!r}")
        if problems:
            raise CheckFailed(f"the refund {payment.refund_id} answered {', '.join(problems)}")
        self._refund_at_stripe(payment)
        self.report.outcome("refund", payment.service.name).ok(f"{payment.payment_id} refunded ({payment.refund_id})")

    def _refund_at_stripe(self, payment: SmokePayment) -> None:
        """Stripe's refund succeeded (a pending one is re-read up to wait_timeout) and its charge reads refunded."""
        stripe = self.reader()
        if not payment.stripe_refund_id:
            raise CheckFailed(f"the refund {payment.refund_id} names no stripe_refund_id")
        deadline = time.monotonic() + self.params["wait_timeout"]
        refund = stripe.refund(payment.stripe_refund_id)
        while refund.get("status") == "pending" and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
            refund = stripe.refund(payment.stripe_refund_id)
        problems = _mismatches(refund, {"status": "succeeded", "amount": payment.body["amount"]})
        if refund.get("payment_intent") and refund.get("payment_intent") != payment.payment_intent:
            problems.append(f"payment_intent {refund.get('payment_intent')!r} (expected {payment.payment_intent!r})")
        if problems:
            raise CheckFailed(f"refund {payment.stripe_refund_id} at Stripe has {', '.join(problems)}")
        charge_id = _object_id(refund.get("charge")) or payment.charge
        if not charge_id:
            raise CheckFailed(f"refund {payment.stripe_refund_id} at Stripe names no charge")
        charge = stripe.charge(charge_id)
        if charge.get("refunded") is not True or charge.get("amount_refunded") != charge.get("amount"):
            raise CheckFailed(f"charge {charge_id} at Stripe reads refunded={charge.get('refunded')}, "
                              f"amount_refunded={charge.get('amount_refunded')} of {charge.get('amount')}")

    # ----- invoices

    def invoice(self, index: int, service: ServiceTarget) -> None:
        outcome = self.report.outcome("invoice", service.name)
        with outcome.guard():
            if self.customer_id is None:
                raise CheckFailed(self.customer_error)
            params = self.params
            body = {"customer_id": self.customer_id, "amount": params["payment_amount"], "currency": params["currency"],
                    "description": f"smoke test {params['run_id']} invoice {index + 1}"}
            response = service.call("POST", "/v1/invoices", "api", json_body=body,
                                    headers={"Idempotency-Key": invoice_key(params["run_id"], index)})
            data = expect_status(response, 201).json_object()
            invoice_id = data.get("invoice_id")
            record = {"target": service.name, "invoice_id": invoice_id, "number": data.get("number"),
                      "status": data.get("status"), "amount_due": data.get("amount_due")}
            if isinstance(invoice_id, str) and invoice_id:
                self.invoices.append(record)
            problems = _mismatches(data, {"amount_due": params["payment_amount"]})
            if not str(invoice_id or "").startswith("in_"):
                problems.append(f"invoice_id {invoice_id!r} (expected in_...)")
            if problems:
                raise CheckFailed(f"POST /v1/invoices answered 201 with {', '.join(problems)}")
            found = self.reader().invoice(str(invoice_id))
            wanted = {"amount_due": params["payment_amount"], "currency": params["currency"]}
            if data.get("stripe_customer_id"):
                wanted["customer"] = data["stripe_customer_id"]
            problems = _mismatches(dict(found, customer=_object_id(found.get("customer"))), wanted)
            if problems:
                raise CheckFailed(f"invoice {invoice_id} at Stripe has {', '.join(problems)}")
            outcome.ok(f"{invoice_id} ({data.get('number')}, {data.get('status')}) found at Stripe")

    # ----- receipts

    def _receipt(self, payment: SmokePayment) -> tuple[bool, str]:
        """(found, what was seen) for one payment's receipt in the mailbox."""
        query = quote(f"X-Payment-Id:{payment.payment_id}", safe=":")
        url = join_url(self.params["mailbox_url"], f"/messages?header={query}")
        try:
            response = self.http.request("GET", url, retry=True)
        except HttpFailure as exc:
            return False, str(exc)
        messages = response.json_object().get("messages")
        if response.status != 200 or not isinstance(messages, list):
            return False, f"the mailbox answered {response.describe()} to GET /messages"
        email = self.params["customer_email"].lower()
        for message in messages:
            headers = {str(k).lower(): v for k, v in ((message or {}).get("headers") or {}).items()}
            recipients = [str(r).lower() for r in (message or {}).get("to") or []]
            names_it = str(headers.get("x-payment-id", "")).strip() == payment.payment_id
            if names_it and any(email in r for r in recipients):
                return True, f"{payment.payment_id}: receipt {message.get('message_id')} to customer_email"
        if messages:
            return False, f"{len(messages)} message(s) with X-Payment-Id {payment.payment_id}, none to customer_email"
        return False, "no message with its X-Payment-Id"

    def check_receipts(self) -> None:
        """A receipt per payment in the mailbox, waiting up to wait_timeout in all."""
        if not self.params.get("mailbox_url"):
            self.report.skip_everywhere("email", "no mailbox_url: the receipts cannot be read")
            return
        wait = self.params["wait_timeout"]
        started = time.monotonic()
        pending = [p for p in self.payments if not self._skip_unmade("email", p)]
        seen: dict[int, tuple[bool, str]] = {}
        while True:
            for payment in pending:
                if not seen.get(id(payment), (False, ""))[0]:
                    seen[id(payment)] = self._receipt(payment)
            if all(seen[id(p)][0] for p in pending) or time.monotonic() - started >= wait:
                break
            time.sleep(POLL_INTERVAL)
        seconds = time.monotonic() - started
        for payment in pending:
            outcome = self.report.outcome("email", payment.service.name)
            outcome.seconds = seconds
            found, text = seen[id(payment)]
            if found:
                outcome.ok(text)
            else:
                outcome.fail(f"{payment.label}: no receipt within {wait:g} s ({text})")
