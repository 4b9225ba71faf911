"""labctl up --app-hosts N without a running lab: the fleet's inventory, its ports, what follows it (supervisor
programs, HAProxy backends, Prometheus targets, status) and the refusals. (tests/e2e/test_fleet.py starts one.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


def production_hosts(topo: dict) -> dict[str, dict[str, int]]:
    return {host: app["ports"] for host, app in topo["apps"].items() if app["group"] == "production_app"}


def test_a_fleet_of_six_keeps_app1_app2_and_adds_hosts_on_free_ports(labctl: ModuleType, tmp_path: Path) -> None:
    base = labctl.load_topology(labctl.INVENTORY)
    inventory = labctl.write_fleet_inventory(tmp_path, 6)
    topo = labctl.load_topology(inventory)
    hosts = production_hosts(topo)
    assert list(hosts) == [f"app{index}" for index in range(1, 7)]
    assert hosts["app1"] == {"blue": 28111, "green": 28112} and hosts["app2"] == {"blue": 28121, "green": 28122}
    assert hosts["app3"] == {"blue": 27031, "green": 27032} and hosts["app6"] == {"blue": 27061, "green": 27062}
    assert topo["apps"]["stg1"] == base["apps"]["stg1"] and topo["ports"] == base["ports"]
    assert labctl.lab_layout(tmp_path) == (0, 6)
    assert labctl.inventory_dir(tmp_path) == inventory
    # Ansible reads the copy: app6 is a production host with its own ports, in this lab's state directory.
    shown = subprocess.run([str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(inventory / "hosts.yml"),
                            "--list"], capture_output=True, text=True, check=True, cwd=tmp_path)
    listed = json.loads(shown.stdout)
    assert listed["production_app"]["hosts"] == list(hosts)
    assert listed["_meta"]["hostvars"]["app6"]["payments_colour_ports"] == {"blue": 27061, "green": 27062}
    assert listed["_meta"]["hostvars"]["app6"]["lab_state_dir"] == str(tmp_path)


def test_every_port_of_the_largest_fleet_is_its_own(labctl: ModuleType, tmp_path: Path) -> None:
    topo = labctl.load_topology(labctl.write_fleet_inventory(tmp_path, labctl.MAX_APP_HOSTS))
    ports = [*topo["ports"].values(), *(port for app in topo["apps"].values() for port in app["ports"].values())]
    assert len(ports) == len(set(ports))  # no two servers of the lab on one port
    assert max(ports) < 32768  # below the ephemeral range: an outgoing connection never takes one
    assert not set(ports) & {*range(20000, 25000)}  # nor one the tests' free_port hands out
    assert not set(ports) & set(labctl.ssh_hosts.ssh_ports().values())


@pytest.mark.parametrize("offset", [200, 400, 600])
def test_a_moved_fleet_meets_no_port_of_the_first_lab_nor_another_moved_lab(labctl: ModuleType, tmp_path: Path,
                                                                            offset: int) -> None:
    inventory = labctl.write_moved_inventory(tmp_path, offset, 12)
    moved = labctl.load_topology(inventory)
    base = labctl.load_topology(labctl.write_fleet_inventory(tmp_path / "first", 12))
    assert moved["ports"] == {name: port + offset for name, port in base["ports"].items()}
    assert {host: app["ports"] for host, app in moved["apps"].items()} == \
        {host: {colour: port + offset for colour, port in app["ports"].items()} for host, app in base["apps"].items()}
    assert not labctl.all_ports(moved) & labctl.reserved_ports()
    for other in {200, 400, 600} - {offset}:
        assert not labctl.moved_ports(offset) & labctl.moved_ports(other)
    assert labctl.lab_layout(tmp_path) == (offset, 12)


@pytest.mark.parametrize("count", [0, -1, 17])
def test_a_count_out_of_range_is_refused(labctl: ModuleType, tmp_path: Path, count: int) -> None:
    with pytest.raises(SystemExit, match="1 to 16 production app hosts"):
        labctl.settle_inventory(tmp_path, 0, count)
    assert not (tmp_path / "inventory").exists()


def test_what_follows_the_fleet(labctl: ModuleType, tmp_path: Path) -> None:
    labctl.write_fleet_inventory(tmp_path, 4)
    topo = labctl.load_topology(labctl.inventory_dir(tmp_path))
    conf = labctl.render_lab_supervisor(tmp_path, topo, labctl.ensure_secrets(tmp_path)).read_text()
    rendered = {line[len("[program:"):-1] for line in conf.splitlines() if line.startswith("[program:")}
    assert rendered == {*labctl.LAB_PROGRAMS, "host-app1", "host-app2", "host-app3", "host-app4", "host-stg1"}
    config = labctl.haproxy_config(tmp_path, topo)
    for colour, port in (("blue", 27041), ("green", 27042)):
        backend = config.split(f"\nbackend production_{colour}\n")[1].split("\nbackend ")[0]
        assert backend.count("    server ") == 4 and f"server app4 127.0.0.1:{port} check" in backend
    labctl.render_monitoring(tmp_path, topo)
    targets = json.loads((labctl.monitoring_paths(tmp_path)["targets"] / "production.json").read_text())
    assert sorted(group["labels"]["host"] for group in targets) == sorted(["app1", "app2", "app3", "app4"] * 2)
    assert {group["targets"][0] for group in targets if group["labels"]["host"] == "app3"} == \
        {"127.0.0.1:27031", "127.0.0.1:27032"}


def test_the_scrape_targets_follow_a_changed_fleet_keeping_each_colours_release(labctl: ModuleType,
                                                                                tmp_path: Path) -> None:
    labctl.write_fleet_inventory(tmp_path, 3)
    labctl.render_monitoring(tmp_path, labctl.load_topology(labctl.inventory_dir(tmp_path)))
    path = labctl.monitoring_paths(tmp_path)["targets"] / "production.json"
    groups = json.loads(path.read_text())
    for group in groups:  # what the monitoring role wrote after deploys: a release per colour
        group["labels"]["release"] = {"blue": "1.0.0", "green": "1.1.0"}[group["labels"]["colour"]]
    path.write_text(json.dumps(groups))
    labctl.write_fleet_inventory(tmp_path, 5)
    labctl.render_monitoring(tmp_path, labctl.load_topology(labctl.inventory_dir(tmp_path)))
    grown = json.loads(path.read_text())
    assert len(grown) == 10
    assert {(g["labels"]["host"], g["labels"]["colour"], g["labels"]["release"]) for g in grown} >= \
        {("app5", "blue", "1.0.0"), ("app5", "green", "1.1.0"), ("app1", "blue", "1.0.0")}
    before = path.read_text()
    labctl.render_monitoring(tmp_path, labctl.load_topology(labctl.inventory_dir(tmp_path)))
    assert path.read_text() == before  # the same fleet: the role's file is left alone


def test_up_keeps_the_fleet_and_refuses_another_count_while_running(labctl: ModuleType, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labctl, "supervisor_running", lambda state: False)
    assert labctl.settle_inventory(tmp_path, 0, None) == 2  # a new lab: inventories/lab itself
    assert labctl.inventory_dir(tmp_path) == labctl.INVENTORY
    assert labctl.settle_inventory(tmp_path, 0, 6) == 6
    assert labctl.settle_inventory(tmp_path, 0, None) == 6  # a later up without --app-hosts keeps the fleet
    assert labctl.lab_layout(tmp_path) == (0, 6)
    monkeypatch.setattr(labctl, "supervisor_running", lambda state: True)
    with pytest.raises(SystemExit, match=r"runs 6 production app host\(s\), not 4: stop it with 'labctl down'"):
        labctl.settle_inventory(tmp_path, 0, 4)
    assert labctl.lab_layout(tmp_path) == (0, 6)
    assert labctl.settle_inventory(tmp_path, 0, 6) == 6  # the same count on a running lab is fine
    monkeypatch.setattr(labctl, "supervisor_running", lambda state: False)
    assert labctl.settle_inventory(tmp_path, 0, 2) == 2  # stopped: back to inventories/lab
    assert labctl.inventory_dir(tmp_path) == labctl.INVENTORY


def test_a_moved_lab_keeps_its_ports_and_its_fleet(labctl: ModuleType, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labctl, "supervisor_running", lambda state: False)
    assert labctl.settle_inventory(tmp_path, 400, 4) == 4
    assert labctl.settle_inventory(tmp_path, 0, None) == 4  # `up` alone
    assert labctl.lab_layout(tmp_path) == (400, 4)
    assert labctl.settle_inventory(tmp_path, 400, None) == 4  # `up --port-offset 400` alone
    assert labctl.settle_inventory(tmp_path, 0, 2) == 2  # --app-hosts alone keeps the offset
    assert labctl.lab_layout(tmp_path) == (400, 2)
    hosts = yaml.safe_load((tmp_path / "inventory" / "hosts.yml").read_text())["all"]["children"]["production_app"]
    assert hosts["hosts"]["app2"]["payments_colour_ports"] == {"blue": 28521, "green": 28522}


def test_a_fleet_is_refused_on_the_ssh_lab(labctl: ModuleType, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labctl, "supervisor_running", lambda state: False)
    with pytest.raises(SystemExit, match="--app-hosts needs a lab without --ssh"):
        labctl.settle_inventory(tmp_path, 0, 4, ssh=True)
    assert not (tmp_path / "inventory").exists()


def test_status_lists_the_app_hosts(labctl: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PAYMENTS_LAB_DIR", str(tmp_path))
    labctl.write_moved_inventory(tmp_path, 600, 3)
    assert labctl.main(["status", "--json"]) == 3  # nothing runs
    info = json.loads(capsys.readouterr().out)
    assert info["inventory"] == str(tmp_path / "inventory" / "hosts.yml")
    assert {host: app["ports"]["blue"] for host, app in info["app_hosts"].items()} == \
        {"app1": 28711, "app2": 28721, "app3": 27631, "stg1": 28811}
    labctl.main(["status"])
    assert "app3 27631/27632" in capsys.readouterr().out


def test_a_second_load_balancer_has_its_own_ports_socket_map_and_journal(labctl: ModuleType, tmp_path: Path) -> None:
    inventory = labctl.write_fleet_inventory(tmp_path, 2, 0, 2)
    topo = labctl.load_topology(inventory)
    assert topo["lb"] == "lb1" and list(topo["lbs"]) == ["lb1", "lb2"]
    assert topo["lbs"]["lb1"] == {name: topo["ports"][name] for name in labctl.LB_PORTS}
    assert topo["lbs"]["lb2"] == {"production": 27025, "staging": 27026, "production_https": 27027, "staging_https": 27028}
    assert labctl.lab_load_balancer_count(tmp_path) == 2 and labctl.lab_layout(tmp_path) == (0, 2)
    shown = subprocess.run([str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(inventory / "hosts.yml"),
                            "--host", "lb2"], capture_output=True, text=True, check=True, cwd=tmp_path)
    lb2 = json.loads(shown.stdout)
    # ansible-inventory does not template: each value names lb2's directory under the state directory of the lab.
    assert lb2["traffic_lb_admin_socket"] == "{{ lab_state_dir }}/hosts/lb2/run/haproxy/admin.sock"
    assert lb2["traffic_lb_map_file"] == "{{ lab_state_dir }}/hosts/lb2/etc/haproxy/colours.map"
    assert lb2["deploy_journal_dir"] == "{{ lab_state_dir }}/hosts/lb2/var/lib/payments/journal"
    assert lb2["traffic_frontend_urls"] == {"production": "http://127.0.0.1:27025", "staging": "http://127.0.0.1:27026"}
    assert lb2["traffic_switch_tls_endpoints"]["staging"]["port"] == 27028 and lb2["lab_state_dir"] == str(tmp_path)
    # Its HAProxy: its own ports, socket and map, the same backends as lb1; a supervisor program of its own.
    lb1_config, lb2_config = (labctl.haproxy_config(tmp_path, topo, lb) for lb in ("lb1", "lb2"))
    for port in (27025, 27026, 27027, 27028):
        assert f"bind 127.0.0.1:{port}" in lb2_config and f":{port}" not in lb1_config
    assert f"{tmp_path}/hosts/lb2/run/haproxy/admin.sock" in lb2_config and "hosts/lb1" not in lb2_config
    assert lb1_config.split("\nbackend ", 1)[1] == lb2_config.split("\nbackend ", 1)[1]
    conf = labctl.render_lab_supervisor(tmp_path, topo, labctl.ensure_secrets(tmp_path)).read_text()
    assert "[program:haproxy]" in conf and f"[program:haproxy-lb2]\ncommand=/usr/sbin/haproxy -W -db -f {tmp_path}/hosts/lb2" in conf


def test_an_added_load_balancer_starts_on_the_colours_the_first_routes_to(labctl: ModuleType, tmp_path: Path) -> None:
    labctl.write_fleet_inventory(tmp_path, 2)
    topo = labctl.load_topology(labctl.inventory_dir(tmp_path))
    labctl.render_haproxy(tmp_path, topo)
    first_map = labctl.haproxy_paths(tmp_path, topo)[1]
    first_map.write_text("production green\nstaging blue\n")  # what deploys left
    labctl.write_fleet_inventory(tmp_path, 2, 0, 3)
    topo = labctl.load_topology(labctl.inventory_dir(tmp_path))
    for lb in ("lb2", "lb3"):
        labctl.render_haproxy(tmp_path, topo, lb=lb)
        assert labctl.haproxy_paths(tmp_path, topo, lb)[1].read_text() == "production green\nstaging blue\n"
    labctl.haproxy_paths(tmp_path, topo, "lb2")[1].write_text("production blue\nstaging blue\n")
    labctl.render_haproxy(tmp_path, topo, lb="lb2")  # an existing map is state: never reset
    assert labctl.haproxy_paths(tmp_path, topo, "lb2")[1].read_text() == "production blue\nstaging blue\n"
    # Down to one load balancer, then two again: lb2 starts on lb1's colours, not on those it had.
    labctl.write_fleet_inventory(tmp_path, 2, 0, 1)
    labctl.forget_removed_load_balancers(tmp_path, labctl.load_topology(labctl.inventory_dir(tmp_path)))
    assert first_map.exists() and not labctl.haproxy_paths(tmp_path, topo, "lb2")[1].exists()
    labctl.render_haproxy(tmp_path, topo, lb="lb2")
    assert labctl.haproxy_paths(tmp_path, topo, "lb2")[1].read_text() == "production green\nstaging blue\n"


def test_every_port_of_the_largest_lab_is_its_own_and_moves_clear_of_the_first(labctl: ModuleType, tmp_path: Path) -> None:
    topo = labctl.load_topology(labctl.write_fleet_inventory(tmp_path, labctl.MAX_APP_HOSTS, 0, labctl.MAX_LOAD_BALANCERS))
    ports = [*topo["ports"].values(), *(port for app in topo["apps"].values() for port in app["ports"].values()),
             *(port for name, lb in topo["lbs"].items() if name != "lb1" for port in lb.values())]
    assert len(ports) == len(set(ports)) and max(ports) < 32768
    assert not set(ports) & {*range(20000, 25000)} and not set(ports) & set(labctl.ssh_hosts.ssh_ports().values())
    for offset in (200, 400, 600):
        moved = labctl.load_topology(labctl.write_moved_inventory(tmp_path / str(offset), offset, 12, labctl.MAX_LOAD_BALANCERS))
        assert moved["lbs"]["lb2"] == {name: port + offset for name, port in topo["lbs"]["lb2"].items()}
        assert not labctl.all_ports(moved) & labctl.reserved_ports()


@pytest.mark.parametrize("count", [0, 5])
def test_a_load_balancer_count_out_of_range_is_refused(labctl: ModuleType, tmp_path: Path, count: int) -> None:
    with pytest.raises(SystemExit, match="1 to 4 load balancers"):
        labctl.settle_inventory(tmp_path, 0, None, asked_lbs=count)
    assert not (tmp_path / "inventory").exists()


def test_the_load_balancer_count_changes_on_a_running_lab_and_keeps_the_fleet(labctl: ModuleType, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labctl, "supervisor_running", lambda state: False)
    assert labctl.settle_inventory(tmp_path, 0, 4) == 4
    monkeypatch.setattr(labctl, "supervisor_running", lambda state: True)
    assert labctl.settle_inventory(tmp_path, 0, None, asked_lbs=2) == 4
    assert labctl.lab_load_balancer_count(tmp_path) == 2 and labctl.lab_layout(tmp_path) == (0, 4)
    assert labctl.settle_inventory(tmp_path, 0, None) == 4 and labctl.lab_load_balancer_count(tmp_path) == 2
    monkeypatch.setattr(labctl, "supervisor_running", lambda state: False)
    assert labctl.settle_inventory(tmp_path, 0, 2, asked_lbs=1) == 2  # back to inventories/lab itself
    assert labctl.inventory_dir(tmp_path) == labctl.INVENTORY
    # The SSH lab may have more load balancers too (inventories/lab-ssh keeps lb1; the lab inventory lists them all).
    assert labctl.settle_inventory(tmp_path, 0, None, ssh=True, asked_lbs=2) == 2
    assert labctl.lab_load_balancer_count(tmp_path) == 2
