#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: stripe_webhook_endpoint
short_description: Create, update, replace or delete a Stripe webhook endpoint
version_added: 0.1.0
description:
  - Makes one Stripe webhook endpoint look as asked, found by an identity marker kept in its metadata or else by its URL.
  - The mutable fields (O(url), O(enabled_events), O(description), O(metadata), O(disabled)) are updated in place.
  - Stripe cannot change O(api_version) or O(connect) of an endpoint. A difference there fails the module naming the field,
    the current and the wanted value, unless O(recreate=true), which replaces the endpoint (with a new signing secret).
  - Stripe returns the signing secret only when it creates an endpoint. The module returns it masked, and writes it to
    O(secret_file) on the host it runs on, or hands it unmasked to a task that runs with C(no_log) (O(return_secret)) so
    that the caller can keep it somewhere else (the C(payments.deploy.stripe_webhooks) role's secret stores).
  - Idempotent, with check mode and diff mode.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.stripe
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Lists the endpoints and predicts the change; sends no write to Stripe, writes no file and returns no secret.
  diff_mode:
    support: full
    details: Before and after of the mutable fields; never the signing secret.
  platform:
    platforms: posix
options:
  state:
    description:
      - V(present) creates or updates the endpoint, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  url:
    description:
      - The URL Stripe sends events to, http(s) with a host. Required with O(state=present).
      - Without O(marker) it is also the endpoint's identity.
    type: str
  enabled_events:
    description:
      - The event types to send, for example C(payment_intent.succeeded), or V(["*"]) for all of them.
      - Compared as a set. Required to create an endpoint; when omitted the events of an existing endpoint are kept.
    type: list
    elements: str
  description:
    description:
      - A description of the endpoint. When omitted the current one is kept; V("") clears it.
    type: str
  metadata:
    description:
      - The endpoint's metadata, exactly. Keys that are no longer listed are deleted (sent empty, as Stripe expects).
      - When omitted the current metadata is kept.
      - The keys C(payments_deploy_id) and C(payments_deploy_connect) are reserved for the module (see O(marker), O(connect)) and always kept.
    type: dict
  disabled:
    description:
      - Whether the endpoint is disabled (Stripe sends it no event). When omitted the current status is kept; new endpoints are enabled.
    type: bool
  api_version:
    description:
      - The Stripe API version of the events sent to the endpoint, for example C(2024-06-20). Set only at creation.
      - When omitted it is not checked; a new endpoint then gets the account's default version.
    type: str
  connect:
    description:
      - Whether the endpoint receives events from connected accounts instead of the account itself. Set only at creation.
      - Stripe does not return this setting, so the module records it in the metadata key C(payments_deploy_connect) of
        the endpoints it creates and checks it there; for an endpoint created elsewhere it cannot be checked (a warning says so).
    type: bool
  marker:
    description:
      - Identity of the endpoint, stored in its metadata key C(payments_deploy_id), for example C(production-payments).
      - The endpoint carrying this marker is the one managed; when none does, the endpoint with O(url) and no other marker
        is adopted and gets the marker. Two candidates fail the module listing their ids, it never picks one.
      - Set it when the URL may change, so a new URL updates the endpoint instead of creating a second one.
    type: str
  recreate:
    description:
      - Allow replacing the endpoint when O(api_version) or O(connect) differ from what it has.
      - The new endpoint is created first and the old one deleted after, so events keep flowing; the new endpoint has a new
        signing secret (see O(secret_file)) that the service must be given.
    type: bool
    default: false
  secret_file:
    description:
      - File to write the signing secret (C(whsec_...)) to when the endpoint is created or recreated. The file is replaced atomically,
        mode C(0600), the secret alone without a line break. Its directory must exist.
      - The file is written on the host the module runs on (the controller when the task is delegated to V(localhost)).
        A controller in a throw-away container (AWX, Automation Controller) loses it, so use O(return_secret) there.
      - Not written when nothing is created, since Stripe does not return the secret of an existing endpoint.
    type: path
  return_secret:
    description:
      - Return the signing secret of a created or recreated endpoint unmasked in RV(secret), for the caller to keep it
        (in a secret store, in the service's environment) without any file on the host the module runs on.
      - The task must set C(no_log=true), so that no callback, log or verbosity level shows the result; the module refuses
        to run otherwise, before any request.
      - With V(false) RV(secret) is masked.
    type: bool
    default: false
seealso:
  - module: payments.deploy.stripe_webhook_endpoint_info
  - name: Stripe API, webhook endpoints
    description: The object and its create, update, list and delete calls.
    link: https://docs.stripe.com/api/webhook_endpoints
"""

EXAMPLES = r"""
- name: Send payment events to the production service
  payments.deploy.stripe_webhook_endpoint:
    marker: production-payments
    url: https://pay.example.com/webhooks/stripe
    enabled_events:
      - payment_intent.succeeded
      - payment_intent.payment_failed
      - charge.refunded
    description: production payment service
    metadata:
      team: payments
    api_version: "2024-06-20"
    secret_file: /etc/payment-service/stripe-webhook-secret
  environment:
    STRIPE_SECRET_KEY: "{{ vault_stripe_secret_key }}"
  register: webhook

- name: Move the endpoint to a new API version (replaces it; the new secret lands in secret_file)
  payments.deploy.stripe_webhook_endpoint:
    api_key: "{{ vault_stripe_secret_key }}"
    marker: production-payments
    url: https://pay.example.com/webhooks/stripe
    api_version: "2025-01-27"
    recreate: true
    secret_file: /etc/payment-service/stripe-webhook-secret

- name: Create or update the endpoint; the signing secret goes to the caller only (no file anywhere)
  payments.deploy.stripe_webhook_endpoint:
    api_key: "{{ vault_stripe_secret_key }}"
    marker: production-payments
    url: https://pay.example.com/webhooks/stripe
    enabled_events: [payment_intent.succeeded, charge.refunded]
    return_secret: true
  no_log: true  # required with return_secret: the result holds the secret
  register: webhook

- name: Keep a newly issued secret in AWS Secrets Manager
  community.aws.secretsmanager_secret:
    name: payments/production/stripe-webhook-secret
    secret: "{{ webhook.secret }}"
  no_log: true
  when: webhook.secret_issued

- name: Remove the staging endpoint
  payments.deploy.stripe_webhook_endpoint:
    api_key: "{{ vault_stripe_test_key }}"
    marker: staging-payments
    state: absent
"""

RETURN = r"""
operation:
  description:
    - What was done (in check mode, would be done).
    - Named so because JSON stdout callbacks overwrite a result key C(action) with the module's name.
  returned: success
  type: str
  choices: [created, updated, recreated, deleted, none]
  sample: updated
endpoint:
  description:
    - The endpoint after this run (in check mode, as predicted; C(id) is V(null) for one not created yet). V(null) after a delete.
    - Never holds the signing secret.
  returned: success
  type: dict
  sample: {"id": "we_1Pgc6yB7WZ01zgkWzAudq4eU", "url": "https://pay.example.com/webhooks/stripe",
           "enabled_events": ["charge.refunded", "payment_intent.succeeded"], "description": "production payment service",
           "metadata": {"payments_deploy_id": "production-payments", "payments_deploy_connect": "false", "team": "payments"},
           "status": "enabled", "disabled": false, "api_version": "2024-06-20", "application": null, "connect": false,
           "marker": "production-payments", "created": 1767225600, "livemode": true}
previous_endpoint:
  description: The endpoint as found before this run (same fields as RV(endpoint)); V(null) when there was none.
  returned: success
  type: dict
found_by:
  description: How the endpoint was found.
  returned: success
  type: str
  choices: [marker, url, none]
  sample: marker
changed_fields:
  description: The fields that differ (changed, or would be in check mode).
  returned: success
  type: list
  elements: str
  sample: [enabled_events, metadata]
secret:
  description:
    - The signing secret of a created or recreated endpoint.
    - Masked in every result (a no_log value), unless O(return_secret=true), which returns it as it is to a task that
      runs with C(no_log); keep it from there, or use O(secret_file).
  returned: when an endpoint was created or recreated, not in check mode
  type: str
secret_issued:
  description: Whether Stripe issued a new signing secret in this run.
  returned: success
  type: bool
  sample: false
secret_file_written:
  description: Whether O(secret_file) was written in this run.
  returned: success
  type: bool
  sample: false
stripe_error:
  description: The Stripe error that made the module fail (type, code, decline_code, http_status, request_id, param, message).
  returned: failure
  type: dict
api_calls:
  description: The Stripe API calls made, in order (see the notes).
  returned: always
  type: list
  elements: dict
  sample: [{"method": "GET", "path": "/v1/webhook_endpoints?limit=100", "status": 200, "object": "list", "object_id": null,
            "count": 1, "request_id": "req_8Ce3YQjFl4Lv4H", "idempotency_key": null, "replayed": false, "attempts": 1,
            "attempt_statuses": [200], "duration": 0.21}]
elapsed:
  description: Seconds the module took.
  returned: always
  type: float
  sample: 0.63
"""

import os
import typing as t
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils._files import write_text_atomic
from ansible_collections.payments.deploy.plugins.module_utils._stripe import (
    CONNECT_KEY,
    MARKER_KEY,
    RESERVED_METADATA_KEYS,
    StripeError,
    StripeModule,
    list_webhook_endpoints,
    match_endpoints,
    sanitize_endpoint,
    stripe_argument_spec,
    to_plain,
)

MUTABLE_FIELDS = ("url", "enabled_events", "description", "metadata", "disabled")
# Stripe's limits on metadata
MAX_METADATA_KEYS = 50
MAX_KEY_LENGTH = 40
MAX_VALUE_LENGTH = 500


def metadata_value(value: t.Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def url_usable(url: str) -> bool:
    """Whether ``url`` can be an endpoint's URL: http(s), a host, and nothing a header or a log line would split on."""
    if len(url) > 2048 or any(c.isspace() or not c.isprintable() for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def validate(params: t.Mapping[str, t.Any], no_log: bool = False) -> list[str]:
    """Every problem with the module's own options, found before anything is read or changed.

    ``no_log`` is whether the task runs with no_log (return_secret requires it).
    """
    problems = []
    if params["state"] == "present" and not params["url"]:
        problems.append("url is required with state=present")
    elif params["url"] and not url_usable(params["url"]):
        problems.append(f"url {params['url'][:200]!r} must be an http(s) URL with a host, without white space or "
                        "control characters")
    if params["state"] == "absent" and not (params["url"] or params["marker"]):
        problems.append("state=absent needs marker or url to find the endpoint")
    if params["enabled_events"] is not None and not [e for e in params["enabled_events"] if e]:
        problems.append("enabled_events must not be empty (use ['*'] for every event)")
    if params["marker"] is not None and not 0 < len(params["marker"]) <= MAX_VALUE_LENGTH:
        problems.append(f"marker must have 1 to {MAX_VALUE_LENGTH} characters")
    metadata = params["metadata"] or {}
    reserved = sorted(set(metadata) & set(RESERVED_METADATA_KEYS))
    if reserved:
        problems.append(f"metadata keys {reserved} are reserved for the module (use marker and connect)")
    if len(metadata) + len(RESERVED_METADATA_KEYS) > MAX_METADATA_KEYS:
        problems.append(f"metadata may have at most {MAX_METADATA_KEYS - len(RESERVED_METADATA_KEYS)} keys")
    for key, value in metadata.items():
        if not 0 < len(str(key)) <= MAX_KEY_LENGTH or "[" in str(key) or "]" in str(key):
            problems.append(f"metadata key {key!r} must have 1 to {MAX_KEY_LENGTH} characters and no square brackets")
        if value is None or len(metadata_value(value)) > MAX_VALUE_LENGTH:
            problems.append(f"metadata value of {key!r} must be a string of at most {MAX_VALUE_LENGTH} characters")
    if params["return_secret"] and not no_log:
        problems.append("return_secret=true returns the signing secret unmasked: the task must set no_log: true")
    secret_file = params["secret_file"]
    if secret_file:
        directory = os.path.dirname(os.path.abspath(secret_file))
        if os.path.isdir(secret_file):
            problems.append(f"secret_file {secret_file} is a directory")
        elif not os.path.isdir(directory):
            problems.append(f"the directory of secret_file {secret_file} does not exist: {directory}")
        elif not os.access(directory, os.W_OK | os.X_OK):
            problems.append(f"the directory of secret_file {secret_file} is not writable: {directory}")
    return problems


def mutable_view(endpoint: t.Mapping[str, t.Any] | None) -> dict[str, t.Any]:
    """The mutable fields of an endpoint, normalized for comparing and for the diff."""
    if not endpoint:
        return {}
    return {
        "url": endpoint.get("url"),
        "enabled_events": sorted(set(endpoint.get("enabled_events") or [])),
        "description": endpoint.get("description") or "",
        "metadata": dict(sorted((endpoint.get("metadata") or {}).items())),
        "disabled": bool(endpoint.get("disabled")),
    }


class WebhookEndpoint:
    """One run of the module: find the endpoint, compare, then create, update, recreate or delete it."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.stripe = StripeModule(module, validate(module.params, bool(module.no_log)))
        self.api = self.stripe.api
        self.result: dict[str, t.Any] = {"secret_issued": False, "secret_file_written": False, "changed_fields": []}

    # ----- reading and comparing

    def find(self) -> tuple[dict[str, t.Any] | None, str]:
        try:
            endpoints = list_webhook_endpoints(self.api)
        except StripeError as exc:
            self.stripe.fail("cannot list the webhook endpoints", exc)
        found, how = match_endpoints(endpoints, self.params["marker"], self.params["url"])
        if len(found) > 1:
            ids = ", ".join(e["id"] for e in found)
            what = f"marker {self.params['marker']!r}" if how == "marker" else f"url {self.params['url']!r}"
            self.stripe.fail(f"{len(found)} webhook endpoints match {what} ({ids}); refusing to pick one: "
                             f"delete the extra ones or give each its own marker", found_by=how, candidates=found)
        return (found[0] if found else None), how

    def wanted(self, current: dict[str, t.Any] | None) -> dict[str, t.Any]:
        """The mutable fields as they must be after this run (unset options keep the current values)."""
        params = self.params
        base = mutable_view(current) if current else {"enabled_events": [], "description": "", "metadata": {}, "disabled": False}
        metadata = dict(base["metadata"]) if params["metadata"] is None else {
            str(k): metadata_value(v) for k, v in params["metadata"].items()
        }
        for key in RESERVED_METADATA_KEYS:
            if key in base["metadata"]:
                metadata[key] = base["metadata"][key]
        if params["marker"]:
            metadata[MARKER_KEY] = params["marker"]
        return {
            "url": params["url"],
            "enabled_events": sorted(set(params["enabled_events"])) if params["enabled_events"] is not None else base["enabled_events"],
            "description": params["description"] if params["description"] is not None else base["description"],
            "metadata": dict(sorted(metadata.items())),
            "disabled": params["disabled"] if params["disabled"] is not None else base["disabled"],
        }

    def immutable_changes(self, current: dict[str, t.Any]) -> list[tuple[str, t.Any, t.Any]]:
        """``(field, current, wanted)`` for api_version and connect where they differ."""
        changes = []
        if self.params["api_version"] is not None and current.get("api_version") != self.params["api_version"]:
            changes.append(("api_version", current.get("api_version"), self.params["api_version"]))
        if self.params["connect"] is not None:
            if current.get("connect") is None:
                self.module.warn(f"webhook endpoint {current['id']} has no {CONNECT_KEY} metadata (it was not created by this module): "
                                 "Stripe does not return its connect setting, so connect cannot be checked")
            elif current["connect"] != self.params["connect"]:
                changes.append(("connect", current["connect"], self.params["connect"]))
        return changes

    @staticmethod
    def update_params(current: dict[str, t.Any], wanted: dict[str, t.Any]) -> dict[str, t.Any]:
        """The update call's parameters: changed fields only; metadata keys no longer wanted are sent empty."""
        now = mutable_view(current)
        params: dict[str, t.Any] = {}
        for field in ("url", "description", "disabled"):
            if now[field] != wanted[field]:
                params[field] = wanted[field]
        if now["enabled_events"] != wanted["enabled_events"]:
            params["enabled_events"] = wanted["enabled_events"]
        if now["metadata"] != wanted["metadata"]:
            metadata = {k: v for k, v in wanted["metadata"].items() if now["metadata"].get(k) != v}
            metadata.update({k: "" for k in now["metadata"] if k not in wanted["metadata"]})
            params["metadata"] = metadata
        return params

    # ----- writing

    def creation_settings(self, current: dict[str, t.Any] | None) -> tuple[str | None, bool]:
        """api_version and connect for a new endpoint: as asked, else those of the endpoint it replaces."""
        params = self.params
        api_version = params["api_version"] if params["api_version"] is not None else (current or {}).get("api_version")
        connect = params["connect"] if params["connect"] is not None else (current or {}).get("connect")
        if connect is None and current is not None:
            self.module.warn(f"the connect setting of webhook endpoint {current['id']} is unknown; its replacement gets connect=false")
        return api_version, bool(connect)

    def create(self, wanted: dict[str, t.Any], api_version: str | None, connect: bool) -> dict[str, t.Any]:
        params = self.params
        create_params: dict[str, t.Any] = {"url": wanted["url"], "enabled_events": wanted["enabled_events"], "metadata": wanted["metadata"]}
        if wanted["description"]:
            create_params["description"] = wanted["description"]
        if api_version is not None:
            create_params["api_version"] = api_version
        if connect:
            create_params["connect"] = True
        try:
            created = self.api.v1.webhook_endpoints.create(params=create_params)
        except StripeError as exc:
            self.stripe.fail("creating the webhook endpoint failed, nothing changed", exc, **self.result)
        secret = to_plain(created).get("secret")
        endpoint = sanitize_endpoint(created)
        if secret:
            if not params["return_secret"]:
                self.module.no_log_values.add(secret)
            self.result.update(secret=secret, secret_issued=True)
        if params["secret_file"]:
            if not secret:
                self.stripe.fail(f"Stripe created webhook endpoint {endpoint['id']} but returned no signing secret; "
                                 f"{params['secret_file']} was not written", endpoint=endpoint, **self.result)
            try:
                write_text_atomic(params["secret_file"], secret, mode=0o600)
            except OSError as exc:
                self.stripe.fail(f"created webhook endpoint {endpoint['id']} but could not write its signing secret to "
                                 f"{params['secret_file']} ({exc.strerror or exc}); Stripe will not show it again: fix the file "
                                 "and re-run with recreate=true after deleting the endpoint, or roll the secret in the Dashboard",
                                 endpoint=endpoint, **self.result)
            self.result["secret_file_written"] = True
        if wanted["disabled"]:
            try:
                endpoint = sanitize_endpoint(self.api.v1.webhook_endpoints.update(endpoint["id"], params={"disabled": True}))
            except StripeError as exc:
                self.stripe.fail(f"created webhook endpoint {endpoint['id']} but could not disable it", exc, endpoint=endpoint, **self.result)
        return endpoint

    def delete(self, endpoint_id: str, context: str, **extra: t.Any) -> None:
        try:
            self.api.v1.webhook_endpoints.delete(endpoint_id)
        except StripeError as exc:
            self.stripe.fail(f"deleting webhook endpoint {endpoint_id} failed ({context})", exc, **self.result, **extra)

    # ----- the run

    def run(self) -> t.NoReturn:
        current, how = self.find()
        self.result.update(found_by=how, previous_endpoint=current)
        if self.params["state"] == "absent":
            self.absent(current)
        self.present(current)

    def finish(self, action: str, endpoint: dict[str, t.Any] | None, before: dict[str, t.Any], after: dict[str, t.Any]) -> t.NoReturn:
        changed = action != "none"
        if changed and self.module._diff:
            header = (endpoint or self.result.get("previous_endpoint") or {}).get("id") or self.params["url"] or ""
            self.result["diff"] = {"before": before, "after": after, "before_header": header, "after_header": header}
        self.stripe.exit(changed=changed, operation=action, endpoint=endpoint, **self.result)

    def absent(self, current: dict[str, t.Any] | None) -> t.NoReturn:
        if current is None:
            self.finish("none", None, {}, {})
        self.result["changed_fields"] = list(MUTABLE_FIELDS)
        if not self.module.check_mode:
            self.delete(current["id"], "state=absent")
        self.finish("deleted", None, mutable_view(current), {})

    def present(self, current: dict[str, t.Any] | None) -> t.NoReturn:
        params = self.params
        wanted = self.wanted(current)
        if current is None:
            self.replace(None, wanted, [])
        changes = self.immutable_changes(current)
        if changes:
            self.replace(current, wanted, changes)
        update = self.update_params(current, wanted)
        self.result["changed_fields"] = [f for f in MUTABLE_FIELDS if f in update]
        if params["secret_file"] and not os.path.exists(params["secret_file"]):
            self.module.warn(f"secret_file {params['secret_file']} does not exist and webhook endpoint {current['id']} already exists: "
                             "Stripe returns a signing secret only when it creates an endpoint, so it was not written")
        if not update:
            self.finish("none", current, {}, {})
        endpoint = dict(current, **wanted, status="disabled" if wanted["disabled"] else "enabled")
        endpoint["marker"] = wanted["metadata"].get(MARKER_KEY)
        if not self.module.check_mode:
            try:
                endpoint = sanitize_endpoint(self.api.v1.webhook_endpoints.update(current["id"], params=update))
            except StripeError as exc:
                self.stripe.fail(f"updating webhook endpoint {current['id']} failed", exc, **self.result)
        self.finish("updated", endpoint, mutable_view(current), mutable_view(endpoint))

    def replace(self, current: dict[str, t.Any] | None, wanted: dict[str, t.Any], changes: list[tuple[str, t.Any, t.Any]]) -> t.NoReturn:
        """Create the endpoint, or recreate it when an immutable field differs and recreate=true."""
        params = self.params
        if current is None:
            if params["enabled_events"] is None:
                self.stripe.fail("enabled_events is required to create a webhook endpoint (no endpoint matches "
                                 + (f"marker {params['marker']!r} or " if params["marker"] else "") + f"url {params['url']!r})", **self.result)
            changed_fields = list(MUTABLE_FIELDS)
        else:
            described = "; ".join(f"{field} is {now!r}, wanted {want!r}" for field, now, want in changes)
            if not params["recreate"]:
                self.stripe.fail(f"webhook endpoint {current['id']} cannot be updated in place: {described} "
                                 "(Stripe sets these only at creation); set recreate=true to replace it with a new endpoint "
                                 "and a new signing secret", changed_fields=[c[0] for c in changes], endpoint=current,
                                 found_by=self.result["found_by"])
            changed_fields = [c[0] for c in changes]
        api_version, connect = self.creation_settings(current)
        wanted["metadata"] = dict(sorted((wanted["metadata"] | {CONNECT_KEY: metadata_value(connect)}).items()))
        if current is not None:
            changed_fields += [f for f in MUTABLE_FIELDS if mutable_view(current)[f] != wanted[f]]
        self.result["changed_fields"] = changed_fields
        action = "created" if current is None else "recreated"
        if self.module.check_mode:
            endpoint = dict(wanted, id=None, status="disabled" if wanted["disabled"] else "enabled", api_version=api_version,
                            connect=connect, marker=wanted["metadata"].get(MARKER_KEY), application=None, created=None, livemode=None)
        else:
            endpoint = self.create(wanted, api_version, connect)
            if current is not None:
                self.delete(current["id"], f"its replacement {endpoint['id']} is already created: delete the old one by hand",
                            endpoint=endpoint)
        self.finish(action, endpoint, mutable_view(current), mutable_view(endpoint))


def main() -> None:
    argument_spec = stripe_argument_spec()
    argument_spec.update(
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
        url={"type": "str"},
        enabled_events={"type": "list", "elements": "str"},
        description={"type": "str"},
        metadata={"type": "dict"},
        disabled={"type": "bool"},
        api_version={"type": "str"},
        connect={"type": "bool"},
        marker={"type": "str"},
        recreate={"type": "bool", "default": False},
        secret_file={"type": "path"},
        return_secret={"type": "bool", "default": False},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    WebhookEndpoint(module).run()


if __name__ == "__main__":
    main()
