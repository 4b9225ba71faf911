#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: stripe_key_info
short_description: Tell what a Stripe API key is (live or test, secret or restricted, which account) and check it
version_added: 0.1.0
description:
  - Reads the kind (C(secret), C(restricted), C(publishable)) and mode (C(live), C(test)) of a key from its prefix, then asks Stripe.
    C(GET /v1/balance) says whether the key is accepted and in live mode, C(GET /v1/account) which account it belongs to.
  - Fails, after gathering everything, when Stripe rejects the key, when the prefix and Stripe disagree about live mode,
    or when the key does not match O(expect_mode), O(expect_kind) or O(expect_account). All problems are reported together.
  - A restricted key without permission to read the account is not a failure by itself; RV(account) is then V(null) with the reason
    in RV(account_error), and only O(expect_account) makes that fail.
  - The key itself never appears in the result, only its hint (C(sk_live_…abcd)).
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.stripe
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  expect_mode:
    description:
      - The mode the key must be in. V(any) accepts both.
    type: str
    choices: [live, test, any]
    default: any
  expect_kind:
    description:
      - The kind of key required. V(any) accepts any key Stripe accepts.
    type: str
    choices: [secret, restricted, any]
    default: any
  expect_account:
    description:
      - The account id (C(acct_...)) the key must belong to.
    type: str
  key_name:
    description:
      - What the key is called where it comes from, for the messages.
    type: str
    default: STRIPE_SECRET_KEY
  expected_by:
    description:
      - Who expects the key to be as O(expect_mode) says, for the messages, for example C(production).
    type: str
seealso:
  - name: Stripe API keys
    description: Secret, restricted and publishable keys; live and test mode.
    link: https://docs.stripe.com/keys
"""

EXAMPLES = r"""
- name: Production must run on the live secret key of our account
  payments.deploy.stripe_key_info:
    expect_mode: live
    expect_kind: secret
    expect_account: acct_1LabEmulator00001
    expected_by: production
  environment:
    STRIPE_SECRET_KEY: "{{ vault_stripe_secret_key }}"

- name: Only look
  payments.deploy.stripe_key_info:
    api_key: "{{ vault_stripe_restricted_key }}"
  register: key
"""

RETURN = r"""
key_hint:
  description: The key's prefix and last four characters.
  returned: always
  type: str
  sample: "sk_live_…abcd"
kind:
  description: The kind of key, from its prefix.
  returned: always
  type: str
  choices: [secret, restricted, publishable, unknown]
  sample: secret
mode:
  description: The mode from the key's prefix; V(null) for a key of unknown shape.
  returned: always
  type: str
  sample: live
livemode:
  description: The C(livemode) Stripe reported for C(GET /v1/balance); V(null) when that call failed.
  returned: always
  type: bool
  sample: true
key_valid:
  description: Whether Stripe accepted the key (an answer other than C(401)); V(null) when Stripe could not be asked.
  returned: always
  type: bool
  sample: true
balance_error:
  description: Why C(GET /v1/balance) failed, as a Stripe error (C(type), C(code), C(http_status), C(request_id), C(message) and more); V(null) when it did not.
  returned: always
  type: dict
account:
  description: The id of the account the key belongs to; V(null) when C(GET /v1/account) failed.
  returned: always
  type: str
  sample: acct_1LabEmulator00001
account_error:
  description: Why C(GET /v1/account) failed (for example a restricted key without permission); V(null) when it did not.
  returned: always
  type: dict
problems:
  description: Every reason the module fails, as sentences; empty on success.
  returned: always
  type: list
  elements: str
  sample: ["production expects a live key: STRIPE_SECRET_KEY is a test key (sk_test_…abcd)"]
api_calls:
  description: The Stripe API calls made, in order (see the notes).
  returned: always
  type: list
  elements: dict
elapsed:
  description: Seconds the module took.
  returned: always
  type: float
  sample: 0.3
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils._stripe import (
    StripeError,
    StripeModule,
    describe_stripe_error,
    key_hint,
    key_kind,
    stripe_argument_spec,
)


