#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_analysis
short_description: Decide from Prometheus whether a release is healthy, measuring metrics over a window
version_added: 0.3.0
description:
  - Measures each of O(metrics) O(count) times, one O(interval) apart, with an instant query to Prometheus, judges
    every measurement against the metric's conditions and returns the analysis' RV(phase) - V(Successful),
    V(Failed) or V(Inconclusive) - with every measurement. The semantics follow Argo Rollouts' AnalysisTemplate;
    C(docs/analysis.md) describes them in full.
  - "A measurement is V(Successful), V(Failed) or V(Inconclusive). With only a success condition, not meeting it is
    V(Failed); with only a failure condition, not meeting it is V(Successful); with both, meeting neither (or both) is
    V(Inconclusive). With O(metrics[].max_ratio), a value above C(max_ratio x baseline) is V(Failed)."
  - No data (an empty vector), NaN, an infinity, traffic below O(metrics[].min_samples) and a query that got no answer
    (Prometheus unreachable, an HTTP error) are V(Inconclusive), never a pass, and never V(Failed).
  - "A metric is V(Failed) as soon as its failed measurements exceed its failure limit, and the whole analysis stops
    at once (fail fast). It is V(Inconclusive) once its inconclusive measurements exceed its inconclusive limit (its
    measurements stop, the other metrics go on), and V(Successful) after O(count) measurements otherwise - but never
    without at least one successful measurement, nor with a failure that O(inconclusive_when) excused."
  - The analysis is V(Failed) when a metric failed, V(Successful) when every metric succeeded, V(Inconclusive)
    otherwise. The module itself does not fail on the phase; the caller decides (the C(payments.deploy.bake) role fails
    on V(Failed) and stops on V(Inconclusive)).
  - The first measurement is taken one O(interval) after the start (each measurement then looks at traffic after the
    start), the last one O(count) intervals after it; the module never sleeps after the last measurement.
  - With O(mode=validate) each query is sent once, to check that Prometheus accepts it (for example in preflight,
    before the traffic switch). It fails naming the metric and the query when Prometheus rejects one (HTTP 400 or
    422), answers more than one series, or cannot be reached. No data is accepted in this mode.
  - "Queries may use C(${name}) placeholders: the keys of O(labels), C(${interval}) (O(interval) as a PromQL duration)
    and C(${elapsed}) (the time from the start to the measurement, for example C(12s); the whole window in
    O(mode=validate) and for a O(metrics[].baseline_query))."
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads from Prometheus, so it runs the same in check mode (the verdict is what a check
      run wants to see).
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  prometheus_url:
    description: Base URL of Prometheus, for example C(http://prometheus.internal:9090). No credentials in it.
    type: str
    required: true
  mode:
    description: V(analyze) runs the analysis; V(validate) sends each query once and reports its value.
    type: str
    choices: [analyze, validate]
    default: analyze
  metrics:
    description: The metrics to measure. Names are unique.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The metric's name in results and messages (letters, digits, C(. _ -)).
        type: str
        required: true
      query:
        description: A PromQL instant query returning a scalar or a one-element vector; more series are an error.
        type: str
        required: true
      unit:
        description:
          - What the value is (V(cores) for CPU seconds per second). Thresholds of a V(ratio) must lie between V(0) and
            V(1); of any other unit, be at least V(0). Without a unit thresholds are only checked to be finite.
        type: str
        choices: [ratio, seconds, bytes, count, factor, cores]
      success_condition:
        description: The measurement passes when C(value OP threshold) holds.
        type: dict
        suboptions:
          op:
            description: One of C(<), C(<=), C(>), C(>=), C(==), C(!=). Nothing else is evaluated.
            type: str
            required: true
          threshold:
            description: A finite number.
            type: float
            required: true
      failure_condition:
        description: The measurement fails when C(value OP threshold) holds.
        type: dict
        suboptions:
          op:
            description: One of C(<), C(<=), C(>), C(>=), C(==), C(!=).
            type: str
            required: true
          threshold:
            description: A finite number.
            type: float
            required: true
      baseline:
        description: A baseline value measured earlier (above V(0)), for O(metrics[].max_ratio).
        type: float
      baseline_query:
        description: A query evaluated once before the first measurement (at O(metrics[].baseline_time) when given)
          whose value is the baseline for O(metrics[].max_ratio). No data, NaN or V(0) make every measurement of the
          metric V(Inconclusive).
        type: str
      baseline_time:
        description: Epoch seconds at which O(metrics[].baseline_query) is evaluated, for example right before the
          traffic switch.
        type: float
      max_ratio:
        description: A measurement above C(max_ratio x baseline) fails (above V(0), at most V(1000)).
        type: float
      min_traffic_query:
        description: A query for the traffic behind the measurement (for example payments in the window); below
          O(metrics[].min_samples), or without data, the measurement is V(Inconclusive).
        type: str
      min_samples:
        description: The traffic O(metrics[].min_traffic_query) must reach (at least V(0)).
        type: float
        default: 0
      failure_limit:
        description: This metric's failure limit; O(failure_limit) when not given.
        type: int
      inconclusive_limit:
        description: This metric's inconclusive limit; O(inconclusive_limit) when not given.
        type: int
  inconclusive_when:
    description:
      - Queries that say the window cannot judge the release, for example that a dependency both colours share is
        down. Each is measured at every measurement, before the metrics; it holds when its value is a finite number
        above V(0). No data, NaN and an unanswered query do not hold.
      - While one holds, a measurement that would be V(Failed) is V(Inconclusive) instead, with the guard named in its
        C(reason) and C(excused_by). Successful and Inconclusive measurements are unchanged, and a metric with an
        excused failure is never V(Successful); a shared outage makes the analysis V(Inconclusive) (a person decides)
        unless another metric failed on its own.
      - With O(mode=validate) each is sent once too.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The guard's name in results and messages (letters, digits, C(. _ -)); unique.
        type: str
        required: true
      query:
        description: A PromQL instant query returning a scalar or a one-element vector (or no data); the same
          placeholders as the metrics' queries.
        type: str
        required: true
  labels:
    description:
      - Values for the C(${name}) placeholders of the queries, for example C(environment), C(colour), C(release).
        Names are lower case letters, digits and C(_); values may not hold quotes, backslashes, braces or newlines.
      - A placeholder that neither O(labels) nor the built-ins know fails before any query is sent.
    type: dict
    default: {}
  interval:
    description: Seconds between measurements (above V(0)).
    type: float
    default: 60
  count:
    description: How many measurements of each metric (V(1) to V(1000)). The window is O(interval) x O(count).
    type: int
    default: 5
  failure_limit:
    description: Failed measurements a metric tolerates before it is V(Failed); from V(0) to below O(count).
    type: int
    default: 0
  inconclusive_limit:
    description: Inconclusive measurements a metric tolerates before it is V(Inconclusive); from V(0) to below O(count).
    type: int
    default: 0
  scrape_interval:
    description:
      - Prometheus' scrape interval for the targets, in seconds. The window must span two scrapes, and so must
        O(interval) when a query uses C(${interval}) or C(${elapsed}) (a C(rate()) needs two samples).
    type: float
    default: 15
  timeout:
    description: Seconds each query may take (the HTTP request and Prometheus' evaluation).
    type: float
    default: 10
  bearer_token:
    description: A bearer token for a Prometheus behind authentication. Never shown.
    type: str
  validate_certs:
    description: Verify Prometheus' TLS certificate.
    type: bool
    default: true
notes:
  - Every option is checked before any query is sent; all problems are reported together.
  - The result is meant to be journalled as it is - JSON, compact, NaN and infinities as the strings C(NaN),
    C(+Inf), C(-Inf).
seealso:
  - name: Argo Rollouts analysis
    description: The AnalysisTemplate semantics this module follows.
    link: https://argo-rollouts.readthedocs.io/en/stable/features/analysis/
"""

EXAMPLES = r"""
- name: Bake the green colour for 10 minutes
  payments.deploy.release_analysis:
    prometheus_url: http://prometheus.internal:9090
    labels: {environment: production, colour: green}
    interval: 60
    count: 10
    failure_limit: 1
    metrics:
      - name: payment_success
        unit: ratio
        query: >-
          sum(increase(payments_total{environment="${environment}",colour="${colour}",outcome="succeeded"}[${elapsed}]))
          / sum(increase(payments_total{environment="${environment}",colour="${colour}",outcome=~"succeeded|failed|error"}[${elapsed}]))
        failure_condition: {op: "<", threshold: 0.90}
        min_traffic_query: >-
          sum(increase(payments_total{environment="${environment}",colour="${colour}",outcome=~"succeeded|failed|error"}[${elapsed}]))
        min_samples: 20
      - name: latency_p95
        unit: seconds
        query: >-
          histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{environment="${environment}",colour="${colour}"}[${elapsed}])))
        success_condition: {op: "<", threshold: 3}
        baseline: 0.120
        max_ratio: 1.5
  register: analysis

