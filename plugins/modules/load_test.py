#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: load_test
short_description: Load-test a payment service at a fixed request rate, bounded in time and count
version_added: 0.5.0
description:
  - Sends HTTP requests at O(rate) requests per second to one or more O(targets) (for example each app host's instance
    of the colour about to get traffic) and judges the answers against thresholds. The targets take turns, and each
    gets the whole request O(mix).
  - "Open loop: request N is due N / O(rate) seconds after the start whatever the earlier ones did, so a slow service
    does not lower the offered rate. At most O(concurrency) requests are in flight; a request due while all of them
    still wait is not sent and counts as an error of the kind C(concurrency_limit)."
  - "It always stops by itself: no request is due after O(duration) seconds, there are at most O(max_requests), and
    each waits at most O(request_timeout)."
  - "The request kinds are endpoints of the service contract: V(lb_check) (C(GET /healthz/lb), C(200)), V(version)
    (C(GET /version), C(200)), V(customer) (C(GET /v1/customers/ID) with O(api_key), C(200); the customer is
    O(customer_id) or one created for the run before the measurement) and, only with O(allow_payments),
    V(payment) (C(POST /v1/payments), C(201), idempotency key C(load-RUN_ID-N), O(payment_amount) capped by
    O(payment_amount_cap)). Every payment made is refunded after the measurement."
  - "Each answer that is not the expected one is an error, by kind: V(server_error) (5xx), V(unexpected_status),
    V(declined) (402), V(rate_limited) (429), V(wrong_version) (C(X-Service-Version) is not O(expected_version)),
    V(timeout), V(connection), V(tls), V(concurrency_limit)."
  - "Passes when the achieved rate (answers as expected per second, over the run) is at least O(min_rate_ratio) of
    O(rate), the error rate (429 excluded) is at most O(max_error_rate), no answer was C(429) (unless
    O(expect_rate_limited)), and the nearest-rank p95 and p99 latencies of the requests sent are at most O(max_p95)
    and O(max_p99). Otherwise it fails with every figure and each breached threshold in RV(failed_checks)."
  - Standard library HTTP only (one connection per request, no redirect followed, no proxy, TLS verified).
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Validates the options and returns in RV(plan) what would be sent; sends nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  targets:
    description:
      - The base URLs to load, each C(http://) or C(https://) without credentials, query or fragment (a path prefix
        is kept). Names and URLs are unique.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: What results call the target, for example C(app1-green).
        type: str
        required: true
      url:
        description: The target's base URL.
        type: str
        required: true
  run_id:
    description:
      - "A unique id of this run: up to 150 letters, digits and C(. _ : @ + -). The payments' idempotency keys are
        made from it (C(load-RUN_ID-N)), so the same O(run_id) never charges twice."
    type: str
    required: true
  rate:
    description: The offered rate in requests per second (above V(0), at most V(1000)), over all targets.
    type: float
    default: 20.0
  duration:
    description: Seconds during which requests are due (above V(0), at most V(600)).
    type: float
    default: 15.0
  max_requests:
    description: The most requests the run sends (V(1) to V(100000)), whatever O(duration) allows.
    type: int
    default: 600
  concurrency:
    description: The most requests in flight at once (V(1) to V(256)).
    type: int
    default: 16
  mix:
    description:
      - The weight of each request kind (V(0) to V(100)); a kind of weight V(0) is not sent.
    type: dict
    suboptions:
      lb_check:
        description: Weight of C(GET /healthz/lb).
        type: int
        default: 1
      version:
        description: Weight of C(GET /version).
        type: int
        default: 1
      customer:
        description: Weight of C(GET /v1/customers/ID) (needs O(api_key)).
        type: int
        default: 2
      payment:
        description: Weight of C(POST /v1/payments) (needs O(allow_payments), O(api_key) and O(stripe_api_key)).
        type: int
        default: 0
  api_key:
    description:
      - The service key the authenticated requests carry. Give a key whose rate limit is above the load (a key kept
        for load tests); with a key of a smaller limit the run measures the limiter, and fails on its C(429) answers.
    type: str
  customer_id:
    description: An existing customer to read. When not given, one is created for the run (before the measurement).
    type: str
  customer_email:
    description: The email of the customer created for the run.
    type: str
    default: load-test@example.com
  allow_payments:
    description: Allow payments in the mix. Without it a weight for V(payment) is refused.
    type: bool
    default: false
  allow_live_payments:
    description:
      - Allow payments when O(stripe_api_key) is a live key (real money, refunded after the run). Refused otherwise.
    type: bool
    default: false
  stripe_api_key:
    description:
      - The service's Stripe key, only to tell a test key from a live one before payments are sent; it is sent
        nowhere. Required with payments in the mix. When not given, the E(STRIPE_SECRET_KEY) environment variable.
    type: str
  payment_amount:
    description: The amount of each payment, in the currency's smallest unit.
    type: int
    default: 50
  payment_amount_cap:
    description: The largest O(payment_amount) accepted.
    type: int
    default: 100
  max_payments:
    description: The most payments in one run (V(0) to V(1000)); later payment turns read instead.
    type: int
    default: 100
  currency:
    description: Three-letter ISO currency code, lower case.
    type: str
    default: usd
  payment_method:
    description: The PaymentMethod of the payments; test cards (C(pm_card_...)) are refused with a live key.
    type: str
    default: pm_card_visa
  expected_version:
    description: The release every answer's C(X-Service-Version) must name; any when not given.
    type: str
  expect_rate_limited:
    description: "C(429) answers are expected (a test of the limiter): they count for the rate and fail nothing."
    type: bool
    default: false
  min_rate_ratio:
    description: The achieved rate must be at least this fraction of O(rate) (above V(0), at most V(1)).
    type: float
    default: 0.9
  max_error_rate:
    description: The largest fraction of the planned requests that may fail (V(0) to V(1)).
    type: float
    default: 0.01
  max_p95:
    description: Seconds the 95th percentile latency may reach (above V(0), at most V(60)).
    type: float
    default: 1.0
  max_p99:
    description: Seconds the 99th percentile latency may reach (at least O(max_p95), at most V(60)).
    type: float
    default: 2.0
  request_timeout:
    description: Seconds to wait for each answer (above V(0), at most V(300)).
    type: float
    default: 5.0
  ca_path:
    description: A CA bundle to verify C(https) targets with, instead of the system's.
    type: path
