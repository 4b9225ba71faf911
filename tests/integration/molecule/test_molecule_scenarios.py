"""Each molecule scenario under extensions/molecule passes `molecule test` (converge, idempotence, verify), and what
its converge leaves behind works with the real programs: the lock refuses a converge while another run holds it,
HAProxy serves through the rendered configuration, Prometheus loads the rendered rules and discovers the targets."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import typing as t
import urllib.request
from pathlib import Path

import pytest
import yaml

from molecule_runner import ALL_SCENARIOS, REPO, SCENARIOS, Scenario
from loopback_ports import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loadbalancer"))
from lb_lab import HAPROXY, App, runtime_command  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.skipif(not ALL_SCENARIOS, reason="the deploy_lock, loadbalancer and monitoring scenarios run with PAYMENTS_MOLECULE_ALL=1")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SEQUENCE = ("syntax", "create", "prepare", "converge", "idempotence", "verify")


def assert_passed_keeping_state(scenario: Scenario) -> None:
    """`molecule test` without its final destroy: every action passed and the state is left to look at."""
    run = scenario.molecule("test", "--destroy", "never")
    assert run.rc == 0, run.output[-6000:]
    for action in SEQUENCE:
        assert run.action_result(scenario.name, action) == "Executed: Successful", (action, run.output[-6000:])
    assert scenario.state.is_dir()


def assert_destroy_removes_state(scenario: Scenario) -> None:
    run = scenario.molecule("destroy")
    assert run.rc == 0, run.output[-6000:]
    assert not scenario.state.exists()


def poll(predicate: t.Callable[[], bool], what: str, attempts: int = 150) -> None:
    """Polls 0.2 s apart a bounded number of times: a bound against hanging, not a timing assertion."""
    for attempt in range(attempts):  # pylint: disable=unused-variable
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def get_json(url: str) -> t.Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def test_deploy_lock_scenario_and_a_converge_refused_while_another_run_holds_the_lock(scenario: t.Callable[[str], Scenario]) -> None:
    lock_host = scenario("deploy_lock")
    assert_passed_keeping_state(lock_host)
    journal = lock_host.state / "journal" / "molecule"
    lock_file = journal / "deploy.lock"
    # converge and verify released every lock they took; the module keeps its flock guard file
    assert not lock_file.exists()
    assert (journal / "deploy.lock.guard").is_file()
    assert oct(journal.stat().st_mode & 0o777) == "0o750"

    taken = lock_host.ansible("-m", "payments.deploy.deploy_lock", "-a", json.dumps({
        "path": str(lock_file), "environment": "molecule", "phase": "migrate",
        "holder": {"user": "carol", "controller": "ctl-9", "operation": "deploy 2.0.0"}}))
    assert taken.returncode == 0, taken.stdout + taken.stderr
    held = json.loads(lock_file.read_text())

    refused = lock_host.molecule("converge")
    assert refused.rc != 0
    assert "is held by carol on ctl-9 (deploy 2.0.0)" in refused.output, refused.output[-6000:]
    assert "now in phase 'migrate'" in refused.output
    assert json.loads(lock_file.read_text()) == held  # the refused run changed nothing

    assert_destroy_removes_state(lock_host)


def backend_servers(cfg: str) -> dict[str, list[str]]:
    """backend -> sorted 'name address:port' of its server lines."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in cfg.splitlines():
        fields = line.split()
        if fields and fields[0] in ("backend", "frontend", "defaults", "global"):
            current = fields[1] if fields[0] == "backend" else ""
            if current:
                found[current] = []
        elif fields and fields[0] == "server" and current:
            found[current].append(f"{fields[1]} {fields[2]}")
    return {backend: sorted(servers) for backend, servers in found.items()}


