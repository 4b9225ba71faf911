"""haproxy_switch and haproxy_switch_info against a real HAProxy, driven through the ``ansible`` CLI."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import typing as t
from pathlib import Path

from real_haproxy import HAProxyLab
from host_python import HOST_PYTHON

ANSIBLE = str(Path(sys.executable).with_name("ansible"))


def ansible(collections_dir: Path, module: str, args: dict[str, t.Any], *flags: str) -> dict[str, t.Any]:
    """Run one module on localhost with the real ``ansible`` CLI; return its result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(collections_dir),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_LOCALHOST_WARNING="0",
    )
    command = [
        ANSIBLE, "localhost", "-i", "localhost,", "-c", "local",
        "-e", f"ansible_python_interpreter={HOST_PYTHON}",
        "-m", f"payments.deploy.{module}", "-a", json.dumps(args), *flags,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=collections_dir, timeout=120, check=False)
    try:
        report = json.loads(proc.stdout)
        return report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(f"ansible failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc


def get(conn: http.client.HTTPConnection) -> tuple[int, str]:
    conn.request("GET", "/")
    response = conn.getresponse()
    return response.status, response.read().decode()


def colours_served(lab: HAProxyLab, requests: int = 8) -> set[str]:
    """Colours named by ``requests`` answers, each on a new connection."""
    seen = set()
    for dummy in range(requests):
        conn = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=5)
        status, body = get(conn)
        conn.close()
        assert status == 200, body
        seen.add(body.split()[0])
    return seen


def switch_args(lab: HAProxyLab, colour: str, **extra: t.Any) -> dict[str, t.Any]:
    return {"admin_socket": lab.socket, "map_file": lab.map_file, "key": "production", "colour": colour, **extra}


def test_switch_blue_to_green_survives_reload(haproxy_lab: HAProxyLab, collections_dir: Path) -> None:
    lab = haproxy_lab
    assert colours_served(lab) == {"blue"}
    kept_alive = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=5)
    assert get(kept_alive)[1].startswith("blue")

    result = ansible(collections_dir, "haproxy_switch", switch_args(lab, "green"), "--diff")
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert result["previous_colour"] == "blue"
    assert result["colour"] == "green"
    assert result["backend"] == "production_green"
    assert result["backend_servers"] == {"app1": "UP", "app2": "UP"}
    assert result["persisted"] is True
    assert result["switched_at"] <= time.time()
    assert f"set map {lab.map_file} production green" in result["commands"]
    assert result["diff"]["before"] == "production: blue\n" and result["diff"]["after"] == "production: green\n"

    # the very next request on an already open keep-alive connection goes to green, and so does every new one
    assert get(kept_alive)[1].startswith("green")
    kept_alive.close()
    assert colours_served(lab) == {"green"}
    assert lab.runtime_colour() == "green"
    assert Path(lab.map_file).read_text() == "production green\nstaging green\n"
    assert oct(os.stat(lab.map_file).st_mode & 0o777) == "0o640"

    again = ansible(collections_dir, "haproxy_switch", switch_args(lab, "green"))
    assert again["changed"] is False
    assert again["switched_at"] is None

    lab.reload()
    assert lab.runtime_colour() == "green"
    assert colours_served(lab) == {"green"}
    after_reload = ansible(collections_dir, "haproxy_switch", switch_args(lab, "green"))
    assert after_reload["changed"] is False


def test_switch_is_atomic_under_load(haproxy_lab: HAProxyLab, collections_dir: Path) -> None:
    """Clients on keep-alive connections never fail, and every request started after the switch is green."""
    lab = haproxy_lab
    stop = threading.Event()
    answers: list[tuple[float, int, str]] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=5)
        while not stop.is_set():
            started = time.time()
            status, body = get(conn)
            answers.append((started, status, body.split()[0]))
        conn.close()

    clients = [threading.Thread(target=client) for dummy in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(0.5)
    launched = time.time()
    try:
        result = ansible(collections_dir, "haproxy_switch", switch_args(lab, "green"))
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=10)
    assert result["changed"] is True
    switched_at = result["switched_at"]
    assert all(status == 200 for started, status, colour in answers)
    assert launched < switched_at
    assert {colour for started, status, colour in answers if started < launched} == {"blue"}
    assert {colour for started, status, colour in answers if started > switched_at} == {"green"}


