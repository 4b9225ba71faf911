"""Two load balancers in one environment: the deploy checks both, flips both, verifies both, and flips both back when
either fails. The second one (lb2) is the lab's own: `labctl up --load-balancers 2` starts it on the running lab (its
own ports, admin socket, map file and journal directory, listed in the inventory labctl writes) and
`labctl up --load-balancers 1` stops it again afterwards."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import journal, live, lock_file, map_colour, other_release
from loadgen import LoadGenerator, summarize

pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[2]


def runtime(socket_path: Path, command: str) -> str:
    """One command on an HAProxy admin socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(socket_path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def labctl(lab: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "lab" / "labctl"), *args], capture_output=True, text=True, check=False,
                          env={**os.environ, "PAYMENTS_LAB_DIR": lab["state_dir"]})


class SecondLoadBalancer:
    """lb2 as `labctl status --json` lists it."""

    def __init__(self, status: dict) -> None:
        info = status["load_balancers"]["lb2"]
        self.socket = Path(info["admin_socket"])
        self.map_file = Path(info["map_file"])
        self.urls = {env: info[f"{env}_url"] for env in ("production", "staging")}
        self.inventory = Path(status["inventory"])

    def servers(self, backend: str) -> list[list[str]]:
        """The rows of `show servers state` for one backend (srv_name is column 3, srv_op_state 5, srv_port 18)."""
        try:
            text = runtime(self.socket, f"show servers state {backend}")
        except OSError:
            return []
        return [line.split() for line in text.splitlines()[2:] if line.strip() and not line.startswith("#")]

    def server_port(self, backend: str, server: str) -> int:
        [row] = [row for row in self.servers(backend) if row[3] == server]
        return int(row[18])

    def wait_until_live_backend_is_up(self) -> None:
        """Every server of the live backend UP (operational state 2) after lb2's first health checks, as on lb1."""
        backend = f"production_{map_colour(str(self.map_file))}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and {row[5] for row in self.servers(backend)} != {"2"}:
            time.sleep(0.5)


@pytest.fixture(scope="module")
def lb2(lab):
    added = labctl(lab, "up", "--load-balancers", "2")
    assert added.returncode == 0, added.stdout + added.stderr
    status = json.loads(labctl(lab, "status", "--json").stdout)
    assert status["running"] and status["programs"]["haproxy-lb2"] == "RUNNING"
    assert list(status["load_balancers"]) == ["lb1", "lb2"]
    hosts = yaml.safe_load(Path(status["inventory"]).read_text())["all"]["children"]["loadbalancers"]["hosts"]
    assert list(hosts) == ["lb1", "lb2"]
    second = SecondLoadBalancer(status)
    assert second.map_file.read_text() == Path(lab["haproxy_map_file"]).read_text()  # it starts on lb1's colours
    second.wait_until_live_backend_is_up()
    yield second
    removed = labctl(lab, "up", "--load-balancers", "1")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    status = json.loads(labctl(lab, "status", "--json").stdout)
    assert list(status["load_balancers"]) == ["lb1"] and "haproxy-lb2" not in status["programs"]
    assert status["inventory"] == lab["inventory"]


def deploy(playbook, lab: dict, second: SecondLoadBalancer, version: str):
    return playbook("deploy.yml", "-e", f"release_version={version}", inventory=second.inventory,
                    env={"PAYMENTS_LAB_DIR": lab["state_dir"]})


@pytest.mark.extended
def test_a_deploy_flips_and_verifies_every_load_balancer(lab, playbook, lb2):
    [before] = live(lab["production_url"])[0]
    run = deploy(playbook, lab, lb2, other_release(before))
    assert run.rc == 0
    colour = map_colour(lab["haproxy_map_file"])
    assert map_colour(str(lb2.map_file)) == colour
    for url in (lab["production_url"], lb2.urls["production"]):
        versions, instances = live(url)
        assert versions == {other_release(before)} and {i.rsplit("-", 1)[0] for i in instances} == {"app1", "app2"}
    # Each load balancer verified its own frontend, and its own HTTPS certificate.
    assert f"requests through {lab['production_url']}: all {other_release(before)}" in run.text
    assert f"requests through {lb2.urls['production']}: all {other_release(before)}" in run.text
    assert run.text.count("The production frontend serves CN=lb1.payments.lab") == 2
    assert run.recap["lb2"]["failed"] == 0


