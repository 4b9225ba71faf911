#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: payment_probe
short_description: Prove that payments work end to end with small real payments that are refunded
version_added: 0.1.0
description:
  - Makes O(count) small payments through Stripe and follows each one through. PaymentIntent created and confirmed
    (status C(succeeded)), read back by id, found in the list of PaymentIntents, optionally found by the service itself
    (O(service_check)), refunded (refund C(succeeded), charge C(refunded)).
  - Every write carries an idempotency key derived from O(run_id) (C(RUN_ID:N:create), C(RUN_ID:N:refund)), so a re-run with the
    same O(run_id) never charges again; Stripe answers from its idempotency cache and the probe reports C(replayed=true).
  - Fails when a payment is declined (with Stripe's code, decline code and request id), when any check of a probe fails, when a refund
    does not succeed, or when the 95th percentile of the create+confirm latency exceeds O(p95_threshold).
    A probe whose payment succeeded is refunded before the module fails.
  - Percentiles use the nearest-rank method (the smallest latency with at least P% of the probes at or below it), over the probes
    that were not replayed.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.stripe
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Checks the key with a read-only call (C(GET /v1/balance)) and reports the probes it would make; charges nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  run_id:
    description:
      - Identifies this probe run, for example the deploy id. The idempotency keys are derived from it, and it is stored in the
        metadata C(probe_run_id) of each PaymentIntent.
      - Reuse it to re-run the same probes without charging again; use a new one for new payments.
    type: str
    required: true
  count:
    description:
      - How many payments to make, one after the other. Between V(1) and V(20).
    type: int
    default: 1
  amount:
    description:
      - The amount of each payment in the currency's smallest unit (cents for C(usd)). Between V(50) and V(10000).
    type: int
    default: 50
  currency:
    description:
      - Three-letter ISO currency code, lower case.
    type: str
    default: usd
  payment_method:
    description:
      - The PaymentMethod to charge. The default is Stripe's test card; test payment methods (C(pm_card_...)) work only with test keys.
    type: str
    default: pm_card_visa
  refund:
    description:
      - Refund each payment in full after checking it.
    type: bool
    default: true
  refund_timeout:
    description:
      - Seconds to wait for a C(pending) refund to become C(succeeded), re-reading it every second.
    type: float
    default: 10.0
  description:
    description:
      - The description of each PaymentIntent.
    type: str
    default: payments.deploy payment probe
  metadata:
    description:
      - Extra metadata for each PaymentIntent and refund. C(probe_run_id) and C(probe_n) are set by the module.
    type: dict
  p95_threshold:
    description:
      - The highest acceptable 95th percentile, in seconds, of the create+confirm step (checklist item
        "Payment processing time < 3 seconds (95th percentile)").
    type: float
    default: 3.0
  service_check:
    description:
      - Ask the payment service for each payment after it succeeded. A C(GET) of O(service_check.url) must answer
        O(service_check.expect_status) with a body that contains the PaymentIntent id.
    type: dict
    suboptions:
      url:
        description:
          - The URL, with C({id}) where the PaymentIntent id goes, for example C(http://127.0.0.1:8080/v1/payments/by-intent/{id}).
        type: str
        required: true
      headers:
        description:
          - Request headers, for example C(Authorization). Never shown.
        type: dict
      timeout:
        description:
          - Seconds to wait for each request.
        type: float
        default: 5.0
      retries:
        description:
          - How many more times to ask when the answer is not yet right (the service may learn of the payment by webhook, a moment later).
        type: int
        default: 5
      retry_delay:
        description:
          - Seconds between two requests.
        type: float
        default: 1.0
      expect_status:
        description:
          - The HTTP status that means the service knows the payment.
        type: int
        default: 200
      validate_certs:
        description:
          - Verify the service's TLS certificate.
        type: bool
        default: true
seealso:
  - module: payments.deploy.stripe_key_info
  - name: Stripe testing
    description: Test payment methods such as C(pm_card_visa) and the declining ones.
    link: https://docs.stripe.com/testing
"""

EXAMPLES = r"""
- name: Three refunded test payments, found by the service too
  payments.deploy.payment_probe:
    run_id: "deploy-{{ deploy_id }}"
    count: 3
    service_check:
      url: "https://pay.example.com/v1/payments/by-intent/{id}"
      headers:
        Authorization: "Bearer {{ vault_service_api_key }}"
  environment:
    STRIPE_SECRET_KEY: "{{ vault_stripe_secret_key }}"
  register: probe

- name: Show the latency
  ansible.builtin.debug:
    msg: "p95 {{ probe.latency.p95 }}s over {{ probe.latency.count }} payments"
"""

RETURN = r"""
run_id:
  description: The probe run id.
  returned: always
  type: str
  sample: deploy-20260101-1
probes:
  description:
    - One entry per probe, in order, up to the one that failed. In check mode the planned probes (C(status=planned)).
  returned: always
  type: list
  elements: dict
  contains:
    n:
      description: The probe's number, from 1.
      type: int
    idempotency_keys:
      description: The idempotency keys of its writes (C(create), C(refund)).
      type: dict
    payment_intent:
      description: The PaymentIntent id.
      type: str
      sample: pi_3MtwBwLkdIwHu7ix28a3tqPa
    status:
      description: The PaymentIntent's status after create+confirm (C(succeeded) when the probe passed).
      type: str
    charge:
      description: The id of the charge.
      type: str
    amount_received:
      description: What the payment collected.
      type: int
    refund:
      description: The refund id; V(null) without O(refund).
      type: str
    refund_status:
      description: The refund's final status.
      type: str
    charge_refunded:
      description: Whether the charge reads as fully refunded afterwards.
      type: bool
    replayed:
      description: Per write step, whether Stripe answered from its idempotency cache (nothing new happened).
      type: dict
      sample: {"create": false, "refund": false}
    latency:
      description: Seconds per step (C(create), C(retrieve), C(list), C(service), C(refund), C(charge)), retries included.
      type: dict
    list_pages:
      description: How many pages of the PaymentIntent list were read to find it.
      type: int
    service:
      description: The service check's final HTTP status and the number of requests.
      type: dict
    error:
      description: Why the probe failed; V(null) when it passed.
      type: str
latency:
  description:
    - Nearest-rank C(p50), C(p95) and C(max) in seconds of the create+confirm step over the probes not replayed, their C(count),
      the C(threshold) applied to C(p95), and the same figures per step in C(steps).
  returned: success
  type: dict
  sample: {"count": 3, "p50": 0.41, "p95": 0.52, "max": 0.52, "threshold": 3.0, "method": "nearest-rank",
           "steps": {"create": {"count": 3, "p50": 0.41, "p95": 0.52, "max": 0.52}}}
charged_total:
  description: The sum of the amounts the probes' payments collected (replayed ones included), in the smallest currency unit.
  returned: always
  type: int
  sample: 150
refunded_total:
  description: The sum of the probes' succeeded refunds.
  returned: always
  type: int
  sample: 150
fresh_probes:
  description: How many probes made a new payment in this run (not replayed).
  returned: always
  type: int
  sample: 3
livemode:
  description: In check mode, the C(livemode) of the key as Stripe reports it.
  returned: check mode
  type: bool
stripe_error:
  description: The Stripe error that made the module fail (type, code, decline_code, http_status, request_id, param, message).
  returned: failure
  type: dict
api_calls:
  description: The Stripe API calls made, in order (see the notes).
  returned: always
  type: list
  elements: dict
elapsed:
  description: Seconds the module took.
  returned: always
  type: float
  sample: 2.1
"""

import re
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.payments.deploy.plugins.module_utils._numbers import number_problems
from ansible_collections.payments.deploy.plugins.module_utils._stripe import (
    StripeError,
    StripeModule,
    describe_stripe_error,
    key_kind,
    latency_summary,
    stripe_argument_spec,
    to_plain,
)

RESERVED_METADATA = ("probe_run_id", "probe_n")
STEPS = ("create", "retrieve", "list", "service", "refund", "charge")
MAX_IDEMPOTENCY_KEY = 255
# An upper bound for every duration option: a typo such as 1e9 would otherwise hang the run.
MAX_SECONDS = 3600.0


class ProbeFailed(Exception):
    """A check of one probe failed; ``info`` is the Stripe error behind it, if any."""

    def __init__(self, message: str, info: dict[str, t.Any] | None = None) -> None:
        super().__init__(message)
        self.info = info


def validate(params: t.Mapping[str, t.Any]) -> list[str]:
    """Every problem with the module's own options, found before anything is sent."""
    problems = []
    run_id = params["run_id"] or ""
    if not run_id.strip() or any(c.isspace() for c in run_id):
        problems.append("run_id must be a non-empty word without whitespace")
    elif len(run_id) > MAX_IDEMPOTENCY_KEY - len(":20:refund"):
        problems.append(f"run_id must have at most {MAX_IDEMPOTENCY_KEY - len(':20:refund')} characters")
    if not 1 <= params["count"] <= 20:
        problems.append("count must be between 1 and 20")
    if not 50 <= params["amount"] <= 10000:
        problems.append("amount must be between 50 and 10000 (a small amount in the currency's smallest unit)")
    if not re.fullmatch(r"[a-z]{3}", params["currency"] or ""):
        problems.append(f"currency {params['currency']!r} must be a three-letter ISO code in lower case, such as usd")
    problems += number_problems(params, {
        "p95_threshold": {"maximum": MAX_SECONDS},
        "refund_timeout": {"maximum": MAX_SECONDS, "allow_minimum": True},
        "timeout": {"maximum": MAX_SECONDS},
    })
    reserved = sorted(set(params["metadata"] or {}) & set(RESERVED_METADATA))
    if reserved:
        problems.append(f"metadata keys {reserved} are set by the module")
    if key_kind(params.get("api_key") or "")[1] == "live" and (params["payment_method"] or "").startswith("pm_card_"):
        problems.append(f"payment_method {params['payment_method']} is a test payment method: it cannot be charged with a live key")
    check = params["service_check"]
    if check is not None:
        if "{id}" not in (check["url"] or ""):
            problems.append("service_check.url must contain {id} where the PaymentIntent id goes")
        if check["retries"] < 0:
            problems.append("service_check.retries must not be negative")
        problems += number_problems({f"service_check.{k}": v for k, v in check.items()}, {
            "service_check.timeout": {"maximum": MAX_SECONDS},
            "service_check.retry_delay": {"maximum": MAX_SECONDS, "allow_minimum": True},
        })
    return problems


def idempotency_keys(run_id: str, n: int) -> dict[str, str]:
    return {step: f"{run_id}:{n}:{step}" for step in ("create", "refund")}


class Probe:
    """One run of the module: the probes one after the other, then the latency gate."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.stripe = StripeModule(module, validate(module.params))
        self.v1 = self.stripe.api.v1
        self.probes: list[dict[str, t.Any]] = []

    def metadata(self, n: int) -> dict[str, str]:
        extra = {str(k): str(v) for k, v in (self.params["metadata"] or {}).items()}
        return dict(extra, probe_run_id=self.params["run_id"], probe_n=str(n))

    def timed(self, probe: dict[str, t.Any], step: str, func: t.Callable[[], t.Any]) -> t.Any:
        started = time.monotonic()
        try:
            return func()
        finally:
            probe["latency"][step] = round(time.monotonic() - started, 4)

    def stripe_step(self, probe: dict[str, t.Any], step: str, what: str, func: t.Callable[[], t.Any]) -> t.Any:
        """Run one API step, turning a Stripe error into ProbeFailed with its details."""
        try:
            return self.timed(probe, step, func)
        except StripeError as exc:
            info = self.stripe.error_info(exc)
            hint = ""
            if info["type"] == "idempotency_error":
                hint = f" (run_id {self.params['run_id']} was used before with other parameters: use a new run_id)"
            raise ProbeFailed(f"{what} failed{hint}: {describe_stripe_error(info)}", info) from exc

    # ----- the steps of one probe

    def create(self, probe: dict[str, t.Any]) -> t.Any:
        params = self.params
        create_params = {
            "amount": params["amount"], "currency": params["currency"], "confirm": True,
            "payment_method": params["payment_method"], "payment_method_types": ["card"],
            "description": params["description"], "metadata": self.metadata(probe["n"]),
        }
        options = {"idempotency_key": probe["idempotency_keys"]["create"]}
        try:
            intent = self.timed(probe, "create", lambda: self.v1.payment_intents.create(params=create_params, options=options))
        except StripeError as exc:
            info = self.stripe.error_info(exc)
            body = getattr(exc, "json_body", None) or {}
            intent_id = ((body.get("error") or {}).get("payment_intent") or {}).get("id") if isinstance(body, dict) else None
            probe["payment_intent"] = intent_id
            probe["replayed"]["create"] = self.stripe.api.last_call.get("replayed", False)
            verb = "was declined" if info["type"] == "card_error" else "failed"
            if info["type"] == "idempotency_error":
                verb = f"failed (run_id {params['run_id']} was used before with other parameters: use a new run_id)"
            raise ProbeFailed(f"the payment {verb}: {describe_stripe_error(info)}", info) from exc
        probe["replayed"]["create"] = self.stripe.api.last_call.get("replayed", False)
        data = to_plain(intent)
        probe.update(payment_intent=data.get("id"), status=data.get("status"), charge=data.get("latest_charge"),
                     amount_received=data.get("amount_received") or 0)
        if intent.status != "succeeded":
            raise ProbeFailed(f"PaymentIntent {intent.id} is {intent.status!r} after confirm, not 'succeeded'")
        return intent

    def check_retrieve(self, probe: dict[str, t.Any]) -> None:
        intent_id = probe["payment_intent"]
        intent = self.stripe_step(probe, "retrieve", f"reading PaymentIntent {intent_id}",
                                  lambda: self.v1.payment_intents.retrieve(intent_id))
        if intent.status != "succeeded" or intent.amount != self.params["amount"]:
            raise ProbeFailed(f"PaymentIntent {intent_id} reads back as status {intent.status!r}, amount {intent.amount}, "
                              f"not 'succeeded', {self.params['amount']}")

    def check_list(self, probe: dict[str, t.Any], created: int) -> None:
        intent_id = probe["payment_intent"]
        pages_before = len(self.stripe.api.calls)
        found = self.stripe_step(probe, "list", "listing PaymentIntents", lambda: self.stripe.api.list_all(
            self.v1.payment_intents, {"created": {"gte": created}}, max_pages=20, stop=lambda obj: obj.id == intent_id))
        probe["list_pages"] = len(self.stripe.api.calls) - pages_before
        if not found or found[-1].id != intent_id:
            raise ProbeFailed(f"PaymentIntent {intent_id} is missing from the list of PaymentIntents created since {created}")

    def check_service(self, probe: dict[str, t.Any]) -> None:
        check = self.params["service_check"]
        intent_id = probe["payment_intent"]
        url = check["url"].replace("{id}", intent_id)
        status: t.Any = None
        attempts = 0
        started = time.monotonic()
        for attempt in range(check["retries"] + 1):
            if attempt:
                time.sleep(check["retry_delay"])
            attempts += 1
            body = ""
            try:
                response = open_url(url, method="GET", headers=check["headers"] or {}, timeout=check["timeout"],
                                    validate_certs=check["validate_certs"], follow_redirects="none")
                status, body = response.status, response.read().decode("utf-8", errors="replace")
            # an HTTPError carries the status; anything else is a connection problem, retried like a wrong answer
            except Exception as exc:  # pylint: disable=broad-except
                status = getattr(exc, "code", None) or f"error: {type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if status == check["expect_status"] and intent_id in body:
                break
        probe["latency"]["service"] = round(time.monotonic() - started, 4)
        probe["service"] = {"status": status, "requests": attempts}
        if status != check["expect_status"] or intent_id not in body:
            found = "" if status != check["expect_status"] else " but the body does not mention the payment"
            raise ProbeFailed(f"the service does not know PaymentIntent {intent_id}: GET {check['url']} answered {status}{found} "
                              f"after {attempts} request(s)")

    def do_refund(self, probe: dict[str, t.Any]) -> None:
        intent_id = probe["payment_intent"]
        options = {"idempotency_key": probe["idempotency_keys"]["refund"]}
        params = {"payment_intent": intent_id, "metadata": self.metadata(probe["n"])}
        refund = self.stripe_step(probe, "refund", f"refunding PaymentIntent {intent_id}",
                                  lambda: self.v1.refunds.create(params=params, options=options))
        probe["replayed"]["refund"] = self.stripe.api.last_call.get("replayed", False)
        probe["refund"] = refund.id
        deadline = time.monotonic() + self.params["refund_timeout"]
        while refund.status == "pending" and time.monotonic() < deadline:
            time.sleep(1.0)
            refund = self.stripe_step(probe, "refund_wait", f"reading refund {refund.id}", lambda: self.v1.refunds.retrieve(probe["refund"]))
        probe["refund_status"] = refund.status
        if refund.status != "succeeded":
            raise ProbeFailed(f"refund {refund.id} of PaymentIntent {intent_id} is {refund.status!r}, not 'succeeded'")
        probe["refunded_amount"] = refund.amount
        if probe["charge"]:
            charge = self.stripe_step(probe, "charge", f"reading charge {probe['charge']}", lambda: self.v1.charges.retrieve(probe["charge"]))
            probe["charge_refunded"] = bool(charge.refunded) and charge.amount_refunded == charge.amount
            if not probe["charge_refunded"]:
                raise ProbeFailed(f"charge {charge.id} reads refunded={charge.refunded}, amount_refunded={charge.amount_refunded} "
                                  f"of {charge.amount} after refund {refund.id}")

    # ----- the run

    def run_one(self, n: int) -> None:
        probe: dict[str, t.Any] = {
            "n": n, "idempotency_keys": idempotency_keys(self.params["run_id"], n), "payment_intent": None, "status": None,
            "charge": None, "amount_received": 0, "refund": None, "refund_status": None, "refunded_amount": 0, "charge_refunded": None,
            "replayed": {"create": False, "refund": False}, "latency": {}, "list_pages": 0, "service": None, "error": None,
        }
        self.probes.append(probe)
        try:
            intent = self.create(probe)
        except ProbeFailed as exc:
            probe["error"] = str(exc)
            self.fail_probe(probe, exc)
        problem: ProbeFailed | None = None
        try:
            self.check_retrieve(probe)
            self.check_list(probe, intent.created)
            if self.params["service_check"] is not None:
                self.check_service(probe)
        except ProbeFailed as exc:
            problem = exc
        if self.params["refund"]:
            try:
                self.do_refund(probe)
            except ProbeFailed as exc:
                problem = problem or exc
                if exc is not problem:
                    probe["refund_error"] = str(exc)
        if problem is not None:
            probe["error"] = str(problem)
            self.fail_probe(probe, problem)

    def fail_probe(self, probe: dict[str, t.Any], exc: ProbeFailed) -> t.NoReturn:
        extra: dict[str, t.Any] = {}
        if exc.info is not None:
            extra["stripe_error"] = exc.info
        refund_note = ""
        if probe["status"] == "succeeded" and self.params["refund"]:
            refund_note = f"; refund {probe['refund']} {probe['refund_status']}" if probe["refund"] else "; NOT refunded"
        self.stripe.fail(f"payment probe {probe['n']} of {self.params['count']} (run {self.params['run_id']}): {exc}{refund_note}",
                         **extra, **self.totals())

    def totals(self) -> dict[str, t.Any]:
        return {
            "run_id": self.params["run_id"], "probes": self.probes,
            "charged_total": sum(p["amount_received"] for p in self.probes if p["status"] == "succeeded"),
            "refunded_total": sum(p["refunded_amount"] for p in self.probes if p["refund_status"] == "succeeded"),
            "fresh_probes": sum(1 for p in self.probes if p["payment_intent"] and not p["replayed"]["create"]),
        }

    def latency(self) -> dict[str, t.Any]:
        fresh = [p for p in self.probes if not p["replayed"]["create"]]
        steps = {step: latency_summary([p["latency"][step] for p in fresh if step in p["latency"]]) for step in STEPS}
        steps = {step: summary for step, summary in steps.items() if summary["count"]}
        return dict(steps.get("create", latency_summary([])), threshold=self.params["p95_threshold"], method="nearest-rank", steps=steps)

    def check_mode(self) -> t.NoReturn:
        try:
            livemode = bool(self.v1.balance.retrieve().livemode)
        except StripeError as exc:
            self.stripe.fail("checking the key with Stripe failed", exc, run_id=self.params["run_id"], probes=[])
        planned = [{"n": n, "idempotency_keys": idempotency_keys(self.params["run_id"], n), "status": "planned"}
                   for n in range(1, self.params["count"] + 1)]
        self.stripe.exit(changed=True, livemode=livemode, run_id=self.params["run_id"], probes=planned,
                         charged_total=0, refunded_total=0, fresh_probes=0)

    def run(self) -> t.NoReturn:
        if self.module.check_mode:
            self.check_mode()
        for n in range(1, self.params["count"] + 1):
            self.run_one(n)
        totals = self.totals()
        latency = self.latency()
        if latency["count"] == 0:
            self.module.warn(f"every probe of run {self.params['run_id']} was replayed from an earlier run: no latency was measured")
        elif latency["p95"] > self.params["p95_threshold"]:
            self.stripe.fail(f"payment latency p95 {latency['p95']:.3f}s over {latency['count']} payment(s) exceeds "
                             f"p95_threshold {self.params['p95_threshold']}s", latency=latency, **totals)
        self.stripe.exit(changed=totals["fresh_probes"] > 0 or any(not p["replayed"]["refund"] for p in self.probes if p["refund"]),
                         latency=latency, **totals)


def main() -> None:
    argument_spec = stripe_argument_spec()
    argument_spec.update(
        run_id={"type": "str", "required": True},
        count={"type": "int", "default": 1},
        amount={"type": "int", "default": 50},
        currency={"type": "str", "default": "usd"},
        payment_method={"type": "str", "default": "pm_card_visa"},
        refund={"type": "bool", "default": True},
        refund_timeout={"type": "float", "default": 10.0},
        description={"type": "str", "default": "payments.deploy payment probe"},
        metadata={"type": "dict"},
        p95_threshold={"type": "float", "default": 3.0},
        service_check={
            "type": "dict",
            "options": {
                "url": {"type": "str", "required": True},
                "headers": {"type": "dict", "no_log": True},
                "timeout": {"type": "float", "default": 5.0},
                "retries": {"type": "int", "default": 5},
                "retry_delay": {"type": "float", "default": 1.0},
                "expect_status": {"type": "int", "default": 200},
                "validate_certs": {"type": "bool", "default": True},
            },
        },
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    Probe(module).run()


if __name__ == "__main__":
    main()
