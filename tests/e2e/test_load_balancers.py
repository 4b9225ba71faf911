"""Two load balancers in one environment: the deploy checks both, flips both, verifies both, and flips both back when
either fails. The second one (lb2) is a real HAProxy started here with the lab's configuration on its own ports,
admin socket, map file and journal directory, and a copy of the lab inventory that lists it."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

from helpers import journal, live, lock_file, map_colour
from loadgen import LoadGenerator, summarize
from loopback_ports import free_port

pytestmark = pytest.mark.timeout(900)
HAPROXY = "/usr/sbin/haproxy"


def port_of(url: str) -> int:
    return int(urllib.parse.urlsplit(url).port or 0)


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


class SecondLoadBalancer:
    """lb2: the lab's HAProxy configuration with every port, the socket and the map moved to lb2's own."""

    def __init__(self, lab: dict, inventory_root: Path) -> None:
        state = Path(lab["state_dir"])
        self.root = state / "hosts" / "lb2"
        self.socket = self.root / "run" / "haproxy" / "admin.sock"
        self.map_file = self.root / "etc" / "haproxy" / "colours.map"
        self.config = self.root / "etc" / "haproxy" / "haproxy.cfg"
        self.journal_dir = self.root / "var" / "lib" / "payments" / "journal"
        self.ports = {name: free_port() for name in ("production", "staging", "production_https", "staging_https")}
        self.urls = {env: f"http://127.0.0.1:{self.ports[env]}" for env in ("production", "staging")}
        self.inventory = inventory_root / "hosts.yml"
        self.process: subprocess.Popen | None = None
        self.lab = lab

    def start(self) -> None:
        lab, lb1 = self.lab, Path(self.lab["haproxy_map_file"]).parents[2]
        for directory in (self.socket.parent, self.config.parent, self.journal_dir):
            directory.mkdir(parents=True, exist_ok=True)
        text = Path(lab["haproxy_map_file"]).with_name("haproxy.cfg").read_text()
        text = text.replace(str(lb1 / "run" / "haproxy" / "admin.sock"), str(self.socket))
        text = text.replace(str(lb1 / "etc" / "haproxy" / "colours.map"), str(self.map_file))
        for name in self.ports:
            old = f"bind 127.0.0.1:{port_of(lab[name + '_url'])}"
            assert old in text, f"the lab's HAProxy configuration has no {old}"
            text = text.replace(old, f"bind 127.0.0.1:{self.ports[name]}")
        self.config.write_text(text)
        shutil.copyfile(lab["haproxy_map_file"], self.map_file)
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(self.config)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        log = (self.root / "haproxy.log").open("w")
        self.process = subprocess.Popen([HAPROXY, "-W", "-db", "-f", str(self.config)], stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.socket.exists() and self.servers("production_blue"):
                break
            assert self.process.poll() is None, (self.root / "haproxy.log").read_text()
            time.sleep(0.2)
        # Wait for the health checks: every server of the live backend UP (operational state 2), as on lb1.
        backend = f"production_{map_colour(str(self.map_file))}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and {row[5] for row in self.servers(backend)} != {"2"}:
            time.sleep(0.5)

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

    def write_inventory(self, source: Path) -> None:
        shutil.copytree(source, self.inventory.parent, dirs_exist_ok=True)
        hosts = yaml.safe_load(self.inventory.read_text())
        endpoints = yaml.safe_load((source / "group_vars" / "all" / "tls.yml").read_text())
        tls = {env: {"host": "127.0.0.1", "port": self.ports[f"{env}_https"], "server_name": "127.0.0.1",
                     "ca_path": self.lab["tls_ca_file"]} for env in ("production", "staging")}
        assert endpoints["traffic_switch_tls_endpoints"].keys() == tls.keys()
        hosts["all"]["children"]["loadbalancers"]["hosts"]["lb2"] = {
            "traffic_lb_admin_socket": str(self.socket),
            "traffic_lb_map_file": str(self.map_file),
            "traffic_frontend_urls": self.urls,
            "traffic_switch_tls_endpoints": tls,
            "deploy_journal_dir": str(self.journal_dir),
        }
        self.inventory.write_text(yaml.safe_dump(hosts, sort_keys=False))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)


@pytest.fixture(scope="module")
def lb2(lab, tmp_path_factory):
    second = SecondLoadBalancer(lab, tmp_path_factory.mktemp("two-lbs") / "inventory")
    second.write_inventory(Path(lab["inventory"]).parent)
    second.start()
    yield second
    second.stop()
    shutil.rmtree(second.root, ignore_errors=True)


def deploy(playbook, lab: dict, second: SecondLoadBalancer, version: str):
    return playbook("deploy.yml", "-e", f"release_version={version}", inventory=second.inventory,
                    env={"PAYMENTS_LAB_DIR": lab["state_dir"]})


def other(version: str) -> str:
    return "1.0.0" if version == "1.1.0" else "1.1.0"


def test_a_deploy_flips_and_verifies_every_load_balancer(lab, playbook, lb2):
    [before] = live(lab["production_url"])[0]
    run = deploy(playbook, lab, lb2, other(before))
    assert run.rc == 0
    colour = map_colour(lab["haproxy_map_file"])
    assert map_colour(str(lb2.map_file)) == colour
    for url in (lab["production_url"], lb2.urls["production"]):
        versions, instances = live(url)
        assert versions == {other(before)} and {i.rsplit("-", 1)[0] for i in instances} == {"app1", "app2"}
    # Each load balancer verified its own frontend, and its own HTTPS certificate.
    assert f"requests through {lab['production_url']}: all {other(before)}" in run.text
    assert f"requests through {lb2.urls['production']}: all {other(before)}" in run.text
    assert run.text.count("The production frontend serves CN=lb1.payments.lab") == 2
    assert run.recap["lb2"]["failed"] == 0
    # Back to the release the lab had, with both load balancers.
    assert deploy(playbook, lab, lb2, before).rc == 0
    assert map_colour(str(lb2.map_file)) == map_colour(lab["haproxy_map_file"]) != colour


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
            run = deploy(playbook, lab, lb2, other(before))
        finally:
            samples = [gen.stop() for gen in loads]
    finally:
        runtime(lb2.socket, f"set server {backend}/app2 addr 127.0.0.1 port {app2[idle]}")
    assert lb2.server_port(backend, "app2") == app2[idle]
    for got in samples:
        print(summarize(got))
    assert run.rc != 0
    assert f"expected only {other(before)} from {idle}" in run.text
    assert f"Traffic was flipped back to {colour} ({before})" in run.text
    assert run.recap["lb1"]["failed"] == 1 and run.recap["lb2"]["failed"] == 1
    assert map_colour(lab["haproxy_map_file"]) == map_colour(str(lb2.map_file)) == colour
    for url in (lab["production_url"], lb2.urls["production"]):
        assert live(url)[0] == {before}
    record = journal(lab, "rollback")
    assert (record["kind"], record["state"], record["release_to"]) == ("rollback", "automatic", before)
    assert f"expected only {other(before)} from {idle}" in record["reason"]
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
        run = deploy(playbook, lab, lb2, other(before))
    finally:
        route(colour)
    assert run.rc != 0
    assert (f"The load balancers route production to different colours (lb1: {colour}, lb2: {idle}); "
            "nothing was changed.") in run.text
    assert "Install the release files" not in run.text
    assert map_colour(lab["haproxy_map_file"]) == colour and live(lab["production_url"])[0] == {before}
    assert not lock_file(lab).exists()