def expectation_problems(params: t.Mapping[str, t.Any], facts: t.Mapping[str, t.Any]) -> list[str]:
    """The sentences saying how the key differs from what is expected."""
    problems = []
    who = f"{params['expected_by']} expects" if params["expected_by"] else "expected"
    name, hint = params["key_name"], facts["key_hint"]
    article = {"unknown": "a key of unknown kind"}.get(facts["kind"], f"a {facts['kind']} key")
    if facts["kind"] == "unknown":
        problems.append(f"{name} ({hint}) does not look like a Stripe key (sk_, rk_ or pk_ followed by live_ or test_)")
    elif facts["kind"] == "publishable":
        problems.append(f"{name} is a publishable key ({hint}): the server side needs a secret or restricted key")
    if params["expect_mode"] != "any" and facts["mode"] != params["expect_mode"]:
        actual = f"a {facts['mode']} key" if facts["mode"] else article
        problems.append(f"{who} a {params['expect_mode']} key: {name} is {actual} ({hint})")
    if params["expect_kind"] != "any" and facts["kind"] != params["expect_kind"]:
        problems.append(f"{who} a {params['expect_kind']} key: {name} is {article} ({hint})")
    if params["expect_account"] and facts["account"] != params["expect_account"]:
        if facts["account"] is None:
            reason = describe_stripe_error(facts["account_error"]) if facts["account_error"] else "unknown"
            problems.append(f"{who} account {params['expect_account']}, but the account of {name} ({hint}) cannot be read: {reason}")
        else:
            problems.append(f"{who} account {params['expect_account']}: {name} ({hint}) belongs to {facts['account']}")
    return problems


def main() -> None:
    argument_spec = stripe_argument_spec()
    argument_spec.update(
        expect_mode={"type": "str", "default": "any", "choices": ["live", "test", "any"]},
        expect_kind={"type": "str", "default": "any", "choices": ["secret", "restricted", "any"]},
        expect_account={"type": "str"},
        key_name={"type": "str", "default": "STRIPE_SECRET_KEY", "no_log": False},
        expected_by={"type": "str"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    stripe = StripeModule(module)
    params = module.params
    kind, mode = key_kind(stripe.api_key)
    facts: dict[str, t.Any] = {
        "key_hint": key_hint(stripe.api_key), "kind": kind, "mode": mode, "livemode": None, "key_valid": None,
        "balance_error": None, "account": None, "account_error": None,
    }
    problems: list[str] = []
    name, hint = params["key_name"], facts["key_hint"]

    try:
        facts["livemode"] = bool(stripe.api.v1.balance.retrieve().livemode)
        facts["key_valid"] = True
    except StripeError as exc:
        facts["balance_error"] = stripe.error_info(exc)
        status = facts["balance_error"]["http_status"]
        facts["key_valid"] = None if status is None else status != 401
        if status == 401:
            problems.append(f"Stripe rejects {name} ({hint}): {describe_stripe_error(facts['balance_error'])}")
        elif status != 403:
            problems.append(f"cannot check {name} ({hint}) with Stripe: {describe_stripe_error(facts['balance_error'])}")
    if facts["key_valid"] is not False:
        try:
            facts["account"] = stripe.api.v1.accounts.retrieve_current().id
            facts["key_valid"] = True
        except StripeError as exc:
            facts["account_error"] = stripe.error_info(exc)
    if facts["livemode"] is not None and mode is not None and facts["livemode"] != (mode == "live"):
        problems.append(f"{name} ({hint}) has a {mode} prefix but Stripe answers livemode={str(facts['livemode']).lower()}")
    if facts["livemode"] is None and facts["balance_error"] and facts["balance_error"]["http_status"] == 403:
        module.warn(f"{name} ({hint}) may not read the balance, so Stripe's livemode could not be compared with the key's prefix")
    problems += expectation_problems(params, facts)

    if problems:
        stripe.fail("; ".join(problems), problems=problems, **facts)
    stripe.exit(changed=False, problems=[], **facts)


if __name__ == "__main__":
    main()
