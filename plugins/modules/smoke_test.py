#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: smoke_test
short_description: Smoke-test a running payment service through its own HTTP API
version_added: 0.2.0
description:
  - Runs fixed checks against one or more O(targets) of a payment service (an environment's frontend URL, or each app
    host's instance of one colour before that colour gets traffic), records every outcome, and fails naming each failed
    check, its target and what was seen.
  - "Per target: V(contract) (C(/healthz), C(/healthz/lb), C(/readyz), C(/version), C(/metrics) and
    O(expected_version)), V(authentication) (C(401) with C(WWW-Authenticate) without a key or with an invalid one),
    V(admin_role) (C(/admin/stats): C(403) with the API key, C(200) with the admin key), V(rate_limit) (C(429) with
    C(Retry-After) for the smoke key within O(rate_limit_attempts) requests), V(cors) (preflights from
    O(cors_foreign_origin) and O(cors_allowed_origin)) and V(security_headers) (every answer the target gave during the
    run has C(X-Content-Type-Options: nosniff), HTML answers a C(Content-Security-Policy), and answers over https
    C(Strict-Transport-Security))."
  - "Then O(payment_count) small payments, round-robin over the targets, for a customer created for the run, each with
    the idempotency key C(smoke-RUN_ID-N): V(payment) (C(201), C(succeeded)), V(idempotency) (the same request again
    answers C(200) with the same payment), V(stripe_record) (the PaymentIntent at Stripe: C(succeeded), the amount,
    C(metadata.payment_id) is the service's id), V(service_record) (C(GET /v1/payments/ID) matches), V(webhooks) (the
    service lists C(payment_intent.succeeded) for it, waiting up to O(wait_timeout)), V(refund) (refunded through the
    service: C(refunded), and Stripe's refund C(succeeded) and its charge refunded), V(invoice) (one per target, found
    at Stripe) and V(email) (a receipt per payment in the mailbox at O(mailbox_url), waiting up to O(wait_timeout))."
  - Every payment the run made is refunded, whatever else failed, and the failure message says which ones were not.
  - The 95th percentile (nearest-rank) of the payment POSTs answered C(201) must stay under O(p95_threshold); it is
    recorded as the check C(latency) on C(all targets).
  - Standard library HTTP only, one connection per request, no redirect followed, no proxy. Payment POSTs are never
    retried (after a POST that got no answer, the idempotent replay tells whether the payment was made); GETs are
    retried after connection errors; a refund, which carries its own idempotency key, after a connection error or a
    C(503).
  - Stripe is only read (C(GET)), through its REST API, so the runner needs no Stripe SDK.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Validates the options, runs the checks that create nothing (V(contract), V(authentication), V(admin_role),
      V(rate_limit), V(cors), V(security_headers)) and reports the payments and invoices it would make in RV(plan).
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  targets:
    description:
      - The base URLs to test, for example the environment's frontend, or C(http://HOST:PORT) of one colour on every app
        host.
      - Each URL is C(http://) or C(https://), without credentials, query or fragment; a path prefix is kept. Names and
        URLs are unique.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: What results and messages call the target, for example C(app1-green).
        type: str
        required: true
      url:
        description: The target's base URL.
        type: str
        required: true
  run_id:
    description:
      - "A unique id of this run: up to 150 letters, digits and C(. _ : @ + -). The idempotency keys are made from it
        (C(smoke-RUN_ID-N) for payment N), so the same O(run_id) never charges twice; use a new one for each run."
    type: str
    required: true
  api_key:
    description:
      - The service's API key (the C(/v1/...) role). Required by V(admin_role), V(payment) and V(invoice).
    type: str
  admin_key:
    description:
      - The service's admin key. Required by V(admin_role). Must differ from O(api_key).
    type: str
  smoke_key:
    description:
      - The service's smoke key (the API role with its own small per-minute limit). Required by V(rate_limit).
    type: str
  stripe_api_key:
    description:
      - The Stripe secret or restricted key of the service's account, to read the payments, refunds and invoices at
        Stripe. Required by V(stripe_record), V(refund) and V(invoice) (so whenever payments are made).
      - When not given, the E(STRIPE_SECRET_KEY) environment variable of the module is used.
      - With a live key, test payment methods (C(pm_card_...)) are refused before anything is sent.
    type: str
  stripe_api_base:
    description:
      - Base URL of the Stripe API. Change it only to reach a Stripe-compatible test server.
    type: str
    default: https://api.stripe.com
  expected_version:
    description:
      - The release every target must answer on C(/version). Any version when not given.
    type: str
  payment_count:
    description:
      - How many payments in all, spread round-robin over the targets; from the number of targets (one each) to V(100).
    type: int
    default: 10
  payment_amount:
    description:
      - The amount of each payment and invoice, in the currency's smallest unit (cents for C(usd)).
    type: int
    default: 50
  payment_amount_cap:
    description:
      - The largest O(payment_amount) accepted. A larger one fails before anything is sent. With a live key the smoke
        payments are real money (refunded at once), so keep them small.
    type: int
    default: 100
  currency:
    description:
      - Three-letter ISO currency code, lower case.
    type: str
    default: usd
  payment_method:
    description:
      - The PaymentMethod the payments are made with. The default is Stripe's test card; in live mode a real card kept
        for tests.
    type: str
    default: pm_card_visa
  customer_email:
    description:
      - The email of the customer created for the run; the receipts go there.
    type: str
    default: smoke-test@example.com
  p95_threshold:
    description:
      - Seconds the 95th percentile of the payment POSTs must stay under (above V(0), at most V(60)).
    type: float
    default: 3.0
  cors_allowed_origin:
    description:
      - An origin the service allows (a preflight from it must be answered with C(Access-Control-Allow-Origin) naming
        it). When not given, only the foreign origin is checked and the result says so.
    type: str
  cors_foreign_origin:
    description:
      - An origin the service must not allow (its preflight must get no C(Access-Control-Allow-Origin)).
    type: str
    default: https://smoke-test.invalid
  rate_limit_attempts:
    description:
      - The smoke key must be answered C(429) within this many requests (V(1) to V(1000)).
    type: int
    default: 30
  mailbox_url:
    description:
      - Base URL of a mailbox with an HTTP JSON API (C(GET MAILBOX_URL/messages?header=X-Payment-Id:ID)) where the
        receipts can be found. When not given, V(email) is reported as skipped, with the reason.
    type: str
  wait_timeout:
    description:
      - Seconds to wait, in all, for the webhooks and for the receipts (and for a C(pending) refund at Stripe). V(0) to
        V(600).
    type: float
    default: 20.0
  request_timeout:
    description:
      - Seconds to wait for each HTTP request.
    type: float
    default: 10.0
  checks:
    description:
      - Run only these checks; the others are reported as skipped. All when not given.
      - The checks that follow the payments (V(idempotency), V(stripe_record), V(service_record), V(webhooks),
        V(refund), V(email)) need V(payment); V(refund) always runs when V(payment) does.
    type: list
    elements: str
    choices: [contract, authentication, admin_role, rate_limit, cors, security_headers, payment, idempotency,
              stripe_record, service_record, webhooks, refund, invoice, email]
notes:
  - Every option is checked before any request is sent; all problems are reported together.
  - The keys never appear in results or messages (they are replaced by their option names), nor anything shaped like a
    Stripe key or a card number.
  - Invoices are finalized at Stripe but not paid; nothing is charged for them.
  - Run it where the targets are reachable as the load balancer reaches them (C(delegate_to)).
seealso:
  - module: payments.deploy.payment_probe
"""

EXAMPLES = r"""
- name: Smoke-test the green colour on every app host before it gets traffic
  payments.deploy.smoke_test:
    targets:
      - {name: app1-green, url: "http://10.0.1.11:8081"}
      - {name: app2-green, url: "http://10.0.1.12:8081"}
    run_id: "deploy-{{ deploy_id }}"
    expected_version: 1.2.0
    api_key: "{{ vault_payments_api_key }}"
    admin_key: "{{ vault_payments_admin_key }}"
    smoke_key: "{{ vault_payments_smoke_key }}"
    stripe_api_key: "{{ vault_stripe_secret_key }}"
    payment_method: "{{ payments_probe_payment_method }}"
    cors_allowed_origin: https://shop.example.com
    mailbox_url: https://mailbox.internal.example.com
  delegate_to: "{{ groups['loadbalancers'] | first }}"
  run_once: true
  register: smoke

- name: Show the latency
  ansible.builtin.debug:
    msg: "{{ smoke.latency.count }} payments, p95 {{ smoke.latency.p95 }} s"

- name: Only the checks that create nothing, through the frontend
  payments.deploy.smoke_test:
    targets: [{name: production, url: "https://pay.example.com"}]
    run_id: "check-{{ now(utc=true).strftime('%Y%m%dT%H%M%S') }}"
    api_key: "{{ vault_payments_api_key }}"
    admin_key: "{{ vault_payments_admin_key }}"
    smoke_key: "{{ vault_payments_smoke_key }}"
    checks: [contract, authentication, admin_role, rate_limit, cors, security_headers]
  delegate_to: localhost
"""

RETURN = r"""
checks:
  description:
    - One entry per check and target, in check order then target order, plus C(latency) on C(all targets) when payments
      were made. C(passed) is V(true) or V(false); a check that did not run has C(skipped) (the reason) instead.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "authentication", "target": "app1-green", "passed": false, "seconds": 0.012,
            "detail": "POST /v1/payments without a key answered 400 idempotency_key_required, not 401"},
           {"name": "email", "target": "app1-green", "skipped": "no mailbox_url: the receipts cannot be read",
            "seconds": 0.0, "detail": "no mailbox_url: the receipts cannot be read"}]
