"""The safety nets of a deploy: a live colour is never restarted. (A failed verification flips traffic back:
test_load_balancers.py, on two load balancers, and the fault suite's new-colour-dies.)"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from helpers import live, map_colour, versions_or_nothing

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def on_1_1_0(lab, playbook):
    if versions_or_nothing(lab["production_url"]) != {"1.1.0"}:
        assert playbook("deploy.yml", "-e", "release_version=1.1.0").rc == 0
    return map_colour(lab["haproxy_map_file"])


def supervisor_pid(lab, host: str, colour: str) -> str:
    config = f"{lab['state_dir']}/hosts/{host}/etc/supervisor/supervisord.conf"
    done = subprocess.run([str(REPO / ".venv" / "bin" / "supervisorctl"), "-c", config, "pid",
                           f"payment-service-{colour}"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def inventory_with_new_env(lab, tmp_path):
    """The lab inventory with one more environment variable for the service."""
    copy = tmp_path / "inventory"
    shutil.copytree(Path(lab["inventory"]).parent, copy)
    payments = copy / "group_vars" / "all" / "payments.yml"
    data = yaml.safe_load(payments.read_text())
    data["payments_env"]["FEATURE_FLAGS"] = "faster-refunds"
    payments.write_text(yaml.safe_dump(data))
    return copy / "hosts.yml"


@pytest.mark.extended
def test_change_to_live_colour_is_refused_then_rolled_through_idle(lab, playbook, on_1_1_0, inventory_with_new_env):
    pids = {host: supervisor_pid(lab, host, on_1_1_0) for host in ("app1", "app2")}
    env = {"PAYMENTS_LAB_DIR": lab["state_dir"]}
    run = playbook("deploy.yml", "-e", "release_version=1.1.0", inventory=inventory_with_new_env, env=env)
    assert run.rc != 0
    assert f"The {on_1_1_0} colour serves live traffic and already runs 1.1.0, but its environment would change" \
        in run.text
    assert {host: supervisor_pid(lab, host, on_1_1_0) for host in ("app1", "app2")} == pids, "live colour restarted"
    assert map_colour(lab["haproxy_map_file"]) == on_1_1_0

    forced = playbook("deploy.yml", "-e", "release_version=1.1.0", "-e", "deploy_force_idle=true",
                      inventory=inventory_with_new_env, env=env)
    assert forced.rc == 0
    assert map_colour(lab["haproxy_map_file"]) != on_1_1_0
    assert live(lab["production_url"])[0] == {"1.1.0"}
    # Back to the lab's own environment, the same way.
    assert playbook("deploy.yml", "-e", "release_version=1.1.0", "-e", "deploy_force_idle=true").rc == 0
