#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: stripe_webhook_endpoint_info
short_description: List the Stripe webhook endpoints of an account
version_added: 0.1.0
description:
  - Lists every webhook endpoint of the account (all pages), optionally only those with an id, a URL or an identity marker.
  - Never returns signing secrets (Stripe does not either, after creation).
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.stripe
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  id:
    description:
      - Only the endpoint with this id (C(we_...)).
    type: str
  url:
    description:
      - Only the endpoints with this URL.
    type: str
  marker:
    description:
      - Only the endpoints whose metadata key C(payments_deploy_id) holds this marker (see M(payments.deploy.stripe_webhook_endpoint)).
    type: str
seealso:
  - module: payments.deploy.stripe_webhook_endpoint
"""

EXAMPLES = r"""
- name: Read the production endpoint
  payments.deploy.stripe_webhook_endpoint_info:
    marker: production-payments
  environment:
    STRIPE_SECRET_KEY: "{{ vault_stripe_secret_key }}"
  register: webhooks

- name: Require exactly one enabled endpoint
  ansible.builtin.assert:
    that:
      - webhooks.endpoints | length == 1
      - not webhooks.endpoints[0].disabled
"""

RETURN = r"""
endpoints:
  description: The endpoints that match every filter given, in Stripe's order (newest first). Never a signing secret.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: The endpoint's id.
      type: str
      sample: we_1Pgc6yB7WZ01zgkWzAudq4eU
    url:
      description: Where Stripe sends the events.
      type: str
    enabled_events:
      description: The event types sent.
      type: list
      elements: str
    description:
      description: The endpoint's description.
      type: str
    metadata:
      description: The endpoint's metadata.
      type: dict
    status:
      description: C(enabled) or C(disabled).
      type: str
    disabled:
      description: Whether the status is C(disabled).
      type: bool
    api_version:
      description: The API version of the events; V(null) means the account's default.
      type: str
    application:
      description: The Connect application the endpoint belongs to, if any.
      type: str
    connect:
      description: The connect setting recorded in the metadata key C(payments_deploy_connect); V(null) when not recorded.
      type: bool
    marker:
      description: The identity marker (metadata key C(payments_deploy_id)); V(null) when none.
      type: str
    created:
      description: Creation time, epoch seconds.
      type: int
    livemode:
      description: Whether the endpoint belongs to live mode.
      type: bool
total:
  description: How many endpoints the account has, before filtering.
  returned: success
  type: int
  sample: 3
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
  sample: 0.2
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils._stripe import (
    StripeError,
    StripeModule,
    list_webhook_endpoints,
    stripe_argument_spec,
)


def main() -> None:
    argument_spec = stripe_argument_spec()
    argument_spec.update(
        id={"type": "str"},
        url={"type": "str"},
        marker={"type": "str"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    stripe = StripeModule(module)
    try:
        endpoints = list_webhook_endpoints(stripe.api)
    except StripeError as exc:
        stripe.fail("cannot list the webhook endpoints", exc)
    params = module.params
    selected = [
        e for e in endpoints
        if (params["id"] is None or e["id"] == params["id"])
        and (params["url"] is None or e["url"] == params["url"])
        and (params["marker"] is None or e["marker"] == params["marker"])
    ]
    stripe.exit(changed=False, endpoints=selected, total=len(endpoints))


if __name__ == "__main__":
    main()
