# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options shared by the modules that call the Stripe API."""

    DOCUMENTATION = r"""
options:
  api_key:
    description:
      - The Stripe API key (C(sk_live_...), C(sk_test_...), or a restricted key C(rk_live_...), C(rk_test_...)).
      - When not given, the E(STRIPE_SECRET_KEY) environment variable of the module is used.
      - Never shown in output; messages name a key by its hint, its prefix and last four characters (C(sk_live_…abcd)).
    type: str
  api_base:
    description:
      - Base URL of the Stripe API. Change it only to reach a Stripe-compatible test server.
    type: str
    default: https://api.stripe.com
  stripe_version:
    description:
      - The C(Stripe-Version) to send. By default the version the installed C(stripe) SDK is pinned to.
    type: str
  max_network_retries:
    description:
      - How many times the C(stripe) SDK retries a request after a connection error, a C(409), a C(5xx),
        or an answer whose C(Stripe-Should-Retry) header is C(true) (for example a C(429) lock timeout), with exponential backoff.
      - Every write is sent with an C(Idempotency-Key), so a retried write never happens twice.
      - Between V(0) and V(10).
    type: int
    default: 2
  timeout:
    description:
      - Seconds to wait for each HTTP request to Stripe.
      - A finite number above V(0) and at most V(600); V(nan), V(inf) and V(0) fail before anything is sent.
    type: float
    default: 30.0
requirements:
  - stripe (the official Stripe Python SDK, 16.x) on the host that runs the module
notes:
  - Every result has C(api_calls), one entry per API call in the order made, with C(method), C(path), C(status),
    C(object), C(object_id), C(request_id), C(idempotency_key), C(replayed) (Stripe answered from its idempotency cache),
    C(attempts) and C(attempt_statuses) (retries included), and C(duration) in seconds. No header other than the idempotency key,
    no request body and never the key is recorded.
  - A failed API call makes the module fail with C(stripe_error) (C(type), C(code), C(decline_code), C(http_status),
    C(request_id), C(param), C(message)).
attributes:
  action_group:
    description: Use C(group/payments.deploy.stripe) in C(module_defaults) to set its options once for every module of the group.
    support: full
    membership:
      - payments.deploy.stripe
"""
