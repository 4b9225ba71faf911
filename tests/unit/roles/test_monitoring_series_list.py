"""The monitoring role's series check asks for every metric that its dashboard and alert rules read from a colour:
a panel or an alert on a metric the list forgets would go unchecked before the switch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "monitoring"
# Not a colour's: the backup's own gauge (pushed per environment by the backup, not scraped from a colour).
NOT_FROM_A_COLOUR = {"payments_backup_last_success_timestamp_seconds"}
PROMQL_WORDS = {"sum", "rate", "increase", "histogram_quantile", "max", "min", "count", "avg", "vector", "time", "changes",
                "max_over_time", "min_over_time", "absent", "clamp_min", "label_replace", "abs", "by", "without", "on",
                "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: identifiers followed by a selector or a range, or standing alone."""
    bare = re.sub(r'"[^"]*"', '""', re.sub(r"\{[^}]*\}", "{}", expr))
    bare = re.sub(r"\[[^\]]*\]", "[]", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    words = re.findall(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?=\s*(\{|\[|\s|\)|$|==|>|<|\*|/|-|\+))", bare)
    return {pair[0] for pair in words if pair[0] not in PROMQL_WORDS}


def read_by_dashboard_and_rules() -> set[str]:
    dashboard = json.loads((ROLE / "files" / "payments-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = yaml.safe_load((ROLE / "files" / "payments.rules.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return set().union(*(metric_names(expr) for expr in exprs))


def test_the_extraction_finds_the_names_of_an_expression() -> None:
    expr = 'sum by (le, operation) (rate(db_query_duration_seconds_bucket{environment=~"$environment"}[5m])) / up > 0.5'
    assert metric_names(expr) == {"db_query_duration_seconds_bucket", "up"}


def test_every_metric_the_dashboard_and_rules_read_is_checked() -> None:
    checked = set(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["monitoring_series_metrics"])
    read = read_by_dashboard_and_rules() - NOT_FROM_A_COLOUR
    assert read, "no metric name found in the dashboard and rules"
    assert read - checked == set()
