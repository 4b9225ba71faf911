"""The monitoring role's rules entry point on the lab: it installs the collection's alert rules into a Prometheus
that has none of them, reloads it, and proves that Prometheus loaded and evaluates every alert; a second run changes
nothing and proves it again; verify-only fails naming an alert Prometheus does not run, and an installed rule that
cannot be evaluated fails the run before anything relies on it."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO

RULES = REPO / "roles" / "monitoring" / "files" / "payments.rules.yml"
CHECK_TASK = "Check that Prometheus loaded every expected alert and evaluates it"


def get_json(url: str, method: str = "GET") -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as answer:
        body = answer.read()
    return json.loads(body) if body.strip() else None


def loaded_alerts(lab: dict, rules_file: Path) -> set[str]:
    """The alert names Prometheus runs from one rule file."""
    groups = get_json(f"{lab['prometheus_url']}/api/v1/rules?type=alert")["data"]["groups"]
    return {rule["name"] for group in groups if group["file"] == str(rules_file) for rule in group["rules"]}


def rules_play(path: Path, **variables: Any) -> Path:
    include = {"name": "payments.deploy.monitoring", "tasks_from": "rules"}
    task = {"name": "Install and verify the alert rules", "ansible.builtin.include_role": include, "vars": variables}
    path.write_text(yaml.safe_dump([{"name": "Alert rules", "hosts": "loadbalancers[0]", "gather_facts": False,
                                     "tasks": [task]}], sort_keys=False))
    return path


def file_alerts() -> list[str]:
    return sorted({rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule})


def test_first_run_installs_and_verifies_second_run_changes_nothing(lab, playbook, tmp_path):
    installed = Path(lab["state_dir"]) / "monitoring" / "prometheus" / "rules" / "payments.rules.yml"
    # Start from a Prometheus without the collection's rules, as a new lab's Prometheus is.
    installed.unlink(missing_ok=True)
    get_json(f"{lab['prometheus_url']}/-/reload", method="POST")
    assert loaded_alerts(lab, installed) == set()
    reloaded_before = get_json(f"{lab['prometheus_url']}/api/v1/status/runtimeinfo")["data"]["lastConfigTime"]

    first = playbook(str(rules_play(tmp_path / "rules.yml")))
    assert first.rc == 0, "the rules entry point failed"
    assert first.changed >= 1, "the rules file was not installed"
    reloaded = get_json(f"{lab['prometheus_url']}/api/v1/status/runtimeinfo")["data"]["lastConfigTime"]
    assert reloaded != reloaded_before, "Prometheus was not reloaded"
    assert installed.read_bytes() == RULES.read_bytes()
    assert loaded_alerts(lab, installed) == set(file_alerts())
    check = first.results(CHECK_TASK)[0]
    assert check["passed"] is True and check["expected"] == file_alerts()
    assert check["missing"] == [] and check["unhealthy"] == [] and check["not_evaluated"] == []
    print(f"first run: verified {check['waited_seconds']} s after the reload ({check['requests_sent']} requests)")

    second = playbook(str(rules_play(tmp_path / "rules.yml")))
    assert second.rc == 0 and second.changed == 0, second.recap
    assert get_json(f"{lab['prometheus_url']}/api/v1/status/runtimeinfo")["data"]["lastConfigTime"] == reloaded, "reloaded again"
    again = second.results(CHECK_TASK)[0]
    assert again["passed"] is True and again["expected"] == file_alerts()
    assert "Prometheus runs and evaluates" in second.text


@pytest.mark.extended
def test_verify_only_fails_naming_an_alert_prometheus_does_not_run(lab, playbook, tmp_path):
    installed = Path(lab["state_dir"]) / "monitoring" / "prometheus" / "rules" / "payments.rules.yml"
    assert playbook(str(rules_play(tmp_path / "install.yml"))).rc == 0
    before = installed.stat().st_mtime_ns
    run = playbook(str(rules_play(tmp_path / "verify.yml", monitoring_rules_install=False,
                                  monitoring_rules_expected_alerts=["PaymentsAlertManagedElsewhere"], monitoring_rules_wait=2)))
    assert run.rc != 0 and run.changed == 0
    check = run.results(CHECK_TASK)[0]
    assert check["missing"] == ["PaymentsAlertManagedElsewhere"]
    assert "PaymentsAlertManagedElsewhere" in run.text and "not loaded" in run.text
    assert installed.stat().st_mtime_ns == before


@pytest.mark.extended
def test_an_installed_rule_that_cannot_be_evaluated_fails_the_run(lab, playbook, tmp_path):
    extra = Path(lab["state_dir"]) / "monitoring" / "prometheus" / "rules" / "payments-extra.rules.yml"
    # promtool accepts it; every evaluation fails (two series on the right-hand side for one match group)
    broken = {"name": "payments.extra", "rules": [{
        "alert": "PaymentsRuleThatCannotEvaluate", "labels": {"severity": "ticket"},
        "expr": 'absent(nothing_here) / on() group_left() (vector(1) or label_replace(vector(1), "a", "b", "", ""))'}]}
    variables = tmp_path / "extra.yml"
    variables.write_text(yaml.safe_dump({"monitoring_extra_rule_groups": [broken], "monitoring_rules_wait": 10}))
    try:
        run = playbook(str(rules_play(tmp_path / "rules.yml")), "-e", f"@{variables}")
        assert run.rc != 0
        check = run.results(CHECK_TASK)[0]
        assert [entry["name"] for entry in check["unhealthy"]] == ["PaymentsRuleThatCannotEvaluate"]
        assert "many-to-many matching not allowed" in check["unhealthy"][0]["last_error"]
        assert "PaymentsRuleThatCannotEvaluate" in run.text
    finally:
        cleanup = playbook(str(rules_play(tmp_path / "rules.yml")))
    assert cleanup.rc == 0 and not extra.exists()
