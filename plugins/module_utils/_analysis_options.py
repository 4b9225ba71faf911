# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The release_analysis module's options: the argument spec, every check made before any query, the metric settings.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import math
import re
import string
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

OPS: dict[str, t.Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}
UNITS = ("ratio", "seconds", "bytes", "count", "factor", "cores")
# Filled by the module for each measurement; every other ${name} comes from the labels option.
BUILTIN_PLACEHOLDERS = ("interval", "elapsed")
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
LABEL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}\Z")
# A label value lands inside a PromQL string or regex: nothing that could end the string or open a selector.
UNSAFE_LABEL_VALUE = re.compile(r'["\\\n{}`]')
MAX_COUNT = 1000
MAX_SECONDS = 86400.0
CONDITION_SPEC = {"op": {"type": "str", "required": True}, "threshold": {"type": "float", "required": True}}


def argument_spec() -> dict[str, dict[str, t.Any]]:
    """The options of payments.deploy.release_analysis (documented in the module)."""
    return {
        "prometheus_url": {"type": "str", "required": True},
        "mode": {"type": "str", "default": "analyze", "choices": ["analyze", "validate"]},
        "metrics": {"type": "list", "elements": "dict", "required": True, "options": {
            "name": {"type": "str", "required": True},
            "query": {"type": "str", "required": True},
            "unit": {"type": "str", "choices": list(UNITS)},
            "success_condition": {"type": "dict", "options": CONDITION_SPEC},
            "failure_condition": {"type": "dict", "options": CONDITION_SPEC},
            "baseline": {"type": "float"},
            "baseline_query": {"type": "str"},
            "baseline_time": {"type": "float"},
            "max_ratio": {"type": "float"},
            "min_traffic_query": {"type": "str"},
            "min_samples": {"type": "float", "default": 0.0},
            "failure_limit": {"type": "int"},
            "inconclusive_limit": {"type": "int"},
        }},
        "inconclusive_when": {"type": "list", "elements": "dict", "default": [], "options": {
            "name": {"type": "str", "required": True},
            "query": {"type": "str", "required": True},
        }},
        "labels": {"type": "dict", "default": {}},
        "interval": {"type": "float", "default": 60.0},
        "count": {"type": "int", "default": 5},
        "failure_limit": {"type": "int", "default": 0},
        "inconclusive_limit": {"type": "int", "default": 0},
        "scrape_interval": {"type": "float", "default": 15.0},
        "timeout": {"type": "float", "default": 10.0},
        "bearer_token": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
    }


@dataclass(frozen=True)
class Condition:
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Metric:
    """One metric with its queries' labels filled in (the built-in placeholders stay for each measurement)."""

    name: str
    query: str
    unit: str | None
    success: Condition | None
    failure: Condition | None
    baseline: float | None
    baseline_query: str | None
    baseline_time: float | None
    max_ratio: float | None
    min_traffic_query: str | None
    min_samples: float
    failure_limit: int
    inconclusive_limit: int

    def queries(self) -> list[tuple[str, str]]:
        """(role, query) of every query this metric sends."""
        pairs = [("query", self.query), ("baseline_query", self.baseline_query),
                 ("min_traffic_query", self.min_traffic_query)]
        return [(role, query) for role, query in pairs if query]


@dataclass(frozen=True)
class Guard:
    """An inconclusive_when query with its labels filled in: while its value is above 0, the window cannot judge the
    release (a dependency both colours share is down), and a Failed measurement counts as Inconclusive."""

    name: str
    query: str


def placeholders(query: str) -> set[str]:
    """The ${name} placeholders of a query (a lone $ is left alone: PromQL has none)."""
    return {m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(query)
            if m.group("named") or m.group("braced")}


def fill(query: str, values: t.Mapping[str, str]) -> str:
    """The query with the placeholders that ``values`` knows filled in; the others are kept."""
    return string.Template(query).safe_substitute(values)


def prometheus_duration(seconds: float) -> str:
    """A PromQL duration (whole seconds when exact, else milliseconds: PromQL has no fractions)."""
    millis = max(1, int(round(seconds * 1000)))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _finite(value: t.Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check_number(problems: list[str], what: str, value: float | None, low: float, high: float,
                  low_open: bool = False) -> None:
    if value is None:
        return
    if not _finite(value):
        problems.append(f"{what} must be a finite number, got {value}")
    elif value < low or (low_open and value == low) or value > high:
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        problems.append(f"{what} must be {bound} and at most {high:g}, got {value:g}")


def _check_url(problems: list[str], url: str) -> None:
    if not url.isprintable() or any(c.isspace() for c in url):
        # urlsplit drops tabs and newlines silently; a line separator would reach the request line
        problems.append(f"prometheus_url {url[:200]!r} must not hold white space, line breaks or control characters")
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"prometheus_url must be an http:// or https:// URL, got {url!r}")
    elif parts.username or parts.password or parts.query or parts.fragment:
        problems.append("prometheus_url must have no credentials (use bearer_token), query or fragment")


