# Copyright: Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run report's chart: requests per second, error rate and p95 latency through the switch and the bake.

The series come from Prometheus (query_range over the run's window) when the inventory names one, otherwise from the
requests the run made itself (frontend samples, payment probes, smoke-test payments). The picture is a PNG drawn
with matplotlib (Agg), embedded in the HTML page as a data URI.
"""

from __future__ import annotations

import base64
import io
import json
import math
import urllib.parse

SAMPLE_ACTIONS = ("payments.deploy.frontend_sample_info", "payments.deploy.payment_probe", "payments.deploy.smoke_test")
MAX_BUCKETS = 60
# Fewer requests per bucket make a rate and a p95 that say little.
MIN_PER_BUCKET = 5


def p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def sample_events(sample: dict) -> list[tuple[float, float, bool]]:
    """(epoch, seconds, failed) of each request one sample-carrying result made, placed one after the other from the
    task's start (the modules send them in sequence)."""
    result, clock, events = sample["result"], sample["start"], []
    if sample["action"] == "payments.deploy.frontend_sample_info":
        requests = [(a.get("elapsed"), a.get("error") is not None) for a in result.get("answers") or [] if isinstance(a, dict)]
    elif sample["action"] == "payments.deploy.payment_probe":
        requests = [((p.get("latency") or {}).get("create"), p.get("error") is not None)
                    for p in result.get("probes") or [] if isinstance(p, dict)]
    else:
        requests = [(p.get("seconds"), p.get("payment_id") is None) for p in result.get("payments") or [] if isinstance(p, dict)]
    for seconds, failed in requests:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            continue
        clock += seconds
        events.append((clock, float(seconds), failed))
    return events


def series_from_samples(samples: list[dict], run_start: float) -> dict:
    """The chart's points from the run's own requests, in up to MAX_BUCKETS time buckets."""
    events = sorted(event for sample in samples if sample["action"] in SAMPLE_ACTIONS for event in sample_events(sample))
    chart = {"source": "samples", "requests": len(events), "errors": sum(1 for event in events if event[2]), "points": []}
    if not events:
        return chart
    # Each request is placed at its end: the buckets start at the first one's start.
    first, last = events[0][0] - events[0][1], events[-1][0]
    count = min(MAX_BUCKETS, max(1, len(events) // MIN_PER_BUCKET))
    width = max(last - first, 0.001) / count
    buckets: dict[int, list[tuple[float, float, bool]]] = {}
    for event in events:
        buckets.setdefault(min(count - 1, int((event[0] - first) // width)), []).append(event)
    for index in sorted(buckets):
        bucket = buckets[index]
        chart["points"].append({
            "t": round(first + (index + 0.5) * width - run_start, 3),
            "rps": round(len(bucket) / width, 3),
            "requests": len(bucket),
            "error_rate": round(sum(1 for event in bucket if event[2]) / len(bucket), 4),
            "p95": round(p95([event[1] for event in bucket]), 4),
        })
    chart["bucket_seconds"] = width
    return chart


def prometheus_queries(environment: str | None, window: int) -> dict[str, str]:
    """The three PromQL queries of the chart, over the service's request metrics of ENVIRONMENT."""
    def metric(name: str, *matchers: str) -> str:
        selected = ([f'environment="{environment}"'] if environment else []) + list(matchers)
        return f"{name}{{{','.join(selected)}}}" if selected else name
    requests = metric("http_requests_total")
    errors = metric("http_requests_total", 'status=~"5.."')
    buckets = metric("http_request_duration_seconds_bucket", 'route!~"/metrics"')
    return {
        "rps": f"sum(rate({requests}[{window}s]))",
        "error_rate": f"(sum(rate({errors}[{window}s])) or vector(0)) / sum(rate({requests}[{window}s]))",
        "p95": f"histogram_quantile(0.95, sum by (le) (rate({buckets}[{window}s])))",
    }


def query_range(url: str, query: str, start: float, end: float, step: float, timeout: float) -> list[tuple[float, float]]:
    params = urllib.parse.urlencode({"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
    # imported here: ansible's urls module (and cryptography with it) only when Prometheus is asked
    from ansible.module_utils.urls import open_url  # pylint: disable=import-outside-toplevel

    with open_url(f"{url.rstrip('/')}/api/v1/query_range?{params}", timeout=timeout) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise ValueError(body.get("error") or "query failed")
    values = []
    for series in body["data"]["result"][:1]:
        for stamp, value in series.get("values", []):
            number = float(value)
            if math.isfinite(number):
                values.append((float(stamp), number))
    return values


def series_from_prometheus(url: str, environment: str | None, start: float, end: float, timeout: float = 10) -> dict:
    """The chart's points from Prometheus over [start, end]; raises OSError or ValueError when it cannot answer."""
    step = max(1.0, round((end - start) / 200, 0))
    window = int(max(30, 4 * step))
    queries = prometheus_queries(environment, window)
    columns = {name: dict(query_range(url, query, start, end, step, timeout)) for name, query in queries.items()}
    stamps = sorted(set().union(*[set(values) for values in columns.values()]))
    points = [{"t": round(stamp - start, 3), **{name: columns[name].get(stamp) for name in queries}} for stamp in stamps]
    return {"source": "prometheus", "url": url, "queries": queries, "step_seconds": step, "points": points}


def build_series(prometheus_url: str | None, environment: str | None, samples: list[dict], start: float, end: float) -> dict:
    """Prometheus' series when a URL is set and it answers with data, else the run's own samples (saying why)."""
    note = None
    if prometheus_url:
        try:
            chart = series_from_prometheus(prometheus_url, environment, start, end)
            if chart["points"]:
                return chart
            note = f"Prometheus at {prometheus_url} returned no data for the run's window"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            note = f"Prometheus at {prometheus_url} could not be queried: {exc}"
    chart = series_from_samples(samples, start)
    chart["note"] = note
    return chart


def render_png(chart: dict, switches: list[float], run_seconds: float) -> tuple[str | None, str | None]:
    """(base64 PNG, None), or (None, why there is no picture). The time axis spans the whole run."""
    if not chart.get("points"):
        return None, "no requests were measured in this run"
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use("Agg")
        from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        return None, f"the chart needs matplotlib on the controller ({exc})"
    rows = (("rps", "requests / s", 1, "#1f6feb"), ("error_rate", "error rate %", 100, "#d1242f"),
            ("p95", "p95 latency ms", 1000, "#8250df"))
    figure, axes = pyplot.subplots(len(rows), 1, figsize=(10, 6.6), dpi=100, sharex=True)
    try:
        for axis, (name, label, scale, colour) in zip(axes, rows):
            points = [(p["t"], p[name] * scale) for p in chart["points"] if p.get(name) is not None]
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, color=colour)
            axis.set_ylabel(label)
            axis.set_ylim(bottom=0, top=max([p[1] for p in points] + [0]) * 1.15 or 1)
            axis.set_xlim(0, max([run_seconds] + [p[0] for p in points]))
            axis.grid(True, alpha=0.3)
            for switched in switches:
                axis.axvline(switched, color="#57606a", linestyle="--", linewidth=1)
        axes[0].set_title(f"Traffic during the run (source: {chart['source']}; dashed line: traffic switch)")
        axes[-1].set_xlabel("seconds since the run started")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        pyplot.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii"), None