- name: Stop on anything but a pass
  ansible.builtin.fail:
    msg: "{{ analysis.message }}"
  when: analysis.phase != 'Successful'

- name: Check before the switch that Prometheus accepts every query
  payments.deploy.release_analysis:
    prometheus_url: http://prometheus.internal:9090
    mode: validate
    labels: {environment: production, colour: green}
    metrics:
      - name: http_5xx
        query: sum(rate(http_requests_total{environment="${environment}",colour="${colour}",status=~"5.."}[5m]))
        failure_condition: {op: ">", threshold: 0}
"""

RETURN = r"""
phase:
  description: V(Successful), V(Failed) or V(Inconclusive).
  returned: mode=analyze
  type: str
  sample: Failed
message:
  description: One line per analysis naming each metric's phase and, when not successful, why.
  returned: mode=analyze
  type: str
  sample: "Failed: payment_success Failed (2 failed, 0 inconclusive of 2: 0.8 meets the failure condition < 0.9)"
stopped_early:
  description: Why the analysis stopped before O(count) measurements (a metric failed), else V(null).
  returned: mode=analyze
  type: str
metrics:
  description:
    - "O(mode=analyze): per metric its C(name), C(phase) (V(Stopped) for a metric still running when another
      failed), C(query) (labels filled in; C(${elapsed}) is each measurement's C(window)), its conditions,
      C(failure_limit), C(inconclusive_limit), C(counts) (C(successful), C(failed), C(inconclusive), C(error),
      C(excused)), the
      C(baseline) (C(value), C(query), C(error)) when it has a C(max_ratio), and C(measurements): C(n), C(at) (seconds
      after the start), C(value), C(traffic), C(window), C(verdict), C(excused_by) (the O(inconclusive_when) queries
      that held, for an excused failure), and C(reason) or C(error) when not successful."
    - "O(mode=validate): per metric C(name), each query as sent (C(query), C(baseline_query), C(min_traffic_query))
      and its value (C(value), C(baseline), C(min_traffic)); V(null) is no data."
  returned: always
  type: list
  elements: dict
  sample: [{"name": "payment_success", "phase": "Failed", "unit": "ratio", "failure_condition": "< 0.9",
            "counts": {"successful": 0, "failed": 2, "inconclusive": 0, "error": 0},
            "measurements": [{"n": 1, "at": 60.0, "window": "60s", "value": 0.8, "traffic": 41.0,
                              "verdict": "Failed", "reason": "0.8 meets the failure condition < 0.9"}]}]
inconclusive_when:
  description:
    - "O(mode=analyze): per O(inconclusive_when) query its C(name), C(query) (labels filled in), C(held_at) (the
      measurement numbers at which it held) and C(measurements): C(n), C(at), C(value), C(holds), and C(error) when
      Prometheus gave no answer."
    - "O(mode=validate): per query its C(name), C(query) as sent and C(value)."
  returned: always
  type: list
  elements: dict
  sample: [{"name": "shared_dependency_down", "held_at": [2, 3], "query": "count(...)",
            "measurements": [{"n": 1, "at": 4.0, "value": null, "holds": false}]}]