failed_checks:
  description:
    - The names of the failed checks (not C(failed), which Ansible keeps for the task's own verdict).
  returned: always
  type: list
  elements: str
  sample: ["authentication"]
payments:
  description:
    - Every payment attempted, in order (C(payment_id) is V(null) when none was made), with C(target), C(n),
      C(idempotency_key), C(payment_id), C(payment_intent), C(status), C(seconds) (of the POST), C(webhook_events),
      C(refund_id), C(stripe_refund_id), C(refund_status), C(payment_status) and C(refunded). A second payment made by a
      replay of the same key is listed with C(duplicate_of).
  returned: always
  type: list
  elements: dict
  sample: [{"target": "app1-green", "n": 1, "payment_id": "pay_4f0c2a9e1b7d3c5a6e8f0b1d",
            "payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "refund_id": "ref_8d2e4f6a0b1c3d5e7f9a2b4c",
            "seconds": 0.41, "refunded": true}]
invoices:
  description: The invoices made, one per target, with C(target), C(invoice_id), C(number), C(status) and C(amount_due).
  returned: always
  type: list
  elements: dict
customer_id:
  description: The customer created for the run.
  returned: always
  type: str
  sample: cus_a1B2c3D4e5F6g7
latency:
  description:
    - Nearest-rank C(p50), C(p95) and C(max) in seconds of the payment POSTs answered C(201), their C(count), the
      C(threshold) and the C(method).
  returned: always
  type: dict
  sample: {"count": 10, "p50": 0.38, "p95": 0.52, "max": 0.52, "threshold": 3.0, "method": "nearest-rank"}
duration:
  description: Seconds the smoke test took.
  returned: always
  type: float
  sample: 7.4
targets:
  description:
    - The targets with what their C(/version) answered (C(name), C(url), C(service), C(version), C(instance),
      C(colour)).
  returned: always
  type: list
  elements: dict
run_id:
  description: The run id.
  returned: always
  type: str
plan:
  description: In check mode, the C(checks) that would run and the C(payments) and C(invoices) that would be made, with
               their idempotency keys.
  returned: check mode
  type: dict
changed:
  description: Whether the run created anything (the customer, payments, invoices); never in check mode.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils._smoke_options import argument_spec, validate
from ansible_collections.payments.deploy.plugins.module_utils._smoke_runner import SmokeTest, redactor_for


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    problems = validate(module.params)
    if problems:
        redactor = redactor_for(module.params)
        module.fail_json(msg=redactor.text("invalid options, nothing was sent: " + "; ".join(problems)),
                         problems=[redactor.text(p) for p in problems], checks=[], failed_checks=[], payments=[],
                         changed=False)
    result, failure = SmokeTest(module.params, module.check_mode).run()
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