def test_down_server_in_target_blocks_switch(haproxy_lab: HAProxyLab, collections_dir: Path) -> None:
    lab = haproxy_lab
    lab.apps[("green", "app2")].ready = False
    lab.wait_for(lambda: lab.statuses()["production_green/app2"] == "DOWN", "green app2 to go DOWN")

    check = ansible(collections_dir, "haproxy_switch", switch_args(lab, "green", wait_timeout=1), "--check")
    assert check["failed"] is True
    result = ansible(collections_dir, "haproxy_switch", switch_args(lab, "green", wait_timeout=1))
    assert result["failed"] is True
    assert "app2" in result["msg"] and "DOWN" in result["msg"]
    assert result["backend_servers"] == {"app1": "UP", "app2": "DOWN"}
    assert lab.runtime_colour() == "blue"
    assert lab.file_colour() == "blue"
    assert colours_served(lab) == {"blue"}

    # it comes back while the module waits: the switch goes ahead
    timer = threading.Timer(0.5, lambda: setattr(lab.apps[("green", "app2")], "ready", True))
    timer.start()
    try:
        result = ansible(collections_dir, "haproxy_switch", switch_args(lab, "green", wait_timeout=20))
    finally:
        timer.cancel()
    assert result["changed"] is True
    assert colours_served(lab) == {"green"}


def test_check_mode_and_info(haproxy_lab: HAProxyLab, collections_dir: Path) -> None:
    lab = haproxy_lab
    result = ansible(collections_dir, "haproxy_switch", switch_args(lab, "green"), "--check", "--diff")
    assert result["changed"] is True
    assert result["diff"]["after"] == "production: green\n"
    assert not [c for c in result["commands"] if c.startswith(("set ", "add ", "del "))]
    assert lab.runtime_colour() == "blue" and lab.file_colour() == "blue"
    assert colours_served(lab) == {"blue"}

    info = ansible(collections_dir, "haproxy_switch_info", {"admin_socket": lab.socket, "map_file": lab.map_file})
    assert info["changed"] is False
    assert info["colours"] == {"production": "blue", "staging": "green"}
    assert info["in_sync"] is True
    assert info["backends"]["production"]["green"] == {
        "backend": "production_green", "servers": {"app1": "UP", "app2": "UP"}, "all_up": True,
    }


def test_bad_input_and_unknown_map_fail_clearly(haproxy_lab: HAProxyLab, collections_dir: Path) -> None:
    lab = haproxy_lab
    result = ansible(collections_dir, "haproxy_switch", switch_args(lab, "purple"))
    assert result["failed"] is True and "allowed_colours" in result["msg"]
    result = ansible(collections_dir, "haproxy_switch", {**switch_args(lab, "green"), "map_file": f"{lab.dir}/other.map"})
    assert result["failed"] is True
    assert "Unknown map identifier" in result["msg"]
    assert result["command"] == f"show map {lab.dir}/other.map"
    assert lab.runtime_colour() == "blue"


def test_runtime_only_switch_is_lost_on_reload(haproxy_lab: HAProxyLab, collections_dir: Path) -> None:
    """Why persist defaults to true: without it, a reload routes by the file again."""
    lab = haproxy_lab
    result = ansible(collections_dir, "haproxy_switch", switch_args(lab, "green", persist=False))
    assert result["changed"] is True and result["persisted"] is False
    assert colours_served(lab) == {"green"}
    lab.reload()
    assert colours_served(lab) == {"blue"}
