"""The lab's monitoring: Prometheus scrapes every colour of every app host with its labels, an alert reaches the
receiver through Alertmanager, and the monitoring role installs rules only after promtool accepts them."""
from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

import labctl
from conftest import REPO
from helpers import passed_staging

BOUND_S = 30  # scrape and evaluation run every 2 s in the lab; Alertmanager waits 1 s before it notifies
DASHBOARD = REPO / "roles" / "monitoring" / "files" / "payments-dashboard.json"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def poll(check: Callable[[], Any], what: str, timeout: float = BOUND_S) -> Any:
    """check's first truthy result, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if not result:
        pytest.fail(f"not within {timeout}s: {what}")
    return result


def write_play(path: Path, tasks: list[dict]) -> Path:
    path.write_text(yaml.safe_dump([{"name": "Monitoring", "hosts": "loadbalancers[0]", "gather_facts": False,
                                     "tasks": tasks}], sort_keys=False))
    return path


def role_task(**include: Any) -> dict:
    role = {"name": "payments.deploy.monitoring", **include}
    return {"name": "Run the monitoring role", "ansible.builtin.include_role": role}


def rule_groups(lab: dict) -> dict[str, set[str]]:
    """The rule names Prometheus runs, by rule file."""
    loaded: dict[str, set[str]] = {}
    for group in get_json(f"{lab['prometheus_url']}/api/v1/rules")["data"]["groups"]:
        loaded.setdefault(group["file"], set()).update(rule["name"] for rule in group["rules"])
    return loaded


@pytest.fixture(scope="module")
def installed(lab, playbook, tmp_path_factory) -> dict:
    """The role's main entry point run on the lab's Prometheus (idempotent: a re-run changes nothing)."""
    run = playbook(str(write_play(tmp_path_factory.mktemp("monitoring") / "install.yml", [role_task()])))
    assert run.rc == 0, "the monitoring role failed"
    return lab


def test_role_rules_are_loaded_by_prometheus(installed):
    rules_file = str(Path(installed["state_dir"]) / "monitoring" / "prometheus" / "rules" / "payments.rules.yml")
    loaded = poll(lambda: rule_groups(installed).get(rules_file), "Prometheus loads the role's rules")
    assert {"PaymentSuccessRateCritical", "PaymentSuccessRateBelowTarget", "RefundRateHigh", "WebhookProcessingFailing",
            "HTTPErrorRateHigh", "PaymentLatencyP95High", "AuthenticationFailuresHigh", "RateLimitViolationsHigh",
            "BackupTooOld", "DependencyDown"} <= loaded


def colour_releases() -> dict[tuple[str, str, str], str]:
    """(environment, host, colour): the release each colour of every app host runs now ("unknown": not running)."""
    topo = labctl.load_topology()
    return {(environment, host, colour): labctl.colour_release(port)
            for environment, group in labctl.ENVIRONMENT_GROUPS.items()
            for host, app in topo["apps"].items() if app["group"] == group
            for colour, port in app["ports"].items()}


@pytest.fixture(scope="module", autouse=True)
def staged_releases() -> None:
    """These tests need no release staged for production, unless a colour runs nothing (every_colour_runs)."""


@pytest.fixture(scope="module")
def every_colour_runs(lab, playbook) -> dict[tuple[str, str, str], str]:
    """A fresh lab runs nothing: two deploys per environment put a release in both colours of every app host."""
    for version in ("1.0.0", "1.1.0"):
        if "unknown" in colour_releases().values():
            if not passed_staging(lab, version):
                assert playbook("deploy.yml", "-e", f"release_version={version}", "-e",
                                "deploy_environment=staging").rc == 0
            assert playbook("deploy.yml", "-e", f"release_version={version}").rc == 0
    releases = colour_releases()
    assert "unknown" not in releases.values(), f"a colour of the lab does not answer /version: {releases}"
    return releases


def test_every_colour_is_an_up_target_labelled_with_its_release(installed, every_colour_runs, playbook, tmp_path):
    """What deploy.yml does after its release phase: rewrite each environment's targets with each colour's release;
    Prometheus picks the new labels up without a reload."""
    expected = every_colour_runs
    releases = {environment: {colour: release for (env, _host, colour), release in expected.items() if env == environment}
                for environment in labctl.ENVIRONMENT_GROUPS}
    play = write_play(tmp_path / "targets.yml", [{
        **role_task(tasks_from="targets"), "loop": "{{ monitoring_releases | dict2items }}",
        "vars": {"monitoring_environment": "{{ item.key }}", "monitoring_colour_releases": "{{ item.value }}"}}])
    assert playbook(str(play), "-e", json.dumps({"monitoring_releases": releases})).rc == 0

    def targets() -> dict | None:
        active = get_json(f"{installed['prometheus_url']}/api/v1/targets?state=active")["data"]["activeTargets"]
        found = {(t["labels"]["environment"], t["labels"]["host"], t["labels"]["colour"]):
                 (t["labels"]["release"], t["health"]) for t in active if t["labels"].get("job") == "payments"}
        return found if found == {key: (release, "up") for key, release in expected.items()} else None

    poll(targets, f"every colour is up with its release: {expected}")
    query = urllib.parse.quote('up{job="payments"} == 1')
    series = get_json(f"{installed['prometheus_url']}/api/v1/query?query={query}")["data"]["result"]
    assert {(s["metric"]["environment"], s["metric"]["host"], s["metric"]["colour"]) for s in series} == expected.keys()


def test_synthetic_alert_reaches_the_receiver(lab):
    name = f"LabSyntheticAlert{uuid.uuid4().hex[:8]}"
    alert = [{"labels": {"alertname": name, "severity": "ticket", "service": "payments", "environment": "staging"},
              "annotations": {"summary": "synthetic alert from the end-to-end tests"}}]
    request = urllib.request.Request(f"{lab['alertmanager_url']}/api/v2/alerts", data=json.dumps(alert).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    received = poll(lambda: get_json(f"{lab['alert_receiver_url']}/alerts?alertname={name}")["notifications"],
                    f"the receiver gets {name}")
    notification = received[0]["notification"]
    assert notification["status"] == "firing"
    assert notification["alerts"][0]["labels"] == alert[0]["labels"]
    assert notification["alerts"][0]["annotations"] == alert[0]["annotations"]


def test_broken_rule_file_is_refused_and_prometheus_keeps_its_rules(installed, playbook, tmp_path):
    rules_dir = Path(installed["state_dir"]) / "monitoring" / "prometheus" / "rules"
    before = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in rules_dir.iterdir()}
    loaded_before = rule_groups(installed)
    runtime_before = get_json(f"{installed['prometheus_url']}/api/v1/status/runtimeinfo")["data"]
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump({"monitoring_extra_rule_groups": [
        {"name": "broken", "rules": [{"alert": "Broken", "expr": "sum(rate(payments_total[5m]) >"}]}]}))
    run = playbook(str(write_play(tmp_path / "install.yml", [role_task()])), "-e", f"@{broken}")
    assert run.rc != 0
    assert "promtool check rules refused the new alert rules" in run.text
    assert "unclosed left parenthesis" in run.text
    assert {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in rules_dir.iterdir()} == before
    runtime = get_json(f"{installed['prometheus_url']}/api/v1/status/runtimeinfo")["data"]
    assert runtime["reloadConfigSuccess"] is True
    assert runtime["lastConfigTime"] == runtime_before["lastConfigTime"], "Prometheus was reloaded"
    assert rule_groups(installed) == loaded_before


def test_dashboard_queries_are_valid_promql(lab):
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [target["expr"].replace("$environment", ".*") for panel in panels for target in panel["targets"]]
    for expr in exprs:
        answer = get_json(f"{lab['prometheus_url']}/api/v1/query?query={urllib.parse.quote(expr)}")
        assert answer["status"] == "success", expr
