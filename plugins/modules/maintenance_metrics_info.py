#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: maintenance_metrics_info
short_description: Measure the daily or weekly maintenance figures of the payment service from Prometheus
version_added: 0.4.0
description:
  - With O(report=daily), measures over the last O(window) the payment success rate (succeeded / succeeded + failed +
    error), the refund rate (refunds / succeeded payments) and the 5xx responses of each route, and judges the two
    rates against O(success_rate_target) and O(refund_rate_target).
  - With O(report=weekly), measures the p95 latency of C(POST /v1/payments) and the payment volume of the last seven
    days and of the seven days before, and reports their ratios; a p95 ratio above O(p95_max_ratio) is a breach.
  - Fewer than O(min_payments) payments in the window (none included) is reported as V(no data), never as a pass, since a
    handful of probe payments cannot judge a rate. It is a breach only with O(fail_on_no_traffic=true). The refund rate
    needs O(min_payments) successful payments. No data for the earlier week is V(no baseline), not a breach.
  - The module never fails on a breach; it lists the breaches in RV(breaches) and the caller decides. It fails when
    Prometheus cannot be reached or rejects a query, and on bad options before any query is sent.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  prometheus_url:
    description: Base URL of Prometheus (C(http://) or C(https://)).
    type: str
    required: true
  environment:
    description: The C(environment) target label of the service's series.
    type: str
    required: true
  report:
    description: Which figures to measure.
    type: str
    choices: [daily, weekly]
    default: daily
  window:
    description: The daily window as a PromQL duration.
    type: str
    default: 24h
  success_rate_target:
    description: The payment success rate in percent that the daily rate must exceed (0 to 100).
    type: float
    default: 95.0
  refund_rate_target:
    description: The refund rate in percent that the daily rate must stay below (0 to 100).
    type: float
    default: 5.0
  min_payments:
    description: The fewest payments (for the refund rate, successful payments) in the daily window that a rate is
      judged on (at least 1).
    type: int
    default: 100
  fail_on_no_traffic:
    description: Whether too few payments in the daily window (see O(min_payments)) is a breach.
    type: bool
    default: false
  p95_max_ratio:
    description: The largest allowed ratio of this week's p95 latency to the previous week's (above 0).
    type: float
    default: 1.5
  timeout:
    description: Seconds to wait for each answer.
    type: float
    default: 10
  bearer_token:
    description: A bearer token for Prometheus.
    type: str
  validate_certs:
    description: Whether to verify Prometheus' TLS certificate.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Measure the day's payment figures
  payments.deploy.maintenance_metrics_info:
    prometheus_url: http://prometheus.internal:9090
    environment: production
  register: daily

- name: Compare this week's p95 latency and volume with the week before
  payments.deploy.maintenance_metrics_info:
    prometheus_url: http://prometheus.internal:9090
    environment: production
    report: weekly
    p95_max_ratio: 1.5
"""

RETURN = r"""
metrics:
  description:
    - "The figures measured, by name (daily: success_rate, refund_rate, payments, errors_5xx; weekly: p95_seconds,
      volume)."
    - A rate is in percent, or null with a status of V(no data).
  type: dict
  returned: success
breaches:
  description: One sentence per figure that missed its target.
  type: list
  elements: str
  returned: success
notes:
  description: Figures that could not be judged (no data, no baseline).
  type: list
  elements: str
  returned: success
queries_sent:
  description: How many queries were sent.
  type: int
  returned: success
"""

import math
import re
import typing as t
from urllib.parse import urlencode

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.payments.deploy.plugins.module_utils._analysis_prometheus import Prometheus, QueryError

DURATION = re.compile(r"^[0-9]+[smhdw]\Z")
ROUTES = 'route!~"/healthz.*|/readyz|/metrics"'


def argument_spec() -> dict[str, t.Any]:
    return {
        "prometheus_url": {"type": "str", "required": True},
        "environment": {"type": "str", "required": True},
        "report": {"type": "str", "choices": ["daily", "weekly"], "default": "daily"},
        "window": {"type": "str", "default": "24h"},
        "success_rate_target": {"type": "float", "default": 95.0},
        "refund_rate_target": {"type": "float", "default": 5.0},
        "min_payments": {"type": "int", "default": 100},
        "fail_on_no_traffic": {"type": "bool", "default": False},
        "p95_max_ratio": {"type": "float", "default": 1.5},
        "timeout": {"type": "float", "default": 10},
        "bearer_token": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
    }


def problems_of(params: t.Mapping[str, t.Any]) -> list[str]:
    """Everything wrong with the options, found before any query."""
    problems = []
    if not re.match(r"^https?://[^\s/]+[^\s]*\Z", params["prometheus_url"] or ""):
        problems.append(f"prometheus_url {params['prometheus_url']!r} is not an http:// or https:// URL")
    if not re.match(r"^[A-Za-z0-9_.-]+\Z", params["environment"] or ""):
        problems.append(f"environment {params['environment']!r} is not a plain label value")
    if not DURATION.match(params["window"] or ""):
        problems.append(f"window {params['window']!r} is not a PromQL duration such as 24h")
    for name in ("success_rate_target", "refund_rate_target"):
        value = params[name]
        if not math.isfinite(value) or value < 0 or value > 100:
            problems.append(f"{name} {value} is not a percentage between 0 and 100")
    if not (math.isfinite(params["p95_max_ratio"]) and params["p95_max_ratio"] > 0):
        problems.append(f"p95_max_ratio {params['p95_max_ratio']} must be a number above 0")
    if params["min_payments"] < 1:
        problems.append(f"min_payments {params['min_payments']} must be at least 1")
    if params["timeout"] <= 0:
        problems.append("timeout must be above 0")
    return problems


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def series(prometheus: Prometheus, promql: str, label: str) -> dict[str, float]:
    """Every series of a vector query by one of its labels (the shared client measures single values only)."""
    prometheus.sent += 1
    body = prometheus._post(urlencode({"query": promql}))  # pylint: disable=protected-access
    result = (body.get("data") or {}).get("result") or []
    return {str(item.get("metric", {}).get(label, "")): float(item["value"][1]) for item in result}


def daily(prometheus: Prometheus, params: t.Mapping[str, t.Any]) -> tuple[dict, list, list]:
    env, window = params["environment"], params["window"]
    selector = f'environment="{env}"'
    succeeded = finite(prometheus.query(f'sum(increase(payments_total{{{selector},outcome="succeeded"}}[{window}]))').value)
    attempted = finite(prometheus.query(
        f'sum(increase(payments_total{{{selector},outcome=~"succeeded|failed|error"}}[{window}]))').value)
    refunds = finite(prometheus.query(f'sum(increase(refunds_total{{{selector}}}[{window}]))').value)
    errors = series(prometheus, f'sum by (route) (increase(http_requests_total{{{selector},status=~"5..",{ROUTES}}}[{window}]))',
                    "route")
    breaches, notes = [], []
    metrics: dict[str, t.Any] = {"window": window, "payments": round(attempted or 0.0, 1),
                                 "errors_5xx": {route: round(count, 1) for route, count in sorted(errors.items()) if count > 0}}
    attempted, succeeded, least = attempted or 0.0, succeeded or 0.0, params["min_payments"]
    success_target, refund_target = params["success_rate_target"], params["refund_rate_target"]
    if attempted < least:
        metrics["success_rate"] = {"value": None, "target": f"> {success_target} %", "status": "no data"}
        metrics["refund_rate"] = {"value": None, "target": f"< {refund_target} %", "status": "no data"}
        too_few = f"{attempted:.0f} payments in {env} over the last {window}, fewer than the {least} a rate is judged on"
        notes.append(f"{too_few}: success and refund rates are no data")
        if params["fail_on_no_traffic"]:
            breaches.append(f"{too_few} (fail_on_no_traffic)")
        return metrics, breaches, notes
    success = 100.0 * succeeded / attempted
    metrics["success_rate"] = {"value": round(success, 2), "target": f"> {success_target} %",
                               "status": "pass" if success > success_target else "breach"}
    if success <= success_target:
        breaches.append(f"payment success rate {success:.2f} % over the last {window} is not above the target {success_target} %")
    if succeeded < least:
        metrics["refund_rate"] = {"value": None, "target": f"< {refund_target} %", "status": "no data"}
        notes.append(f"{succeeded:.0f} successful payments, fewer than {least}: the refund rate is no data")
    else:
        refund = 100.0 * (refunds or 0.0) / succeeded
        metrics["refund_rate"] = {"value": round(refund, 2), "target": f"< {refund_target} %",
                                  "status": "pass" if refund < refund_target else "breach"}
        if refund >= refund_target:
            breaches.append(f"refund rate {refund:.2f} % over the last {window} is not below the target {refund_target} %")
    return metrics, breaches, notes


def weekly(prometheus: Prometheus, params: t.Mapping[str, t.Any]) -> tuple[dict, list, list]:
    env = params["environment"]
    buckets = f'http_request_duration_seconds_bucket{{environment="{env}",route="/v1/payments"}}'
    volume = f'payments_total{{environment="{env}"}}'
    figures = {}
    for week, offset in (("this_week", ""), ("previous_week", " offset 7d")):
        figures[week] = {
            "p95": finite(prometheus.query(f"histogram_quantile(0.95, sum by (le) (increase({buckets}[7d]{offset})))").value),
            "volume": finite(prometheus.query(f"sum(increase({volume}[7d]{offset}))").value)}
    breaches, notes = [], []
    metrics: dict[str, t.Any] = {}
    for name, key in (("p95_seconds", "p95"), ("volume", "volume")):
        now, before = figures["this_week"][key], figures["previous_week"][key]
        entry: dict[str, t.Any] = {"this_week": _round(now), "previous_week": _round(before), "ratio": None}
        if now is None:
            entry["status"] = "no data"
            notes.append(f"{name}: no data for the last 7 days")
        elif not before:
            entry["status"] = "no baseline"
            notes.append(f"{name}: no baseline (no data for the 7 days before)")
        else:
            entry["ratio"] = round(now / before, 3)
            entry["status"] = "pass"
            if key == "p95" and entry["ratio"] > params["p95_max_ratio"]:
                entry["status"] = "breach"
                breaches.append(f"p95 latency of POST /v1/payments grew {entry['ratio']}x week over week "
                                f"({before:.3f} s to {now:.3f} s), above the allowed {params['p95_max_ratio']}x")
        metrics[name] = entry
    metrics["p95_seconds"]["max_ratio"] = params["p95_max_ratio"]
    return metrics, breaches, notes


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    problems = problems_of(params)
    if problems:
        module.fail_json(msg="invalid options, no query was sent: " + "; ".join(problems), problems=problems)
    prometheus = Prometheus(params["prometheus_url"], params["timeout"], params["bearer_token"], params["validate_certs"])
    try:
        metrics, breaches, notes = (daily if params["report"] == "daily" else weekly)(prometheus, params)
    except QueryError as exc:
        module.fail_json(msg=str(exc), rejected=exc.rejected)
    module.exit_json(changed=False, metrics=metrics, breaches=breaches, notes=notes, queries_sent=prometheus.sent)


if __name__ == "__main__":
    main()
