"""A fleet in the lab: `labctl up --app-hosts 4` on a lab of its own (port offset 400, which no other lab uses), one
deploy, and every production app host serving the new release through the frontend; then a deploy whose new colour
fails on one host only, which must leave the whole fleet as it was. The lab is deleted afterwards.

About 3 minutes on an idle 2-core machine; it starts a lab beside the others, so it runs on its own
(PAYMENTS_E2E_FLEET=1, `make e2e-fleet`) and a plain `pytest tests/e2e` leaves it out.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from conftest import REPO, run_playbook
from helpers import journal, live, lock_file, map_colour

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(os.environ.get("PAYMENTS_E2E_FLEET") != "1",
                                 reason="the fleet test starts a lab of its own: PAYMENTS_E2E_FLEET=1 (`make e2e-fleet`)")]

HOSTS = [f"app{index}" for index in range(1, 5)]
OFFSET = 400
LAB_DIR = REPO / ".lab-fleet-e2e"


def labctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "lab" / "labctl"), *args], env={**os.environ, "PAYMENTS_LAB_DIR": str(LAB_DIR)},
                          capture_output=True, text=True, check=False, timeout=600)


@pytest.fixture(scope="module")
def fleet_lab() -> Iterator[dict]:
    """A lab with four production app hosts, deleted at the end whatever happened."""
    labctl("down", "--purge")
    try:
        up = labctl("up", "--port-offset", str(OFFSET), "--app-hosts", str(len(HOSTS)))
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        info = json.loads(labctl("status", "--json").stdout)
        info["secrets"] = json.loads(Path(info["secrets_file"]).read_text(encoding="utf-8"))
        yield info
    finally:
        labctl("down", "--purge")


@pytest.fixture(scope="session", autouse=True)
def staged_releases() -> None:
    """Not the first lab's: this module deploys on its own lab (production's staging gate overridden)."""


def test_one_deploy_reaches_every_host_of_the_fleet(fleet_lab: dict) -> None:
    production = {host: app["ports"] for host, app in fleet_lab["app_hosts"].items() if app["group"] == "production_app"}
    assert list(production) == HOSTS
    assert fleet_lab["inventory"] == str(LAB_DIR / "inventory" / "hosts.yml")
    # A later `up` without --app-hosts keeps the fleet, and another count is refused while it runs.
    again = labctl("up")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert list(json.loads(labctl("status", "--json").stdout)["app_hosts"])[:4] == HOSTS
    refused = labctl("up", "--app-hosts", "6")
    assert refused.returncode != 0 and "runs 4 production app host(s), not 6" in refused.stderr

    env = {"PAYMENTS_LAB_DIR": str(LAB_DIR), "ANSIBLE_INVENTORY": fleet_lab["inventory"]}
    run = run_playbook("deploy.yml", "-e", "release_version=1.1.0", "-e", json.dumps({"staging_gate_override": "fleet end-to-end test"}),
                       env=env)
    assert run.rc == 0
    assert set(run.recap) >= {*HOSTS, "lb1"} and all(run.recap[host]["failed"] == 0 for host in HOSTS)
    record = journal(fleet_lab, "deploy")
    assert record["release_to"] == "1.1.0" and record["app_hosts"] == HOSTS
    colour = map_colour(fleet_lab["haproxy_map_file"])
    for host, ports in production.items():  # each host's new colour, directly
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[colour]}/version", timeout=5) as answer:
            body = json.load(answer)
        assert (body["version"], body["instance"]) == ("1.1.0", f"{host}-{colour}")
    # Through the frontend: every host of the fleet answers, with the new release only.
    versions, instances = live(fleet_lab["production_url"], samples=4 * len(HOSTS))
    assert versions == {"1.1.0"}
    assert instances == {f"{host}-{colour}" for host in HOSTS}


class Unready(BaseHTTPRequestHandler):
    """Something else on a colour's port: every request answers 503."""

    def do_GET(self) -> None:  # pylint: disable=invalid-name
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # pylint: disable=redefined-builtin
        pass


def test_a_release_that_fails_on_one_host_changes_nothing_on_the_fleet(fleet_lab: dict) -> None:
    live_colour = map_colour(fleet_lab["haproxy_map_file"])
    idle = {"blue": "green", "green": "blue"}[live_colour]
    before = journal(fleet_lab, "deploy")
    port = fleet_lab["app_hosts"]["app3"]["ports"][idle]
    server = ThreadingHTTPServer(("127.0.0.1", port), Unready)  # app3's new colour cannot start there
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"PAYMENTS_LAB_DIR": str(LAB_DIR), "ANSIBLE_INVENTORY": fleet_lab["inventory"]}
        run = run_playbook("deploy.yml", "-e", "release_version=1.1.1", "-e", "release_health_timeout=10",
                           "-e", json.dumps({"staging_gate_override": "fleet end-to-end test"}), env=env)
    finally:
        server.shutdown()
        server.server_close()
    assert run.rc != 0
    assert "Failed during release" in run.text
    # Every host stopped in the release phase: no smoke test, no switch, the lock released, nothing journalled.
    assert all(run.recap[host]["failed"] >= 1 for host in HOSTS)
    assert "PLAY [Smoke-test the new colour" not in run.output and "PLAY [Switch traffic" not in run.output
    assert map_colour(fleet_lab["haproxy_map_file"]) == live_colour
    assert not lock_file(fleet_lab).exists()
    assert journal(fleet_lab, "deploy") == before
    versions, instances = live(fleet_lab["production_url"], samples=4 * len(HOSTS))
    assert versions == {"1.1.0"} and instances == {f"{host}-{live_colour}" for host in HOSTS}