def _check_labels(problems: list[str], labels: t.Mapping[str, t.Any]) -> None:
    for key, value in labels.items():
        if not LABEL_NAME.match(str(key)) or key in BUILTIN_PLACEHOLDERS:
            problems.append(f"labels: {key!r} is not a usable placeholder name (lower case letters, digits and _; "
                            f"not {', '.join(BUILTIN_PLACEHOLDERS)})")
        elif not isinstance(value, (str, int)) or isinstance(value, bool) or UNSAFE_LABEL_VALUE.search(str(value)):
            problems.append(f"labels.{key} must be a string without quotes, backslashes, braces or newlines")


def _check_condition(problems: list[str], where: str, condition: dict[str, t.Any] | None,
                     unit: str | None) -> None:
    if condition is None:
        return
    if condition["op"] not in OPS:
        problems.append(f"{where}.op {condition['op']!r} is not one of {', '.join(OPS)}")
    high = 1.0 if unit == "ratio" else math.inf
    low = 0.0 if unit in UNITS else -math.inf
    threshold = condition["threshold"]
    if not _finite(threshold):
        problems.append(f"{where}.threshold must be a finite number, got {threshold}")
    elif not low <= threshold <= high:
        problems.append(f"{where}.threshold {threshold:g} is out of range for unit {unit} ({low:g} to {high:g})")


def _check_query(problems: list[str], where: str, query: str | None, label_names: set[str],
                 range_placeholder_used: list[str]) -> None:
    if query is None:
        return
    if not query.strip():
        problems.append(f"{where} is empty")
        return
    unknown = placeholders(query) - label_names - set(BUILTIN_PLACEHOLDERS)
    if unknown:
        problems.append(f"{where} uses unknown placeholder(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(label_names | set(BUILTIN_PLACEHOLDERS)))})")
    if placeholders(query) & set(BUILTIN_PLACEHOLDERS):
        range_placeholder_used.append(where)


def _check_guards(problems: list[str], guards: list[dict[str, t.Any]], label_names: set[str],
                  range_placeholder_used: list[str]) -> None:
    names = [guard["name"] for guard in guards]
    for guard in guards:
        if not NAME.match(guard["name"] or ""):
            problems.append(f"inconclusive_when name {guard['name']!r} must be 1 to 64 letters, digits and . _ -")
        _check_query(problems, f"inconclusive_when[{guard['name']}].query", guard["query"], label_names,
                     range_placeholder_used)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"inconclusive_when names must be unique: {', '.join(repeated)} more than once")


def _check_metric(problems: list[str], spec: dict[str, t.Any], params: dict[str, t.Any], label_names: set[str],
                  range_placeholder_used: list[str]) -> None:
    where = f"metrics[{spec['name']}]"
    if not NAME.match(spec["name"] or ""):
        problems.append(f"metric name {spec['name']!r} must be 1 to 64 letters, digits and . _ -")
    for role in ("query", "baseline_query", "min_traffic_query"):
        _check_query(problems, f"{where}.{role}", spec[role], label_names, range_placeholder_used)
    _check_condition(problems, f"{where}.success_condition", spec["success_condition"], spec["unit"])
    _check_condition(problems, f"{where}.failure_condition", spec["failure_condition"], spec["unit"])
    has_baseline = spec["baseline"] is not None or spec["baseline_query"] is not None
    if spec["baseline"] is not None and spec["baseline_query"] is not None:
        problems.append(f"{where}: give baseline or baseline_query, not both")
    if spec["max_ratio"] is not None and not has_baseline:
        problems.append(f"{where}.max_ratio needs a baseline or a baseline_query")
    if has_baseline and spec["max_ratio"] is None:
        problems.append(f"{where}: a baseline is only used with max_ratio")
    if spec["baseline_time"] is not None and spec["baseline_query"] is None:
        problems.append(f"{where}.baseline_time needs a baseline_query")
    _check_number(problems, f"{where}.baseline", spec["baseline"], 0.0, math.inf, low_open=True)
    _check_number(problems, f"{where}.baseline_time", spec["baseline_time"], 0.0, math.inf, low_open=True)
    _check_number(problems, f"{where}.max_ratio", spec["max_ratio"], 0.0, 1000.0, low_open=True)
    _check_number(problems, f"{where}.min_samples", spec["min_samples"], 0.0, math.inf)
    if not (spec["success_condition"] or spec["failure_condition"] or spec["max_ratio"] is not None):
        problems.append(f"{where} needs a success_condition, a failure_condition or a max_ratio: "
                        "a metric without one could never fail")
    _check_limits(problems, where + ".", spec["failure_limit"], spec["inconclusive_limit"], params["count"])


