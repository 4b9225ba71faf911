#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: prometheus_series_info
short_description: Check that Prometheus holds the series of a colour that the dashboards and alerts read
version_added: 0.4.0
description:
  - For every metric name of O(metrics), counts in Prometheus the series that carry every label of O(labels) (for
    example C(environment) and C(colour)), with C(count(NAME{labels})).
  - A metric without a series is missing, for example because the release stopped exporting it or Prometheus does
    not scrape the colour; a dashboard panel would then stay empty and an alert built on it would never fire.
  - With O(wait), missing metrics are asked again every O(retry_delay) seconds until they appear or O(wait) seconds
    have passed (a colour whose scrape targets were just written needs a scrape interval).
  - Fails when a metric is missing at the end and O(fail_on_missing=true), when Prometheus cannot be reached or
    rejects a query, and on bad options before any query is sent.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  prometheus_url:
    description: Base URL of Prometheus (C(http://) or C(https://)).
    type: str
    required: true
  metrics:
    description: Metric names (as exported, for a histogram one of its C(_bucket), C(_count) or C(_sum) series).
    type: list
    elements: str
    required: true
  labels:
    description: Label values every series must carry (no regex; a value is matched exactly).
    type: dict
    default: {}
  wait:
    description: Seconds to keep asking for missing metrics.
    type: float
    default: 0
  retry_delay:
    description: Seconds between two rounds of questions while waiting.
    type: float
    default: 2
  fail_on_missing:
    description: Fail when a metric is still missing; with V(false) it is only listed in RV(missing).
    type: bool
    default: true
  timeout:
    description: Seconds each query may take.
    type: float
    default: 10
  bearer_token:
    description: Bearer token sent to Prometheus (never shown).
    type: str
  validate_certs:
    description: Verify Prometheus' TLS certificate.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Check that Prometheus scrapes every series the dashboards read from the green colour
  payments.deploy.prometheus_series_info:
    prometheus_url: http://127.0.0.1:9090
    metrics: [payments_total, http_requests_total, db_query_duration_seconds_bucket, process_cpu_seconds_total]
    labels:
      environment: production
      colour: green
    wait: 30
"""

RETURN = r"""
series:
  description: Each metric name with its number of series (0 when missing).
  returned: success
  type: dict
  sample: {payments_total: 4, db_query_duration_seconds_bucket: 78}
present:
  description: The metrics with at least one series.
  returned: success
  type: list
  elements: str
missing:
  description: The metrics without any series.
  returned: always
  type: list
  elements: str
selector:
  description: The label matchers every query carried.
  returned: always
  type: str
  sample: '{colour="green",environment="production"}'
waited_seconds:
  description: Seconds spent waiting for missing metrics.
  returned: success
  type: float
queries_sent:
  description: Queries sent to Prometheus.
  returned: success
  type: int
"""

import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.payments.deploy.plugins.module_utils._analysis_prometheus import Prometheus, QueryError

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def problems_of(params: dict) -> list[str]:
    problems = []
    if not re.match(r"^https?://[^\s/]+", params["prometheus_url"] or ""):
        problems.append(f"prometheus_url must be an http:// or https:// URL, got {params['prometheus_url']!r}")
    if not params["metrics"]:
        problems.append("metrics must name at least one metric")
    problems += [f"metrics: {name!r} is not a metric name" for name in params["metrics"] or [] if not METRIC_NAME.match(str(name))]
    for key, value in (params["labels"] or {}).items():
        if not LABEL_NAME.match(str(key)) or str(key).startswith("__"):
            problems.append(f"labels: {key!r} is not a label name")
        if not isinstance(value, str) or not value or any(ch in value for ch in "\n\r\\\""):
            problems.append(f"labels: the value of {key!r} must be a non-empty string without quotes, backslashes or line breaks")
    for option in ("wait", "retry_delay", "timeout"):
        if not params[option] >= 0 or params[option] > 86400:
            problems.append(f"{option} must be between 0 and 86400 seconds, got {params[option]!r}")
    if params["timeout"] == 0 or params["retry_delay"] == 0:
        problems.append("timeout and retry_delay must be above 0")
    return problems


def selector_of(labels: dict) -> str:
    return "{" + ",".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"


def count_series(prometheus: Prometheus, names: list[str], selector: str, counts: dict[str, int]) -> list[str]:
    """Ask for each name of NAMES; record its count; return the names still without a series."""
    missing = []
    for name in names:
        value = prometheus.query(f"count({name}{selector})").value
        counts[name] = int(value or 0)
        if not counts[name]:
            missing.append(name)
    return missing


def main() -> None:
    module = AnsibleModule(argument_spec={
        "prometheus_url": {"type": "str", "required": True},
        "metrics": {"type": "list", "elements": "str", "required": True},
        "labels": {"type": "dict", "default": {}},
        "wait": {"type": "float", "default": 0},
        "retry_delay": {"type": "float", "default": 2},
        "fail_on_missing": {"type": "bool", "default": True},
        "timeout": {"type": "float", "default": 10},
        "bearer_token": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
    }, supports_check_mode=True)
    params = module.params
    problems = problems_of(params)
    if problems:
        module.fail_json(msg="invalid options, no query was sent: " + "; ".join(problems), problems=problems, missing=[], selector="")
    selector = selector_of(params["labels"])
    names = list(dict.fromkeys(params["metrics"]))
    prometheus = Prometheus(params["prometheus_url"], params["timeout"], params["bearer_token"], params["validate_certs"])
    counts: dict[str, int] = {}
    started = time.monotonic()
    try:
        missing = count_series(prometheus, names, selector, counts)
        while missing and time.monotonic() - started + params["retry_delay"] <= params["wait"]:
            time.sleep(params["retry_delay"])
            missing = count_series(prometheus, missing, selector, counts)
    except QueryError as exc:
        module.fail_json(msg=f"{exc} (series of {selector})", rejected=exc.rejected, missing=[], selector=selector)
    result = {"series": counts, "present": [name for name in names if counts.get(name)], "missing": missing, "selector": selector,
              "waited_seconds": round(time.monotonic() - started, 3), "queries_sent": prometheus.sent, "changed": False}
    if missing and params["fail_on_missing"]:
        module.fail_json(msg=f"Prometheus holds no series of {', '.join(missing)} for {selector} after {result['waited_seconds']} s: "
                             "the dashboards and alerts that read them would stay empty. Is the colour scraped, and does the "
                             "release still export them?", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
