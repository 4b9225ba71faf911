"""The load_test role on the lab: staging's live colour, loaded directly at the role's default peak (reads and test
payments, every payment refunded), passes with its figures; a threshold it cannot meet fails the run, naming it."""
from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from helpers import http, live, map_colour

pytestmark = pytest.mark.timeout(600)

PLAYBOOK = """
- name: Load-test staging's live colour
  hosts: loadbalancers[0]
  gather_facts: false
  tasks:
    - name: Load the colour
      ansible.builtin.include_role:
        name: payments.deploy.load_test
      vars:
        load_test_environment: staging
        load_test_colour: "{{ colour }}"
        load_test_expected_version: "{{ version }}"
        load_test_run_id: "{{ run_id }}"
"""


def load_results(run) -> list[dict]:
    """The results of the load_test module in the run, passed or failed."""
    return [event["event_data"]["res"] for event in run.events
            if event.get("event") in ("runner_on_ok", "runner_on_failed")
            and event.get("event_data", {}).get("resolved_action", event.get("event_data", {}).get("task_action"))
            in ("payments.deploy.load_test", "load_test")]


def version_requests(lab, colour: str) -> int:
    """How many GET /version the staging colour's instance has answered (its own /metrics, not through HAProxy)."""
    inventory = yaml.safe_load(Path(lab["inventory"]).read_text())
    port = inventory["all"]["children"]["staging_app"]["hosts"]["stg1"]["payments_colour_ports"][colour]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    pattern = r'^http_requests_total\{method="GET",route="/version",status="\d+"\} (\d+)'
    return sum(int(found) for found in re.findall(pattern, text, re.MULTILINE))


def staging_version(lab) -> str:
    versions = live(lab["staging_url"])[0]
    assert len(versions) == 1, versions
    return versions.pop()


# The lab's inventory holds its deploys' peak for a shorter time; these tests load the role's own default.
ROLE_DURATION = yaml.safe_load((Path(__file__).resolve().parents[2] / "roles" / "load_test" / "defaults" / "main.yml").read_text())[
    "load_test_duration"]


def load_staging(lab, playbook, tmp_path: Path, *extra: str, version: str = ""):
    path = tmp_path / "load.yml"
    path.write_text(PLAYBOOK)
    version = version or staging_version(lab)
    colour = map_colour(lab["haproxy_map_file"], "staging")
    run_id = f"e2e-{time.time_ns()}"
    return playbook(str(path), "-e", f"colour={colour}", "-e", f"version={version}", "-e", f"run_id={run_id}",
                    "-e", f"load_test_duration={ROLE_DURATION}", *extra)


def test_staging_colour_holds_the_default_peak(lab, playbook, tmp_path):
    run = load_staging(lab, playbook, tmp_path)
    results = load_results(run)
    assert run.rc == 0, run.output[-3000:]
    assert len(results) == 1
    result = results[0]
    print("load test on the lab:", json.dumps({k: result[k] for k in (
        "target_rps", "achieved_rps", "requests", "status_counts", "errors_by_kind", "latency", "duration")}))
    assert result["passed"] is True and result["failed_checks"] == []
    assert result["requests"] == result["planned_requests"] == 300
    assert result["achieved_rps"] >= 0.9 * result["target_rps"]
    assert result["latency"]["p95"] <= 1.0 and result["rate_limited"] == 0
    # staging loads payments too: each one made at Stripe and refunded after the run
    assert result["per_kind"]["payment"]["ok"] == 30
    refunded = [entry for entry in result["refunds"] if entry["refunded"]]
    assert len(refunded) == len(result["refunds"]) == 30
    # the service's own record says so too
    for entry in refunded:
        answer = http("GET", f"{lab['staging_url']}/v1/payments/{entry['payment_id']}", lab["secrets"]["api_key"])
        assert answer[0] == 200 and answer[2]["status"] == "refunded", answer
    assert lab["secrets"]["api_key"] not in run.output
    assert "Load test of staging" in run.text and "passed" in run.text


def test_a_threshold_the_colour_cannot_meet_fails_the_run(lab, playbook, tmp_path):
    run = load_staging(lab, playbook, tmp_path, "-e", "load_test_duration=2", "-e", "load_test_max_p95=0.0001",
                       "-e", "load_test_max_p99=0.0001", "-e", "load_test_payment_weight=0")
    assert run.rc != 0
    results = load_results(run)
    assert len(results) == 1 and results[0]["passed"] is False
    assert [check.split(":")[0] for check in results[0]["failed_checks"]] == ["p95", "p99"]
    assert "p95" in run.text and "above max_p95 0.0001 s" in run.text
    assert results[0]["payments"] == 0 and not results[0]["refunds"]


def test_check_mode_says_what_it_would_send_and_sends_nothing(lab, playbook, tmp_path):
    colour = map_colour(lab["haproxy_map_file"], "staging")
    version = staging_version(lab)  # through the frontend: counted before the check run, not during it
    before = version_requests(lab, colour)
    run = load_staging(lab, playbook, tmp_path, "--check", version=version)
    assert run.rc == 0, run.output[-3000:]
    result = load_results(run)[0]
    assert result["plan"]["requests"] == 300 and result["plan"]["by_kind"]["payment"] == 30
    assert "would send 300 requests" in run.text
    assert version_requests(lab, colour) == before
