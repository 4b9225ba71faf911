"""module_defaults with group/payments.deploy.haproxy: the admin socket and the map file set once for the play reach
haproxy_switch_info, haproxy_switch and rollback_switch, against a real HAProxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

import yaml

from real_haproxy import HAProxyLab
from host_python import HOST_PYTHON

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


def play(collections_dir: Path, tmp_path: Path, defaults: dict[str, t.Any], tasks: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    """One play on localhost with ``module_defaults`` for the haproxy group; the JSON report of ansible.posix.json."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "HAProxy modules with their options set once", "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/payments.deploy.haproxy": defaults}, "tasks": tasks}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_dir), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_LOCALHOST_WARNING="0")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={HOST_PYTHON}",
                           str(playbook)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180, check=False)
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"ansible-playbook failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc


def results(report: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    return {task["task"]["name"]: task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]}


def test_group_defaults_reach_every_haproxy_module(haproxy_lab: HAProxyLab, collections_dir: Path, tmp_path: Path) -> None:
    lab = haproxy_lab
    report = play(collections_dir, tmp_path, {"admin_socket": lab.socket, "map_file": lab.map_file}, [
        {"name": "Read", "payments.deploy.haproxy_switch_info": {}},
        {"name": "Switch", "payments.deploy.haproxy_switch": {"key": "production", "colour": "green"}},
        {"name": "Read again", "payments.deploy.haproxy_switch_info": {}},
    ])
    done = results(report)
    assert done["Read"]["colours"]["production"] == "blue" and not done["Read"].get("failed"), done["Read"]
    assert done["Switch"]["changed"] is True and not done["Switch"].get("failed"), done["Switch"]
    assert done["Read again"]["colours"]["production"] == "green"
    assert lab.runtime_colour() == "green" and lab.file_colour() == "green"


def test_a_task_option_outranks_the_group_default(haproxy_lab: HAProxyLab, collections_dir: Path, tmp_path: Path) -> None:
    lab = haproxy_lab
    missing = str(tmp_path / "no-such.sock")
    report = play(collections_dir, tmp_path, {"admin_socket": missing, "map_file": lab.map_file}, [
        {"name": "Default socket", "payments.deploy.haproxy_switch_info": {}, "ignore_errors": True},
        {"name": "Own socket", "payments.deploy.haproxy_switch_info": {"admin_socket": lab.socket}},
    ])
    done = results(report)
    assert done["Default socket"]["failed"] is True and missing in done["Default socket"]["msg"]
    assert done["Own socket"]["colours"]["production"] == "blue" and not done["Own socket"].get("failed")
