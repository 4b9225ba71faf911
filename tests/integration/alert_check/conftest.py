"""A real Alertmanager on a free loopback port routing every alert to the lab's webhook receiver, both in a temporary
directory and stopped at the end; and a way to run the monitoring role's alert_check entry point against them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
from pathlib import Path

import pytest
from host_python import HOST_PYTHON
from loopback_ports import free_port

REPO = Path(__file__).resolve().parents[3]
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


def wait_http(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class AlertPath(t.NamedTuple):
    alertmanager_url: str
    receiver_url: str


@pytest.fixture(scope="session")
def alert_path() -> t.Iterator[AlertPath]:
    if not os.access(ALERTMANAGER, os.X_OK):
        pytest.skip("prometheus-alertmanager is not installed")
    directory = Path(tempfile.mkdtemp(prefix="alert-check-"))
    am_port, receiver_port = free_port(), free_port()
    # Only alerts of environment "production" are routed to the receiver; "staging" ones go nowhere, which is how a
    # broken alerting path looks from the outside.
    (directory / "alertmanager.yml").write_text(json.dumps({
        "route": {"receiver": "void", "group_by": ["alertname", "environment"], "group_wait": "1s",
                  "group_interval": "2s", "repeat_interval": "1h",
                  "routes": [{"matchers": ['environment="production"'], "receiver": "receiver"}]},
        "receivers": [{"name": "void"},
                      {"name": "receiver", "webhook_configs": [{"url": f"http://127.0.0.1:{receiver_port}/alerts"}]}],
    }))
    logs = (directory / "alertmanager.log").open("w")
    processes = [
        subprocess.Popen([ALERTMANAGER, f"--config.file={directory / 'alertmanager.yml'}",
                          f"--storage.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                          "--cluster.listen-address="], stdout=logs, stderr=subprocess.STDOUT),
        subprocess.Popen([sys.executable, "-m", "alert_receiver", "--port", str(receiver_port)],
                         env={**os.environ, "PYTHONPATH": str(REPO / "lab")}, stdout=logs, stderr=subprocess.STDOUT),
    ]
    try:
        wait_http(f"http://127.0.0.1:{am_port}/-/ready")
        wait_http(f"http://127.0.0.1:{receiver_port}/health")
        yield AlertPath(f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{receiver_port}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        logs.close()
        shutil.rmtree(directory, ignore_errors=True)


def run_alert_check(tmp_path: Path, **variables: t.Any) -> subprocess.CompletedProcess:
    """ansible-playbook with one play on localhost that runs payments.deploy.monitoring's alert_check."""
    playbook = tmp_path / "alert_check.yml"
    playbook.write_text(
        "- name: Alert check\n  hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Check the alerting path\n      ansible.builtin.include_role:\n"
        "        name: payments.deploy.monitoring\n        tasks_from: alert_check\n")
    extra = {"ansible_python_interpreter": HOST_PYTHON, "monitoring_alert_check_host": "localhost", **variables}
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(playbook), "-e", json.dumps(extra)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