def _check_limits(problems: list[str], where: str, failure_limit: int | None, inconclusive_limit: int | None,
                  count: int) -> None:
    # A limit of count or more would let a metric pass without one failed (or one measured) measurement counting.
    for name, limit in (("failure_limit", failure_limit), ("inconclusive_limit", inconclusive_limit)):
        if limit is not None and not 0 <= limit < max(count, 1):
            problems.append(f"{where}{name} must be at least 0 and below count ({count}), got {limit}")


def validate(params: dict[str, t.Any]) -> list[str]:
    """Every problem with the options, all together; an empty list when the analysis may start."""
    problems: list[str] = []
    _check_url(problems, params["prometheus_url"] or "")
    labels = params["labels"] or {}
    _check_labels(problems, labels)
    _check_number(problems, "interval", params["interval"], 0.0, MAX_SECONDS, low_open=True)
    _check_number(problems, "scrape_interval", params["scrape_interval"], 0.0, 3600.0, low_open=True)
    _check_number(problems, "timeout", params["timeout"], 0.0, 600.0, low_open=True)
    if not 1 <= params["count"] <= MAX_COUNT:
        problems.append(f"count must be from 1 to {MAX_COUNT}, got {params['count']}")
    _check_limits(problems, "", params["failure_limit"], params["inconclusive_limit"], params["count"])
    metrics = params["metrics"] or []
    if not metrics:
        problems.append("metrics must name at least one metric")
    names = [m["name"] for m in metrics]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"metric names must be unique: {', '.join(duplicates)} more than once")
    range_users: list[str] = []
    for spec in metrics:
        _check_metric(problems, spec, params, set(labels), range_users)
    _check_guards(problems, params["inconclusive_when"] or [], set(labels), range_users)
    if not problems:
        _check_window(problems, params, range_users)
    return problems


def _check_window(problems: list[str], params: dict[str, t.Any], range_users: list[str]) -> None:
    # rate() and friends need two scrapes inside their range; a shorter window can only ever measure "no data".
    interval, count, scrape = params["interval"], params["count"], params["scrape_interval"]
    if interval * count < 2 * scrape:
        problems.append(f"the window (interval x count = {interval * count:g} s) must be at least two scrape "
                        f"intervals ({2 * scrape:g} s)")
    if range_users and interval < 2 * scrape:
        problems.append(f"interval ({interval:g} s) must be at least two scrape intervals ({2 * scrape:g} s) when a "
                        f"query uses ${{interval}} or ${{elapsed}} ({', '.join(range_users)})")


def _condition(spec: dict[str, t.Any] | None) -> Condition | None:
    return Condition(spec["op"], float(spec["threshold"])) if spec else None


def metrics_from(params: dict[str, t.Any]) -> list[Metric]:
    """The validated metrics with the labels filled into their queries."""
    labels = {key: str(value) for key, value in (params["labels"] or {}).items()}

    def filled(query: str | None) -> str | None:
        return fill(query, labels) if query else None

    out = []
    for spec in params["metrics"]:
        out.append(Metric(
            name=spec["name"], query=fill(spec["query"], labels), unit=spec["unit"],
            success=_condition(spec["success_condition"]), failure=_condition(spec["failure_condition"]),
            baseline=spec["baseline"], baseline_query=filled(spec["baseline_query"]),
            baseline_time=spec["baseline_time"], max_ratio=spec["max_ratio"],
            min_traffic_query=filled(spec["min_traffic_query"]), min_samples=float(spec["min_samples"] or 0.0),
            failure_limit=params["failure_limit"] if spec["failure_limit"] is None else spec["failure_limit"],
            inconclusive_limit=(params["inconclusive_limit"] if spec["inconclusive_limit"] is None
                                else spec["inconclusive_limit"])))
    return out


def guards_from(params: dict[str, t.Any]) -> list[Guard]:
    """The validated inconclusive_when queries with the labels filled in."""
    labels = {key: str(value) for key, value in (params["labels"] or {}).items()}
    return [Guard(name=spec["name"], query=fill(spec["query"], labels)) for spec in params["inconclusive_when"] or []]