def get(port: int, path: str = "/version") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_loadbalancer_scenario_renders_a_configuration_haproxy_serves_from(scenario: t.Callable[[str], Scenario]) -> None:
    if not os.access(HAPROXY, os.X_OK):
        pytest.skip("haproxy is not installed")
    apps = {(host, colour): App(host, colour) for host in ("app1", "app2") for colour in ("blue", "green")}
    frontend = free_port()
    lb = scenario("loadbalancer")
    lb.env.update(PAYMENTS_MOLECULE_HAPROXY=HAPROXY, PAYMENTS_MOLECULE_LB_PORT=str(frontend),
                  **{f"PAYMENTS_MOLECULE_{host.upper()}_{colour.upper()}": str(app.port) for (host, colour), app in apps.items()})
    master = None
    try:
        assert_passed_keeping_state(lb)
        cfg = lb.state / "haproxy.cfg"
        expected = {f"production_{colour}": sorted(f"{host} 127.0.0.1:{apps[(host, colour)].port}" for host in ("app1", "app2"))
                    for colour in ("blue", "green")}
        assert backend_servers(cfg.read_text()) == expected
        assert f"bind 127.0.0.1:{frontend}" in cfg.read_text()

        with open(lb.ephemeral / "haproxy.log", "wb") as log:
            # stopped in the finally clause below, after the requests
            master = subprocess.Popen([HAPROXY, "-W", "-db", "-f", str(cfg)], stdout=log,  # pylint: disable=consider-using-with
                                      stderr=subprocess.STDOUT)
        socket_path = str(lb.state / "admin.sock")

        def all_up() -> bool:
            assert master is not None and master.poll() is None, (lb.ephemeral / "haproxy.log").read_text()
            try:
                rows = runtime_command(socket_path, "show stat").splitlines()[1:]
            except OSError:
                return False
            status = [r.split(",")[17] for r in rows if r.count(",") > 17 and r.split(",")[1] not in ("FRONTEND", "BACKEND")]
            return len(status) == 4 and all(s == "UP" for s in status)

        poll(all_up, "HAProxy to report every server UP")
        answers = [get(frontend) for attempt in range(6)]
        assert {status for status, body in answers} == {200}
        served = {json.loads(body)["instance"] for status, body in answers}
        assert served == {"app1-blue", "app2-blue"}  # the map file the role created routes to blue
        assert apps[("app1", "green")].hits == apps[("app2", "green")].hits == 0
    finally:
        if master is not None:
            master.terminate()
            master.wait(timeout=30)
            (lb.state / "haproxy.pid").unlink(missing_ok=True)
        for app in apps.values():
            app.stop()
    assert_destroy_removes_state(lb)


def expected_targets(inventory: dict) -> set[tuple[str, str, str, str, str]]:
    """(environment, colour, host, address:port, release) of every app host and colour, read from the inventory."""
    children = inventory["all"]["children"]
    monitoring = next(iter(children["monitoring"]["hosts"].values()))
    releases = monitoring["monitoring_colour_releases"]
    found = set()
    for environment, group in monitoring["monitoring_environments"].items():
        group_vars = children[group].get("vars", {})
        for host, host_vars in children[group]["hosts"].items():
            merged = {**group_vars, **host_vars}
            address = merged.get("payments_service_address", merged.get("ansible_host", host))
            for colour, port in merged["payments_colour_ports"].items():
                found.add((environment, colour, host, f"{address}:{port}", str(releases.get(colour, "unknown"))))
    return found


def test_monitoring_scenario_renders_files_prometheus_runs_with(scenario: t.Callable[[str], Scenario], tmp_path: Path) -> None:
    for binary in (PROMTOOL, PROMETHEUS):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"{binary} is not installed")
    port = free_port()
    monitoring = scenario("monitoring")
    monitoring.env.update(PAYMENTS_MOLECULE_PROMTOOL=PROMTOOL, PAYMENTS_MOLECULE_PROMETHEUS_PORT=str(port))
    assert_passed_keeping_state(monitoring)
    inventory = yaml.safe_load((SCENARIOS / "monitoring" / "inventory" / "hosts.yml").read_text())
    monitoring_vars = inventory["all"]["children"]["monitoring"]["hosts"]["prom1"]
    rule_files = [yaml.safe_load((REPO / "roles" / "monitoring" / "files" / "payments.rules.yml").read_text()),
                  {"groups": monitoring_vars["monitoring_extra_rule_groups"]}]
    expected_rules = {group["name"]: sorted(rule.get("alert") or rule["record"] for rule in group["rules"])
                      for rules in rule_files for group in rules["groups"]}

    config = monitoring.state / "prometheus" / "prometheus.yml"
    with open(tmp_path / "prometheus.log", "wb") as log:
        # stopped in the finally clause below
        prometheus = subprocess.Popen(  # pylint: disable=consider-using-with
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
                    return answer.status == 200
            except OSError:
                return False

        poll(ready, "Prometheus to be ready")
        groups = get_json(f"{url}/api/v1/rules")["data"]["groups"]
        assert {g["name"]: sorted(r["name"] for r in g["rules"]) for g in groups} == expected_rules

        def payments_targets() -> list[dict]:
            active = get_json(f"{url}/api/v1/targets?state=active")["data"]["activeTargets"]
            return [target["labels"] for target in active if target["labels"]["job"] == "payments"]

        expected = expected_targets(inventory)
        poll(lambda: len(payments_targets()) == len(expected), "Prometheus to discover the payment service's targets")
        found = {(lbl["environment"], lbl["colour"], lbl["host"], lbl["instance"], lbl["release"]) for lbl in payments_targets()}
        assert found == expected
        active = get_json(f"{url}/api/v1/targets?state=active")["data"]["activeTargets"]
        assert [target["labels"]["instance"] for target in active if target["labels"]["job"] == "prometheus"] == [f"127.0.0.1:{port}"]
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
    assert_destroy_removes_state(monitoring)