notes:
  - Every option is checked before any request is sent; all problems are reported together.
  - Latency is measured from the moment a request was due, so a late start counts against the service.
  - Run it where the targets are reachable as the load balancer reaches them (C(delegate_to)).
seealso:
  - module: payments.deploy.smoke_test
"""

EXAMPLES = r"""
- name: Load the green colour on every app host before it gets traffic
  payments.deploy.load_test:
    targets:
      - {name: app1-green, url: "http://10.0.1.11:8081"}
      - {name: app2-green, url: "http://10.0.1.12:8081"}
    run_id: "deploy-{{ deploy_id }}-load"
    rate: 20
    duration: 15
    max_requests: 600
    expected_version: 1.2.0
    api_key: "{{ vault_payments_load_key }}"
    max_p95: 0.5
  delegate_to: "{{ groups['loadbalancers'] | first }}"
  run_once: true
  register: load

- name: Staging, with test payments
  payments.deploy.load_test:
    targets: [{name: staging, url: "https://pay.staging.example.com"}]
    run_id: "staging-{{ release_version }}-load"
    api_key: "{{ vault_payments_load_key }}"
    allow_payments: true
    mix: {payment: 1}
    stripe_api_key: "{{ vault_stripe_secret_key }}"
  delegate_to: localhost
"""

RETURN = r"""
passed:
  description: Whether every threshold held; V(null) in check mode.
  returned: always
  type: bool
failed_checks:
  description: One sentence per breached threshold (C(rate), C(error_rate), C(rate_limited), C(p95), C(p99), C(refund)).
  returned: always
  type: list
  elements: str
  sample: ["p95: 1.31 s is above max_p95 1 s"]
target_rps:
  description: The offered rate.
  returned: always
  type: float
achieved_rps:
  description: Answers as expected per second, over the run.
  returned: success or failure after the measurement
  type: float
  sample: 19.9
planned_requests:
  description: The requests the run schedules (O(rate) x O(duration), at most O(max_requests)).
  returned: always
  type: int
requests:
  description: The requests planned and judged (sent or not).
  returned: success or failure after the measurement
  type: int
sent:
  description: The requests sent (not refused by the concurrency limit).
  returned: success or failure after the measurement
  type: int
ok:
  description: The answers as expected.
  returned: success or failure after the measurement
  type: int
errors:
  description: The requests that failed, 429 excepted.
  returned: success or failure after the measurement
  type: int
error_rate:
  description: C(errors) / C(requests).
  returned: success or failure after the measurement
  type: float
rate_limited:
  description: The C(429) answers.
  returned: success or failure after the measurement
  type: int
status_counts:
  description: Answers by HTTP status.
  returned: success or failure after the measurement
  type: dict
  sample: {"200": 300}
errors_by_kind:
  description: Failed requests by kind.
  returned: success or failure after the measurement
  type: dict
  sample: {"server_error": 3, "timeout": 1}
latency:
  description: Nearest-rank C(p50), C(p95), C(p99) and C(max) in seconds of the requests sent, and their C(count).
  returned: success or failure after the measurement
  type: dict
  sample: {"count": 300, "p50": 0.004, "p95": 0.011, "p99": 0.02, "max": 0.03}
duration:
  description: Seconds from the start to the last answer.
  returned: success or failure after the measurement
  type: float
per_target:
  description: The same figures per target name.
  returned: success or failure after the measurement
  type: dict
per_kind:
  description: The same figures per request kind.
  returned: success or failure after the measurement
  type: dict
thresholds:
  description: The thresholds applied.
  returned: always
  type: dict
customer_id:
  description: The customer read (and paid for).
  returned: success or failure after the measurement
  type: str
payments:
  description: How many payment requests were planned.
  returned: success or failure after the measurement
  type: int
refunds:
  description: The refund of each payment made (C(payment_id), C(idempotency_key), C(refunded), C(detail)).
  returned: success or failure after the measurement
  type: list
  elements: dict
plan:
  description: In check mode, what would be sent (C(requests), C(by_kind), C(seconds), C(payment_keys), C(customer)).
  returned: check mode
  type: dict
targets:
  description: The targets (C(name), C(url)).
  returned: always
  type: list
  elements: dict
run_id:
  description: The run id.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils._load_test_options import argument_spec, validate
from ansible_collections.payments.deploy.plugins.module_utils._load_test_runner import LoadTest


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    problems = validate(module.params)
    if problems:
        module.fail_json(msg="invalid options, nothing was sent: " + "; ".join(problems), problems=problems,
                         passed=False, failed_checks=[], changed=False)
    result, failure = LoadTest(module.params, module.check_mode).run()
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
