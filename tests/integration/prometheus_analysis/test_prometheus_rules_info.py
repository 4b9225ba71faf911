"""prometheus_rules_info against a real Prometheus that loads rule files from a directory and reloads over HTTP: the
collection's rules pass once loaded, an alert nobody loaded fails naming it, a rule whose expression errors at
evaluation is unhealthy with Prometheus' error, a group not evaluated yet is reported, a Prometheus without rules gets
the message saying how to install them, and a wait sees a reload that happens while it polls."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import tempfile
import threading
import time
import typing as t
import urllib.request
from pathlib import Path

import pytest
import yaml

from real_prometheus import COLLECTION_ROOT, PROMETHEUS, RealPrometheus, run_module

RULES_MODULE = "ansible_collections.payments.deploy.plugins.modules.prometheus_rules_info"
COLLECTION_RULES = COLLECTION_ROOT / "roles" / "monitoring" / "files" / "payments.rules.yml"
# Parsed without error, but every evaluation fails: the right-hand side has two series for the one match group {}.
BROKEN_EXPR = 'absent(nothing_here) / on() group_left() (vector(1) or label_replace(vector(1), "a", "b", "", ""))'
TEST_RULES = {"groups": [{"name": "checks", "rules": [
    {"alert": "AlwaysQuiet", "expr": "vector(1) > 2", "labels": {"severity": "page"}},
    {"alert": "AlwaysFiring", "expr": "vector(1)", "labels": {"severity": "ticket"}},
    {"alert": "NeverEvaluates", "expr": BROKEN_EXPR, "labels": {"severity": "page"}},
    {"record": "checks:one", "expr": "vector(1)"}]},
    # evaluated once a day, at an offset Prometheus derives from the group: not within this test
    {"name": "daily", "interval": "1d", "rules": [{"alert": "DailyCheck", "expr": "vector(1) > 2", "labels": {"severity": "daily"}}]}]}


class RulesPrometheus(RealPrometheus):
    """Prometheus evaluating every rule file of ``rules`` each second, with ``POST /-/reload`` enabled."""

    flags = (*RealPrometheus.flags, "--web.enable-lifecycle")

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, {})
        self.rules = directory / "rules"
        self.rules.mkdir()
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [f"{self.rules}/*.rules.yml"]}
        (directory / "prometheus.yml").write_text(json.dumps(config))

    def load(self, files: dict[str, str]) -> None:
        """Make FILES (name: text) the only rule files, and reload."""
        for old in self.rules.glob("*.rules.yml"):
            old.unlink()
        for name, text in files.items():
            (self.rules / name).write_text(text)
        self.reload()

    def reload(self) -> None:
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

    def rule_names(self) -> set[str]:
        with urllib.request.urlopen(f"{self.url}/api/v1/rules?type=alert", timeout=5) as answer:
            return {rule["name"] for group in json.load(answer)["data"]["groups"] for rule in group["rules"]}


@pytest.fixture(scope="module")
def rules_prometheus() -> t.Iterator[RulesPrometheus]:
    if not shutil.which(PROMETHEUS):
        pytest.skip("prometheus is not installed")
    directory = Path(tempfile.mkdtemp(prefix="prom-rules-"))
    server = RulesPrometheus(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def work() -> t.Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rules-") as directory:
        yield Path(directory)


@pytest.fixture(scope="module")
def module_code(collections_dir: Path) -> t.Any:
    """The module imported in-process, for its rules-file parser."""
    if str(collections_dir) not in sys.path:
        sys.path.insert(0, str(collections_dir))
    return importlib.import_module(RULES_MODULE)


def alert_names(document: dict[str, t.Any]) -> list[str]:
    return sorted({rule["alert"] for group in document["groups"] for rule in group["rules"] if "alert" in rule})


def check(prometheus: RulesPrometheus, collections_dir: Path, work: Path, **options: t.Any) -> dict[str, t.Any]:
    return run_module(collections_dir, work, {"prometheus_url": prometheus.url, "timeout": 5, **options}, module=RULES_MODULE)


def test_the_collections_rules_pass_once_loaded(rules_prometheus: RulesPrometheus, collections_dir: Path, work: Path) -> None:
    rules_prometheus.load({"payments.rules.yml": COLLECTION_RULES.read_text()})
    result = check(rules_prometheus, collections_dir, work, rules_file=str(COLLECTION_RULES), required_severities=["page"], wait=15)
    assert result["passed"] is True and not result.get("failed"), result
    page = alert_names({"groups": [{"rules": [rule for group in yaml.safe_load(COLLECTION_RULES.read_text())["groups"]
                                              for rule in group["rules"] if rule.get("labels", {}).get("severity") == "page"]}]})
    assert result["expected"] == page and result["severities"]["page"] == page
    assert set(result["loaded"]) == set(alert_names(yaml.safe_load(COLLECTION_RULES.read_text())))
    assert result["missing"] == [] and result["unhealthy"] == [] and result["not_evaluated"] == []
    # every group of the file, evaluated each second by this Prometheus
    assert {name.rsplit(":", 1)[1] for name in result["groups"]} == {g["name"] for g in yaml.safe_load(COLLECTION_RULES.read_text())["groups"]}
    assert all(group["interval"] == 1 and group["last_evaluation_age"] is not None for group in result["groups"].values())


def test_an_alert_nobody_loaded_fails_naming_it(rules_prometheus: RulesPrometheus, collections_dir: Path, work: Path) -> None:
    rules_prometheus.load({"payments.rules.yml": COLLECTION_RULES.read_text()})
    result = check(rules_prometheus, collections_dir, work, rules_file=str(COLLECTION_RULES),
                   alerts=["PaymentsAlertNobodyWrote"], wait=3)
    assert result["failed"] is True and result["passed"] is False
    assert result["missing"] == ["PaymentsAlertNobodyWrote"]
    assert "PaymentsAlertNobodyWrote" in result["msg"] and "PaymentSuccessRateCritical" not in result["msg"]
    assert "PaymentSuccessRateCritical" in result["expected"]


def test_a_rule_that_errors_is_unhealthy_and_a_group_not_evaluated_is_reported(rules_prometheus: RulesPrometheus,
                                                                               collections_dir: Path, work: Path) -> None:
    rules_file = work / "checks.rules.yml"
    rules_file.write_text(yaml.safe_dump(TEST_RULES))
    rules_prometheus.load({"checks.rules.yml": rules_file.read_text()})
    result = check(rules_prometheus, collections_dir, work, rules_file=str(rules_file), required_severities=["page", "daily"], wait=4)
    assert result["failed"] is True
    assert [entry["name"] for entry in result["unhealthy"]] == ["NeverEvaluates"]
    assert "many-to-many matching not allowed" in result["unhealthy"][0]["last_error"]
    assert [entry["name"] for entry in result["not_evaluated"]] == ["DailyCheck"]
    assert result["not_evaluated"][0]["last_evaluation_age"] is None and result["not_evaluated"][0]["interval"] == 86400
    # the quiet alert covers severity page; the broken one does not, and nothing working carries "daily"
    assert result["severities"] == {"page": ["AlwaysQuiet"], "daily": []}
    assert result["firing"] == ["AlwaysFiring"] and "AlwaysFiring" not in result["expected"]  # a ticket: not required
    assert "NeverEvaluates" in result["msg"] and "DailyCheck" in result["msg"] and "'daily'" in result["msg"]


def test_a_prometheus_without_rules_says_how_to_install_them(rules_prometheus: RulesPrometheus, collections_dir: Path, work: Path) -> None:
    rules_prometheus.load({})
    result = check(rules_prometheus, collections_dir, work, alerts=["PaymentSuccessRateCritical"])
    assert result["failed"] is True and result["loaded"] == {}
    assert "runs no alerting rules at all" in result["msg"] and "playbooks/monitoring.yml" in result["msg"]


def test_a_wait_sees_the_reload_that_installs_the_rules(rules_prometheus: RulesPrometheus, collections_dir: Path, work: Path) -> None:
    rules_prometheus.load({})
    outcome: dict[str, t.Any] = {}

    def verify() -> None:
        outcome["result"] = check(rules_prometheus, collections_dir, work, rules_file=str(COLLECTION_RULES), wait=30, retry_delay=0.5)
        outcome["done"] = time.monotonic()

    waiting = threading.Thread(target=verify)
    waiting.start()
    try:
        time.sleep(2)  # the module is polling a Prometheus without rules
        assert "result" not in outcome, outcome
        (rules_prometheus.rules / "payments.rules.yml").write_text(COLLECTION_RULES.read_text())
        rules_prometheus.reload()
        reloaded = time.monotonic()
    finally:
        waiting.join(timeout=60)
    result = outcome["result"]
    assert result["passed"] is True, result
    assert result["expected"] == alert_names(yaml.safe_load(COLLECTION_RULES.read_text()))
    assert result["requests_sent"] > 3, "it read only once"  # three requests a reading
    print(f"verified {outcome['done'] - reloaded:.2f} s after the reload ({result['requests_sent']} requests)")


def test_the_rules_file_parser(module_code: t.Any) -> None:
    text = COLLECTION_RULES.read_text()
    parsed = module_code.alerts_of_rules(text, "payments.rules.yml")
    document = yaml.safe_load(text)
    assert sorted(parsed) == alert_names(document)
    assert parsed == {rule["alert"]: rule["labels"]["severity"] for group in document["groups"] for rule in group["rules"]}
    # recording rules are left out, an alert in two groups counts once, an alert without labels has no severity
    twice = {"groups": [{"name": "a", "rules": [{"record": "x:y", "expr": "up"}, {"alert": "Same", "expr": "up"}]},
                        {"name": "b", "rules": [{"alert": "Same", "expr": "up == 0", "labels": {"severity": "page"}}]}]}
    assert module_code.alerts_of_rules(yaml.safe_dump(twice), "twice") == {"Same": None}


@pytest.mark.parametrize("document, named", [
    ("groups: [\n", "is not YAML"),
    ("groups: []\n", "holds no rule groups"),
    ("- just a list\n", "holds no rule groups"),
    ("groups: [{name: a, rules: {alert: A}}]\n", "group 1"),
    ("groups: [{name: a, rules: [[1]]}]\n", "not a mapping"),
    ("groups: [{name: a, rules: [{record: 'a:b', expr: up}]}]\n", "no alerting rule"),
    ("groups: [{name: a, rules: [{alert: 'has space', expr: up}]}]\n", "not an alert name"),
])
def test_the_rules_file_parser_refuses_what_is_not_a_rules_file(module_code: t.Any, document: str, named: str) -> None:
    with pytest.raises(module_code.RulesFileError, match=named):
        module_code.alerts_of_rules(document, "bad.rules.yml")