@pytest.mark.extended
def test_a_failed_verification_on_one_load_balancer_flips_every_one_back(lab, playbook, lb2):
    """lb2's new-colour server of app2 is pointed at app2's live colour (a wrong backend address): lb1 verifies, lb2
    sees the old release, and both go back to the old colour without a failed request."""
    [before] = live(lab["production_url"])[0]
    colour = map_colour(lab["haproxy_map_file"])
    idle = "green" if colour == "blue" else "blue"
    inventory = yaml.safe_load(Path(lab["inventory"]).read_text())["all"]["children"]
    app2 = inventory["production_app"]["hosts"]["app2"]["payments_colour_ports"]
    backend = f"production_{idle}"
    runtime(lb2.socket, f"set server {backend}/app2 addr 127.0.0.1 port {app2[colour]}")
    assert lb2.server_port(backend, "app2") == app2[colour]
    try:
        loads = [LoadGenerator(url + "/version", concurrency=2, duration=300, max_requests=100000, pause=0.01)
                 for url in (lab["production_url"], lb2.urls["production"])]
        for gen in loads:
            gen.start()
        try:
            run = deploy(playbook, lab, lb2, other_release(before))
        finally:
            samples = [gen.stop() for gen in loads]
    finally:
        runtime(lb2.socket, f"set server {backend}/app2 addr 127.0.0.1 port {app2[idle]}")
    assert lb2.server_port(backend, "app2") == app2[idle]
    for got in samples:
        print(summarize(got))
    assert run.rc != 0
    assert f"expected only {other_release(before)} from {idle}" in run.text
    assert f"Traffic was flipped back to {colour} ({before})" in run.text
    assert run.recap["lb1"]["failed"] == 1 and run.recap["lb2"]["failed"] == 1
    assert map_colour(lab["haproxy_map_file"]) == map_colour(str(lb2.map_file)) == colour
    for url in (lab["production_url"], lb2.urls["production"]):
        assert live(url)[0] == {before}
    record = journal(lab, "rollback")
    assert (record["kind"], record["state"], record["release_to"]) == ("rollback", "automatic", before)
    assert f"expected only {other_release(before)} from {idle}" in record["reason"]
    assert not lock_file(lab).exists()
    for got in samples:
        assert len(got) > 50 and not [s for s in got if not s.ok], summarize(got)


def test_load_balancers_out_of_step_stop_the_deploy_before_anything_changes(lab, playbook, lb2):
    [before] = live(lab["production_url"])[0]
    colour = map_colour(lab["haproxy_map_file"])
    idle = "green" if colour == "blue" else "blue"

    def route(to: str) -> None:  # what haproxy_switch does: the running map, then the file
        runtime(lb2.socket, f"set map {lb2.map_file} production {to}")
        lb2.map_file.write_text(lb2.map_file.read_text().replace(f"production {colour if to == idle else idle}",
                                                                 f"production {to}"))
        assert map_colour(str(lb2.map_file)) == to

    route(idle)
    try:
        run = deploy(playbook, lab, lb2, other_release(before))
    finally:
        route(colour)
    assert run.rc != 0
    assert (f"The load balancers route production to different colours (lb1: {colour}, lb2: {idle}); "
            "nothing was changed.") in run.text
    assert "Install the release files" not in run.text
    assert map_colour(lab["haproxy_map_file"]) == colour and live(lab["production_url"])[0] == {before}
    assert not lock_file(lab).exists()
