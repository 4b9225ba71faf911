"""The demo: deploy the reference payment service through staging to production on the lab, then show the result.

Deploys 1.0.0 first when nothing is live, then 1.1.0 (staging, then production: with customer traffic running, so
that the bake after the switch judges real payments), and ends with the live version, colour and URL of each
environment, the bake's verdict with its figures, and how long each phase took.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "lab"))

from customer_traffic import CustomerTraffic  # noqa: E402  pylint: disable=wrong-import-position

BIN = REPO / ".venv" / "bin"
ENVIRONMENTS = ("staging", "production")


def lab_status() -> dict:
    out = subprocess.run([str(REPO / "lab" / "labctl"), "status", "--json"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def live_version(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{url}/version", timeout=5) as answer:
            return json.load(answer)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def map_colours(map_file: str) -> dict[str, str]:
    pairs = (line.split() for line in Path(map_file).read_text().splitlines())
    return {p[0]: p[1] for p in pairs if len(p) == 2}


def last_deploy_summary(state_dir: str, environment: str) -> str:
    """One line from the journal: the release, the staging gate's verdict and both smoke tests' figures."""
    path = Path(state_dir) / "hosts" / "lb1" / "var" / "lib" / "payments" / "journal" / environment / "last-deploy.json"
    if not path.exists():
        return "no deploy recorded"
    record = json.loads(path.read_text())
    gate = record.get("staging_gate") or {}
    gate_text = ("staging gate: passed" if gate.get("passed") else
                 f"staging gate: overridden ({gate.get('override')})" if gate.get("override") else "no staging gate")
    smoke = []
    for target in ("colour", "frontend"):
        figures = (record.get("smoke") or {}).get(target) or {}
        latency = figures.get("latency") or {}
        if latency:
            smoke.append(f"{target} smoke {figures['duration']:.1f} s, {latency['count']} payments p95 {latency['p95']} s")
    return f"{record['release_from'] or '-'} -> {record['release_to']}; {gate_text}; " + "; ".join(smoke)


def bake_summary(state_dir: str, environment: str) -> list[str]:
    """The bake's verdict from the journal: each metric's phase, last value and condition."""
    path = Path(state_dir) / "hosts" / "lb1" / "var" / "lib" / "payments" / "journal" / environment / "last-deploy.json"
    bake = json.loads(path.read_text()).get("bake") if path.exists() else None
    if not bake:
        return [f"{environment:12} no bake (nothing was switched, or deploy_bake was off)"]
    lines = [f"{environment:12} {bake['phase']} in {bake.get('duration', 0):.1f} s ({bake.get('queries_sent')} queries)"]
    for metric in bake.get("metrics", []):
        last = (metric.get("measurements") or [{}])[-1]
        condition = metric.get("failure_condition") or metric.get("success_condition") or ""
        lines.append(f"{'':12}   {metric['name']:16} {metric['phase']:12} last {last.get('value')!s:24} "
                     f"(fails when {condition}; traffic {last.get('traffic')})")
    return lines


def report_summary(state_dir: str, environment: str) -> list[str]:
    """The newest run report of an environment's deploys (payments.deploy.run_report): every checklist line's status in
    that run, counted, and where the HTML page is."""
    reports = Path(state_dir) / "hosts" / "lb1" / "var" / "lib" / "payments" / "journal" / "reports"
    newest = max(reports.glob(f"{environment}-*.json"), key=lambda path: path.stat().st_mtime, default=None)
    if newest is None:
        return [f"{environment:12} no run report"]
    report = json.loads(newest.read_text())
    counts = report["checklist"]["counts"]
    total = sum(counts.values())
    shown = ", ".join(f"{status} {count}" for status, count in sorted(counts.items(), key=lambda item: -item[1]) if count)
    return [f"{environment:12} {report['outcome']['status']}: {counts.get('verified', 0)} of {total} checklist items verified "
            f"in the run ({shown})", f"{'':12} {newest.with_suffix('.html')}"]


def deploy(version: str, environment: str, timings: list[dict], traffic: CustomerTraffic | None = None) -> None:
    print(f"\n=== deploy {version} to {environment}{' (bake under customer traffic)' if traffic else ''} ===",
          flush=True)
    bake = ["-e", "deploy_bake=true"] if traffic else []
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PAYMENTS_PHASE_TIMINGS_FILE": report.name}
        if traffic:
            traffic.start()
        try:
            done = subprocess.run([str(BIN / "ansible-playbook"), str(REPO / "playbooks" / "deploy.yml"),
                                   "-e", f"release_version={version}", "-e", f"deploy_environment={environment}",
                                   *bake], cwd=REPO, env=env, check=False)
        finally:
            if traffic:
                summary = traffic.stop()["payments"]
                print(f"customer traffic: {summary['attempted']} payments, {summary['succeeded']} succeeded, "
                      f"failed by status {summary['failed_by_status'] or 'none'}")
        if done.returncode != 0:
            sys.exit(f"demo: the deploy of {version} to {environment} failed (exit {done.returncode}): see above")
        figures = json.loads(Path(report.name).read_text())
    timings.append({"run": f"{version} -> {environment}", **figures})


def main() -> int:
    status = lab_status()
    urls = {"staging": status["staging_url"], "production": status["production_url"]}
    timings: list[dict] = []
    print("\n=== monitoring: scrape targets, alert rules, dashboard ===", flush=True)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    if subprocess.run([str(BIN / "ansible-playbook"), str(REPO / "playbooks" / "monitoring.yml")], cwd=REPO, env=env,
                      check=False).returncode != 0:
        sys.exit("demo: installing the monitoring failed: see above")
    for environment in ENVIRONMENTS:
        if live_version(urls[environment]) is None:
            deploy("1.0.0", environment, timings)
    for environment in ENVIRONMENTS:
        traffic = None
        if environment == "production":
            api_key = json.loads(Path(status["secrets_file"]).read_text())["api_key"]
            traffic = CustomerTraffic(urls[environment], api_key, rate=2, duration=300, max_payments=600,
                                      payment_method="pm_lab_live_visa")  # production uses the live key
        deploy("1.1.0", environment, timings, traffic)

    colours = map_colours(status["haproxy_map_file"])
    print("\n=== result ===")
    print(f"{'environment':12} {'version':8} {'colour':7} url")
    for environment in ENVIRONMENTS:
        answer = live_version(urls[environment]) or {}
        print(f"{environment:12} {answer.get('version', '-'):8} {colours.get(environment, '-'):7} {urls[environment]}")
    print("\n=== last deploy of each environment (from its journal) ===")
    for environment in ENVIRONMENTS:
        print(f"{environment:12} {last_deploy_summary(status['state_dir'], environment)}")
    print("\n=== bake after the switch (from the journal) ===")
    for line in bake_summary(status["state_dir"], "production"):
        print(line)
    print("\n=== run reports: the checklist, line by line, in the last deploy of each environment ===")
    for environment in ENVIRONMENTS:
        for line in report_summary(status["state_dir"], environment):
            print(line)
    print("\n=== phase timings (seconds) ===")
    for run in timings:
        phases = ", ".join(f"{p['phase']}: {p['seconds']:.1f}" for p in run["phases"])
        print(f"{run['run']:22} total {run['total_seconds']:6.1f}  ({phases})")
    print("\nTry: lab/labctl status | make test | ansible-playbook payments.deploy.rollback | "
          "ansible-playbook payments.deploy.smoke_test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
