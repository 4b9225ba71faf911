#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: prometheus_rules_info
short_description: Check that Prometheus loaded the expected alert rules and evaluates them
version_added: 0.4.0
description:
  - Reads the alerting rules Prometheus runs (C(GET /api/v1/rules?type=alert)) and compares them with the expected
    alerts, the alerting rules of O(rules_file) and the names of O(alerts).
  - An expected alert is V(missing) when no loaded rule has its name, V(unhealthy) when a loaded rule with its name
    reports a health other than C(ok) or C(unknown) (its C(lastError) is returned), and V(not evaluated) when it was
    never evaluated or its last evaluation is older than O(stale_intervals) evaluation intervals of its group
    (measured on Prometheus' clock, so a skewed controller clock does not matter).
  - Also fails when Prometheus says its last configuration reload failed (it then runs with older rules), and when a
    severity of O(required_severities) is carried by no loaded, healthy and evaluated alert.
  - With O(wait), asks again every O(retry_delay) seconds until every check passes or O(wait) seconds have passed,
    for a reload to take effect and the first evaluation of new rules to happen.
  - Only reads; runs on the controller (O(rules_file) is a controller path). Bad options are refused before any request.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
requirements:
  - PyYAML (for O(rules_file))
options:
  prometheus_url:
    description: Base URL of Prometheus (C(http://) or C(https://)).
    type: str
    required: true
  rules_file:
    description:
      - A Prometheus rules file (C(groups) of C(rules)) on the controller; each of its alerting rules is expected.
      - Recording rules are ignored.
    type: path
  alerts:
    description: More alert names that must be loaded (rules managed elsewhere, extra rule groups).
    type: list
    elements: str
    default: []
  required_severities:
    description:
      - Severities (the C(severity) label) that must be covered, for example V(critical) or V(page).
      - When set, only the alerts of O(rules_file) with one of these severities are expected (the others are reported
        in RV(loaded) but not checked), and each severity must be carried by at least one loaded, healthy and evaluated
        alert. The names of O(alerts) are expected whatever their severity.
    type: list
    elements: str
    default: []
  stale_intervals:
    description: An alert whose last evaluation is older than this many evaluation intervals of its group is not evaluated.
    type: float
    default: 3
  wait:
    description: Seconds to keep asking while a check fails (a reload to take effect, the first evaluation of new rules).
    type: float
    default: 0
  retry_delay:
    description: Seconds between two reads while waiting.
    type: float
    default: 1
  timeout:
    description: Seconds each request may take.
    type: float
    default: 10
  bearer_token:
    description: Bearer token sent to Prometheus (never shown).
    type: str
  validate_certs:
    description: Verify Prometheus' TLS certificate.
    type: bool
    default: true
seealso:
  - module: payments.deploy.prometheus_series_info
"""

EXAMPLES = r"""
- name: Check that Prometheus runs every alert of the collection's rules file
  payments.deploy.prometheus_rules_info:
    prometheus_url: http://prometheus.example.com:9090
    rules_file: "{{ role_path }}/files/payments.rules.yml"
    wait: 60
  delegate_to: localhost
  register: rules

- name: Check that the paging alerts of rules managed elsewhere are loaded and evaluated
  payments.deploy.prometheus_rules_info:
    prometheus_url: https://prometheus.example.com
    alerts: [PaymentSuccessRateCritical, DependencyDown]
    required_severities: [critical]
    bearer_token: "{{ prometheus_token }}"
  delegate_to: localhost
"""

RETURN = r"""
passed:
  description: Every expected alert is loaded, healthy and evaluated, and every required severity is covered.
  returned: always
  type: bool
failed_checks:
  description: One sentence per check that failed.
  returned: always
  type: list
  elements: str
expected:
  description: The alert names that must be loaded.
  returned: always
  type: list
  elements: str
  sample: [DependencyDown, PaymentSuccessRateCritical]
loaded:
  description: Every alerting rule Prometheus runs, by name, with its group, file, health, state and severity.
  returned: when Prometheus answered
  type: dict
  sample: {DependencyDown: [{group: payments.operations, file: /etc/prometheus/rules/payments.rules.yml, health: ok,
           state: inactive, severity: page, last_evaluation_age: 4.2}]}
missing:
  description: Expected alerts no loaded rule has.
  returned: when Prometheus answered
  type: list
  elements: str
unhealthy:
  description: Expected alerts whose rule reports an error, with Prometheus' C(lastError).
  returned: when Prometheus answered
  type: list
  elements: dict
  sample: [{name: PaymentLatencyP95High, group: payments.http, health: err, last_error: "found duplicate series"}]
not_evaluated:
  description: Expected alerts never evaluated, or last evaluated more than O(stale_intervals) intervals ago.
  returned: when Prometheus answered
  type: list
  elements: dict
  sample: [{name: RefundRateHigh, group: payments.business, last_evaluation_age: null}]
firing:
  description: The names of the loaded alerts that fire now.
  returned: when Prometheus answered
  type: list
  elements: str
groups:
  description: Each rule group (by C(file:name)) with its evaluation interval and the age of its last evaluation in seconds.
  returned: when Prometheus answered
  type: dict
  sample: {"/etc/prometheus/rules/payments.rules.yml:payments.http": {interval: 15, last_evaluation_age: 3.1, rules: 3}}
severities:
  description: Each required severity with the alerts that cover it (loaded, healthy, evaluated).
  returned: when Prometheus answered
  type: dict
reload:
  description: Prometheus' C(reloadConfigSuccess) and C(lastConfigTime), null when it does not say.
  returned: when Prometheus answered
  type: dict
waited_seconds:
  description: Seconds spent waiting for the checks to pass.
  returned: when Prometheus answered
  type: float
requests_sent:
  description: Requests sent to Prometheus.
  returned: when a request was sent
  type: int
"""

import json
import math
import re
import time
import typing as t
from datetime import datetime
from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.yaml import HAS_YAML, yaml_load
from ansible.module_utils.urls import open_url
from ansible_collections.payments.deploy.plugins.module_utils._analysis_prometheus import Prometheus, QueryError, _http_error

ALERT_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_:]*$")
MAX_RULES_BYTES = 16 * 1024 * 1024
NEVER = "0001-01-01T00:00:00Z"  # Prometheus' lastEvaluation of a rule not evaluated yet
NO_RULES = ("Prometheus at {url} answered but runs no alerting rules at all: run playbooks/monitoring.yml or let the deploy "
            "install them (roles/monitoring, tasks_from rules), and check that its configuration loads the rules directory")


class RulesFileError(ValueError):
    """The rules file cannot be read or is not a Prometheus rules file."""


def alerts_of_rules(text: str, source: str) -> dict[str, str | None]:
    """Each alerting rule's name in a Prometheus rules file (YAML text), with its severity label (None without one)."""
    try:
        document = yaml_load(text)
    except Exception as exc:  # pylint: disable=broad-exception-caught  # any YAML error is a bad file
        raise RulesFileError(f"{source} is not YAML: {str(exc).splitlines()[0][:200]}") from None
    groups = document.get("groups") if isinstance(document, dict) else None
    if not isinstance(groups, list) or not groups:
        raise RulesFileError(f"{source} holds no rule groups (a mapping with a non-empty list 'groups')")
    alerts: dict[str, str | None] = {}
    for number, group in enumerate(groups, 1):
        if not isinstance(group, dict) or not isinstance(group.get("rules"), list):
            raise RulesFileError(f"{source}: group {number} is not a mapping with a list 'rules'")
        for rule in group["rules"]:
            if not isinstance(rule, dict):
                raise RulesFileError(f"{source}: group {group.get('name', number)!r} holds a rule that is not a mapping")
            if "alert" not in rule:
                continue  # a recording rule
            name, labels = rule["alert"], rule.get("labels") or {}
            if not isinstance(name, str) or not ALERT_NAME.match(name):
                raise RulesFileError(f"{source}: {name!r} is not an alert name")
            severity = labels.get("severity") if isinstance(labels, dict) else None
            alerts.setdefault(name, None if severity is None else str(severity))
    if not alerts:
        raise RulesFileError(f"{source} holds no alerting rule")
    return alerts


def problems_of(params: dict[str, t.Any]) -> list[str]:
    problems = []
    if not re.match(r"^https?://[^\s/@]+(/\S*)?$", params["prometheus_url"] or ""):
        problems.append(f"prometheus_url must be an http:// or https:// URL without credentials, got {params['prometheus_url']!r}")
    if not params["rules_file"] and not params["alerts"]:
        problems.append("name the expected alerts: rules_file, alerts or both")
    problems += [f"alerts: {name!r} is not an alert name" for name in params["alerts"] if not ALERT_NAME.match(str(name))]
    problems += [f"required_severities: {value!r} must be a non-empty label value without line breaks"
                 for value in params["required_severities"] if not str(value).strip() or str(value).splitlines() != [str(value)]]
    for option, highest in (("wait", 86400), ("retry_delay", 3600), ("timeout", 3600), ("stale_intervals", 1000)):
        if not params[option] >= 0 or params[option] > highest:  # NaN compares false: refused
            problems.append(f"{option} must be between 0 and {highest}, got {params[option]!r}")
    problems += [f"{option} must be above 0" for option in ("timeout", "retry_delay", "stale_intervals") if params[option] == 0]
    return problems


class RulesApi(Prometheus):
    """Prometheus' read API for rules and runtime information, beside the instant queries of the shared client."""

    def __init__(self, url: str, timeout: float, bearer_token: str | None, validate_certs: bool) -> None:
        super().__init__(url, timeout, bearer_token, validate_certs)
        self.base = url.rstrip("/")

    def get(self, path: str) -> dict[str, t.Any]:
        self.sent += 1
        url = self.base + path
        try:
            response = open_url(url, headers={k: v for k, v in self.headers.items() if k != "Content-Type"}, method="GET",
                                timeout=self.timeout, validate_certs=self.validate_certs, use_proxy=False, follow_redirects="none")
            raw = response.read(MAX_RULES_BYTES + 1)
        except HTTPError as exc:
            raise _http_error(exc) from None
        except (URLError, OSError, ValueError) as exc:
            raise QueryError(f"Prometheus at {url} could not be reached: {getattr(exc, 'reason', None) or exc}") from None
        if len(raw) > MAX_RULES_BYTES:
            raise QueryError(f"Prometheus at {url} answered more than {MAX_RULES_BYTES} bytes")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise QueryError(f"Prometheus at {url} answered something that is not JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success" or not isinstance(body.get("data"), dict):
            raise QueryError(f"Prometheus at {url} answered status {body.get('status') if isinstance(body, dict) else None!r}")
        return body["data"]


def epoch_of(stamp: t.Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 time as Prometheus writes it (nanoseconds cut to micro); None for never."""
    if not isinstance(stamp, str) or not stamp or stamp == NEVER:
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", stamp)
    if not match:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + fraction + zone).timestamp()


def age_of(stamp: t.Any, now: float) -> float | None:
    epoch = epoch_of(stamp)
    return None if epoch is None else round(max(0.0, now - epoch), 3)


def read_state(api: RulesApi) -> dict[str, t.Any]:
    """One reading: Prometheus' clock, its reload status and every alerting rule with its group."""
    now = api.query("time()").value
    data = api.get("/api/v1/rules?type=alert")
    try:
        runtime = api.get("/api/v1/status/runtimeinfo")
        reload = {"success": runtime.get("reloadConfigSuccess"), "last_config_time": runtime.get("lastConfigTime")}
    except QueryError:  # a proxy that only passes the query API: nothing known about reloads
        reload = {"success": None, "last_config_time": None}
    groups, loaded = {}, {}
    for group in data.get("groups") or []:
        interval = float(group.get("interval") or 0)
        rules = [rule for rule in group.get("rules") or [] if rule.get("type", "alerting") == "alerting"]
        groups[f"{group.get('file')}:{group.get('name')}"] = {
            "interval": interval, "last_evaluation_age": age_of(group.get("lastEvaluation"), now), "rules": len(rules)}
        for rule in rules:
            loaded.setdefault(str(rule.get("name")), []).append({
                "group": group.get("name"), "file": group.get("file"), "interval": interval,
                "health": rule.get("health"), "last_error": rule.get("lastError") or "", "state": rule.get("state"),
                "severity": (rule.get("labels") or {}).get("severity"),
                "last_evaluation_age": age_of(rule.get("lastEvaluation"), now)})
    return {"groups": groups, "loaded": loaded, "reload": reload}


def judge(state: dict[str, t.Any], expected: list[str], params: dict[str, t.Any], url: str) -> dict[str, t.Any]:
    """The result of one reading: what is missing, unhealthy or not evaluated, and the checks that failed."""
    loaded, stale = state["loaded"], params["stale_intervals"]
    missing = [name for name in expected if name not in loaded]
    unhealthy, not_evaluated = [], []
    for name in expected:
        for rule in loaded.get(name, []):
            where = {"name": name, "group": rule["group"]}
            if rule["health"] not in ("ok", "unknown"):
                unhealthy.append({**where, "health": rule["health"], "last_error": rule["last_error"]})
            age, bound = rule["last_evaluation_age"], stale * rule["interval"] or math.inf
            if age is None or age > bound:
                not_evaluated.append({**where, "last_evaluation_age": age, "interval": rule["interval"]})
    bad = {entry["name"] for entry in unhealthy + not_evaluated}
    severities = {severity: sorted(name for name, rules in loaded.items() if name not in bad
                                   and any(rule["severity"] == severity and rule["health"] == "ok"
                                           and rule["last_evaluation_age"] is not None for rule in rules))
                  for severity in params["required_severities"]}
    checks = []
    if not loaded:
        checks.append(NO_RULES.format(url=url))
    elif missing:
        checks.append(f"{len(missing)} expected alert(s) not loaded: {', '.join(missing)}")
    if unhealthy:
        errors = [f"{e['name']} ({e['group']}): {e['last_error'] or e['health']}" for e in unhealthy]
        checks.append("alert(s) failing to evaluate: " + "; ".join(errors))
    if not_evaluated:
        checks.append("alert(s) not evaluated" + (f" within {stale:g} evaluation intervals: " if stale else ": ")
                      + ", ".join(sorted({e["name"] for e in not_evaluated})))
    checks += [f"no loaded, healthy and evaluated alert has severity {severity!r}" for severity, names in severities.items() if not names]
    if state["reload"]["success"] is False:
        checks.append("Prometheus' last configuration reload failed: it runs with the rules it had before (see its log)")
    firing = sorted(name for name, rules in loaded.items() if any(rule["state"] == "firing" for rule in rules))
    return {"passed": not checks, "failed_checks": checks, "missing": missing, "unhealthy": unhealthy,
            "not_evaluated": not_evaluated, "firing": firing, "severities": severities, "loaded": loaded,
            "groups": state["groups"], "reload": state["reload"]}


def expected_alerts(module: AnsibleModule) -> list[str]:
    params, names = module.params, []
    if params["rules_file"]:
        if not HAS_YAML:
            module.fail_json(msg=missing_required_lib("PyYAML"), expected=[], passed=False, failed_checks=["PyYAML"])
        try:
            with open(params["rules_file"], encoding="utf-8") as handle:
                text = handle.read(MAX_RULES_BYTES + 1)
            if len(text) > MAX_RULES_BYTES:
                raise RulesFileError(f"{params['rules_file']} is larger than {MAX_RULES_BYTES} bytes")
            alerts = alerts_of_rules(text, params["rules_file"])
        except (OSError, UnicodeDecodeError) as exc:
            module.fail_json(msg=f"invalid options, no request was sent: rules_file {params['rules_file']} cannot be read: {exc}",
                             expected=[], passed=False, failed_checks=[str(exc)])
        except RulesFileError as exc:
            module.fail_json(msg=f"invalid options, no request was sent: rules_file {exc}", expected=[], passed=False, failed_checks=[str(exc)])
        wanted = params["required_severities"]
        names = [name for name, severity in alerts.items() if not wanted or severity in wanted]
        if not names:
            module.fail_json(msg=f"invalid options, no request was sent: rules_file {params['rules_file']} has no alert of severity "
                                 f"{', '.join(wanted)} (required_severities)", expected=[], passed=False,
                             failed_checks=["required_severities"])
    return sorted(set(names) | set(params["alerts"]))


def main() -> None:
    module = AnsibleModule(argument_spec={
        "prometheus_url": {"type": "str", "required": True},
        "rules_file": {"type": "path"},
        "alerts": {"type": "list", "elements": "str", "default": []},
        "required_severities": {"type": "list", "elements": "str", "default": []},
        "stale_intervals": {"type": "float", "default": 3},
        "wait": {"type": "float", "default": 0},
        "retry_delay": {"type": "float", "default": 1},
        "timeout": {"type": "float", "default": 10},
        "bearer_token": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
    }, supports_check_mode=True)
    params = module.params
    problems = problems_of(params)
    if problems:
        module.fail_json(msg="invalid options, no request was sent: " + "; ".join(problems), problems=problems, failed_checks=problems,
                         expected=[], passed=False)
    expected = expected_alerts(module)
    api = RulesApi(params["prometheus_url"], params["timeout"], params["bearer_token"], params["validate_certs"])
    started = time.monotonic()
    try:
        while True:
            result = judge(read_state(api), expected, params, api.base)
            if result["passed"] or time.monotonic() - started + params["retry_delay"] > params["wait"]:
                break
            time.sleep(params["retry_delay"])
    except QueryError as exc:
        module.fail_json(msg=f"cannot read the rules Prometheus runs: {exc}", expected=expected, passed=False,
                         failed_checks=[str(exc)], requests_sent=api.sent)
    waited = time.monotonic() - started
    result.update(expected=expected, waited_seconds=round(waited, 3), requests_sent=api.sent, changed=False)
    if not result["passed"]:
        module.fail_json(msg=f"Prometheus at {api.base} does not run the expected alerts as it should (after {math.floor(waited)} s): "
                             + "; ".join(result["failed_checks"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
