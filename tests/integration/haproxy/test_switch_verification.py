"""The traffic_switch role's verification through a real HAProxy frontend: every app host must answer the expected
release; a host missed by the first requests (DOWN for a moment) is asked for again, a bounded number of times."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from real_haproxy import HAProxyLab
from host_python import HOST_PYTHON

PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


def verify(lab: HAProxyLab, collections_dir: Path, tmp_path: Path, extra_requests: int) -> subprocess.CompletedProcess[str]:
    """Run the role's verification of blue (release 1.1.0 on app1 and app2) with ``ansible-playbook``."""
    playbook = tmp_path / "verify.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: payments.deploy.traffic_switch\n        tasks_from: verify\n"
    )
    extra = {
        "ansible_python_interpreter": HOST_PYTHON,
        "traffic_switch_environment": "production",
        "traffic_switch_colour": "blue",
        "traffic_switch_expected_version": "1.1.0",
        "traffic_switch_expected_hosts": ["app1", "app2"],
        "traffic_lb_admin_socket": lab.socket,
        "traffic_lb_map_file": lab.map_file,
        "traffic_frontend_urls": {"production": f"http://127.0.0.1:{lab.port}"},
        "traffic_switch_verify_requests": 6,
        "traffic_switch_verify_extra_requests": extra_requests,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_dir), ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    command = [PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", json.dumps(extra), str(playbook)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=collections_dir, timeout=180, check=False)


def take_app1_out(lab: HAProxyLab) -> None:
    lab.apps[("blue", "app1")].ready = False
    lab.wait_for(lambda: lab.statuses()["production_blue/app1"] == "DOWN", "blue app1 to be DOWN")


def bring_app1_back_after_the_first_sample(lab: HAProxyLab) -> threading.Thread:
    """app1 passes its checks again once app2 alone has answered the first sample's 6 requests."""
    app2 = lab.apps[("blue", "app2")]

    def back() -> None:
        deadline = time.monotonic() + 60
        while app2.version_hits < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        lab.apps[("blue", "app1")].ready = True

    thread = threading.Thread(target=back, daemon=True)
    thread.start()
    return thread


def release(lab: HAProxyLab, version: str) -> None:
    for name in ("app1", "app2"):
        lab.apps[("blue", name)].version = version


def test_all_hosts_on_the_release_pass_at_once(haproxy_lab: HAProxyLab, collections_dir: Path, tmp_path: Path) -> None:
    release(haproxy_lab, "1.1.0")
    run = verify(haproxy_lab, collections_dir, tmp_path, extra_requests=3)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all 1.1.0 (blue) from app1, app2." in run.stdout


def test_a_host_missed_at_first_is_asked_for_again_until_it_answers(haproxy_lab: HAProxyLab, collections_dir: Path,
                                                                    tmp_path: Path) -> None:
    lab = haproxy_lab
    release(lab, "1.1.0")
    take_app1_out(lab)
    thread = bring_app1_back_after_the_first_sample(lab)
    run = verify(lab, collections_dir, tmp_path, extra_requests=20)
    thread.join(timeout=5)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "from app1, app2, after" in run.stdout and "more requests for app1-blue" in run.stdout
    assert lab.apps[("blue", "app1")].version_hits >= 1


def test_a_host_that_never_answers_fails_naming_it_and_haproxys_view(
        haproxy_lab: HAProxyLab, collections_dir: Path, tmp_path: Path) -> None:
    lab = haproxy_lab
    release(lab, "1.1.0")
    take_app1_out(lab)
    run = verify(lab, collections_dir, tmp_path, extra_requests=2)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "hosts ['app2']" in run.stdout and "up to 2 more" in run.stdout
    assert '"app1": "DOWN"' in run.stdout


def test_another_release_seen_in_the_extra_requests_fails_at_once(
        haproxy_lab: HAProxyLab, collections_dir: Path, tmp_path: Path) -> None:
    lab = haproxy_lab
    release(lab, "1.1.0")
    lab.apps[("blue", "app1")].version = "1.0.9"  # app1 still on the old release
    take_app1_out(lab)
    thread = bring_app1_back_after_the_first_sample(lab)
    run = verify(lab, collections_dir, tmp_path, extra_requests=30)
    thread.join(timeout=5)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "answered versions ['1.1.0', '1.0.9']" in run.stdout
