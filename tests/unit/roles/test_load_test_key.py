"""The load_test role refuses, before anything is sent, to load production on the API key: the service's limiter is in
Redis, shared by both colours, so those requests would spend the live colour's customers' budget. A run of the role
through ansible-playbook in check mode (the module then only plans), with and without a load key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COLLECTIONS_DIR = ROOT / ".cache" / "collections"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
API_KEY = "pk_unit_" + "a" * 24
LOAD_KEY = "ldk_unit_" + "b" * 24
PLAY = """
- name: Load-test an idle colour
  hosts: loadbalancers
  gather_facts: false
  tasks:
    - name: Load it
      ansible.builtin.include_role:
        name: payments.deploy.load_test
      vars:
        load_test_colour: green
        load_test_run_id: unit-key-check
"""


def run_role(tmp_path: Path, environment: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"vars": {"load_test_environment": environment}, "children": {
        "loadbalancers": {"hosts": {"lb1": local}},
        f"{environment}_app": {"hosts": {"app1": dict(local, payments_colour_ports={"blue": 20001, "green": 20002},
                                                      payments_service_address="127.0.0.1", payments_env=env)}}}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(PLAY)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    run_env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_DIR), ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "inventory.json"), str(tmp_path / "play.yml"), "--check"],
                          capture_output=True, text=True, env=run_env, cwd=tmp_path, timeout=120, check=False)


def test_production_without_a_load_key_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    run = run_role(tmp_path, "production", {"PAYMENTS_API_KEY": API_KEY})
    assert run.returncode != 0
    assert "needs PAYMENTS_LOAD_KEY in payments_env" in run.stdout and "Nothing was sent" in run.stdout
    assert "would send" not in run.stdout  # the module never ran
    assert API_KEY not in run.stdout + run.stderr


@pytest.mark.parametrize(("environment", "env"), [
    ("production", {"PAYMENTS_API_KEY": API_KEY, "PAYMENTS_LOAD_KEY": LOAD_KEY}),
    # not in load_test_dedicated_key_environments: the API key will do (staging loads payments: a test Stripe key)
    ("staging", {"PAYMENTS_API_KEY": API_KEY, "STRIPE_SECRET_KEY": "sk_test_unit" + "c" * 24}),
])
def test_with_a_load_key_or_outside_production_the_load_test_is_planned(tmp_path: Path, environment: str, env: dict[str, str]) -> None:
    run = run_role(tmp_path, environment, env)
    assert run.returncode == 0, run.stdout[-3000:]
    assert f"Check mode: the load test of {environment} would send" in run.stdout
    shown = run.stdout + run.stderr
    assert all(value not in shown for value in env.values())