started_at:
  description: Epoch seconds when the analysis started.
  returned: always
  type: float
duration:
  description: Seconds the module took.
  returned: always
  type: float
interval:
  description: O(interval).
  returned: mode=analyze
  type: float
count:
  description: O(count).
  returned: mode=analyze
  type: int
queries_sent:
  description: How many queries were sent to Prometheus.
  returned: always
  type: int
query_seconds:
  description: Seconds spent waiting for Prometheus, in all.
  returned: always
  type: float
mode:
  description: O(mode).
  returned: always
  type: str
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils._analysis_options import (
    argument_spec,
    guards_from,
    metrics_from,
    validate,
)
from ansible_collections.payments.deploy.plugins.module_utils._analysis_prometheus import Prometheus, QueryError
from ansible_collections.payments.deploy.plugins.module_utils._analysis_run import (
    Analysis,
    validate_guards,
    validate_queries,
)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    problems = validate(params)
    if problems:
        module.fail_json(msg="invalid options, no query was sent: " + "; ".join(problems), problems=problems,
                         changed=False)
    metrics, guards = metrics_from(params), guards_from(params)
    prometheus = Prometheus(params["prometheus_url"], params["timeout"], params["bearer_token"],
                            params["validate_certs"])
    if params["mode"] == "validate":
        started_wall, started = time.time(), time.monotonic()
        try:
            checked = validate_queries(prometheus, metrics, params["interval"], params["count"])
            guards_checked = validate_guards(prometheus, guards, params["interval"], params["count"])
        except QueryError as exc:
            module.fail_json(msg=str(exc), rejected=exc.rejected, changed=False, mode="validate")
        module.exit_json(changed=False, mode="validate", metrics=checked, inconclusive_when=guards_checked,
                         started_at=round(started_wall, 3),
                         duration=round(time.monotonic() - started, 3), queries_sent=prometheus.sent,
                         query_seconds=round(prometheus.seconds, 3))
    result = Analysis(prometheus, metrics, params["interval"], params["count"], guards=guards).run()
    module.exit_json(changed=False, mode="analyze", **result)


if __name__ == "__main__":
    main()
