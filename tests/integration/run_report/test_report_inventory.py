"""What the report takes from the collection and the inventory when no option says otherwise: the collection's own
checklist map, and a chart from the real Prometheus the load balancer's payments_prometheus_url names, with the report
written to the load balancer's <deploy_journal_dir>/reports."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import pytest
import yaml

from conftest import REPO, Run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "prometheus_analysis"))
from real_prometheus import PROMETHEUS, Exporter, RealPrometheus  # noqa: E402  pylint: disable=wrong-import-position

# Every scrape sees 4 k requests, k of them 5xx, all answered within (0.1 s, 0.25 s]: Prometheus' ratio of the rates
# and its histogram_quantile follow from these shares alone, whatever the timing.
COLLECTION_MAP = REPO / "checklist" / "map.yml"
ERROR_SHARE = 0.25
BUCKET_LOW, BUCKET_HIGH = 0.1, 0.25


class TrafficExporter(Exporter):
    """The service's request metrics: http_requests_total by status and the latency histogram."""

    def render(self) -> str:
        share = int(self.per_second * (time.time() - self.started))
        total, errors = 4 * share, share
        bucket = "http_request_duration_seconds_bucket"
        return ("# TYPE http_requests_total counter\n"
                f'http_requests_total{{route="/v1/payments",status="200"}} {total - errors}\n'
                f'http_requests_total{{route="/v1/payments",status="503"}} {errors}\n'
                "# TYPE http_request_duration_seconds histogram\n"
                f'{bucket}{{route="/v1/payments",le="{BUCKET_LOW}"}} 0\n'
                f'{bucket}{{route="/v1/payments",le="{BUCKET_HIGH}"}} {total}\n'
                f'{bucket}{{route="/v1/payments",le="+Inf"}} {total}\n'
                f'http_request_duration_seconds_sum{{route="/v1/payments"}} {total * 0.2}\n'
                f'http_request_duration_seconds_count{{route="/v1/payments"}} {total}\n')


@pytest.fixture(scope="module")
def prometheus() -> t.Iterator[RealPrometheus]:
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip("prometheus is not installed (Debian package prometheus)")
    exporter = TrafficExporter(per_second=40, failed_share=0)
    directory = Path(tempfile.mkdtemp(prefix="run-report-prom-"))
    server = RealPrometheus(directory, {"payments": (exporter, {"environment": "production", "colour": "green"})})
    try:
        server.start()
        server.wait_for('sum(rate(http_requests_total{environment="production"}[30s])) > 0')
        yield server
    finally:
        server.stop()
        exporter.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_chart_from_prometheus_and_report_beside_the_journal(run_playbook: t.Callable[..., Run], prometheus: RealPrometheus) -> None:
    run = run_playbook(load_balancer_vars={"payments_prometheus_url": prometheus.url,
                                           "deploy_journal_dir": "{{ run_report_journal_dir }}"})
    assert run.rc == 0, run.output
    assert run.report_dir == run.journal_dir / "reports" and run.files()["html"].is_file()
    chart = run.report()["chart"]
    assert chart["source"] == "prometheus" and chart["url"] == prometheus.url, chart.get("note")
    assert 'environment="production"' in chart["queries"]["rps"]
    points = [point for point in chart["points"] if None not in (point["rps"], point["error_rate"], point["p95"])]
    assert points
    for point in points:
        assert point["rps"] > 0
        assert abs(point["error_rate"] - ERROR_SHARE) < 1e-6
        assert abs(point["p95"] - (BUCKET_LOW + (BUCKET_HIGH - BUCKET_LOW) * 0.95)) < 1e-6
    assert chart["picture"] is True


def test_collection_map_with_the_production_gate_record(run_playbook: t.Callable[..., Run]) -> None:
    # No map option: the collection's own checklist/map.yml, every line of it in the report, the gate lines judged
    # from the production gate's record (one role's sign-off, one attestation, one waiver).
    if not COLLECTION_MAP.is_file():
        pytest.skip(f"{COLLECTION_MAP} is not part of this checkout")
    lines = yaml.safe_load(COLLECTION_MAP.read_text(encoding="utf-8"))["lines"]
    gates = [line for line in lines if line.get("kind") == "item" and line["status"] == "gate"]
    role = "operations_manager"
    others = [line["id"] for line in gates if (line.get("gate") or {}).get("role") != role]
    assert len(others) >= 2
    record = {"required": True, "passed": True,
              "signoffs": {role: {"name": "Margaret Hamilton", "date": "2026-11-27", "reference": "CHG-1042", "source": "variables"}},
              "attestations": {others[0]: {"by": "Grace Hopper", "date": "2026-11-20", "reference": "PENTEST-2026-Q4"}},
              "waivers": {others[1]: {"by": "Grace Hopper", "date": "2026-09-01", "justification": "Stripe Elements collects card data."}}}
    run = run_playbook(checklist_map=None, run_report_gate_record=record)
    assert run.rc == 0, run.output
    checklist = run.report()["checklist"]
    assert checklist["problem"] is None
    assert [line["id"] for line in checklist["lines"]] == [line["id"] for line in lines]
    judged = {line["id"]: line for line in checklist["lines"]}
    assert judged[others[0]]["run_status"] == "attested"
    assert judged[others[0]]["recorded"]["attestation"]["reference"] == "PENTEST-2026-Q4"
    assert judged[others[1]]["run_status"] == "waived"
    signed = {line["id"] for line in gates if (line.get("gate") or {}).get("role") == role}
    assert signed
    assert {line_id for line_id, line in judged.items() if line["run_status"] == "signed off"} == signed
    for line in gates:
        if line["id"] in signed:
            assert judged[line["id"]]["recorded"]["signoff"]["name"] == "Margaret Hamilton"
        elif line["id"] not in others[:2]:
            assert judged[line["id"]]["run_status"] == "not recorded"
    assert "Margaret Hamilton" in run.texts()["html"] and "PENTEST-2026-Q4" in run.texts()["md"]
