"""The preflight role's input checks over the corpus's bad values, all in one ansible-playbook run: every case is a
host of the inventory, and each must come out with a problem naming the variable (a clean host with none)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
import yaml

from conftest import COLLECTION_ROOT, COLLECTIONS_DIR
from corpus import CASES_DIR, HUGE

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
CASES = yaml.safe_load((CASES_DIR / "preflight.yml").read_text(encoding="utf-8"))
GOOD_ENV = {"DATABASE_URL": "postgresql://payments:x@db.example.com:5432/payments?sslmode=verify-full&sslrootcert=/ca.pem",
            "REDIS_URL": "redis://:x@127.0.0.1:6379/0", "STRIPE_SECRET_KEY": "sk_live_x",
            "STRIPE_WEBHOOK_SECRET": "whsec_x", "ENCRYPTION_KEY": "ab" * 32, "HASH_SALT": "salt",
            "PAYMENTS_API_KEY": "k", "PAYMENTS_ADMIN_KEY": "a"}
APP_HOST = {"payments_colour_ports": {"blue": 8001, "green": 8002}, "release_supervisor_config": "/x"}
PLAYBOOK = f"""
- name: Render the preflight problems of every case host
  hosts: all
  gather_facts: false
  vars_files:
    - {COLLECTION_ROOT}/roles/preflight/vars/main.yml
  tasks:
    - name: Collect the problems
      ansible.builtin.set_fact:
        case_problems: "{{{{ preflight_problems_json | from_json }}}}"
    - name: Write them
      ansible.builtin.copy:
        content: "{{{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, 'case_problems'))) | to_json }}}}"
        dest: "{{{{ result_file }}}}"
        mode: "0600"
      run_once: true
"""


def huge(value: t.Any) -> t.Any:
    return HUGE[:100_000] if value == "@HUGE@" else value  # the inventory carries it to every host: 100 kB is enough


def inventory() -> dict[str, t.Any]:
    """production_app: the clean host and one host per env case; gate_app: one clean host for the var cases, which
    deploy to the environment gate (so that the app hosts of production do not show in their problems)."""
    defaults = yaml.safe_load((COLLECTION_ROOT / "roles/preflight/defaults/main.yml").read_text(encoding="utf-8"))
    app_hosts = {"env-clean": {**APP_HOST, "payments_env": GOOD_ENV}}
    for case in CASES["env_cases"]:
        env = {k: v for k, v in GOOD_ENV.items() if k not in case.get("remove", [])}
        env.update({k: huge(v) for k, v in (case.get("env") or {}).items()})
        app_hosts[f"env-{case['id']}"] = {**APP_HOST, **(case.get("host_vars") or {}), "payments_env": env}
    var_hosts = {"var-clean": {"deploy_environment": "gate"}}
    for case in CASES["var_cases"]:
        var_hosts[f"var-{case['id']}"] = {"deploy_environment": "gate", **case["vars"]}
    return {"all": {"vars": {**defaults, "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                             "release_version": "1.0.0", "deploy_environment": "production",
                             "traffic_frontend_urls": {"production": "http://127.0.0.1:1", "gate": "http://127.0.0.1:2"}},
                    "children": {"production_app": {"hosts": app_hosts},
                                 "gate_app": {"hosts": {"gate-app": {**APP_HOST, "payments_env": GOOD_ENV}}},
                                 "var_cases": {"hosts": var_hosts}}}}


@pytest.fixture(scope="module")
def problems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    tmp = tmp_path_factory.mktemp("preflight-bad-inputs")
    (tmp / "inventory.yml").write_text(json.dumps(inventory()))  # JSON is YAML; \u2028 and the like stay escaped
    (tmp / "play.yml").write_text(PLAYBOOK)
    result_file = tmp / "problems.json"
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    run_env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_DIR), ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_FORKS="20")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp / "inventory.yml"), "--limit", "var_cases:env-clean",
                           str(tmp / "play.yml"), "-e", f"result_file={result_file}"], capture_output=True, text=True,
                          env=run_env, cwd=tmp, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    found: dict[str, list[str]] = json.loads(result_file.read_text())
    return found


def test_clean_hosts_have_no_problem(problems: dict[str, list[str]]) -> None:
    assert problems["var-clean"] == []
    assert not [p for p in problems["env-clean"] if p.startswith("env-clean:")]


@pytest.mark.parametrize("case", CASES["env_cases"], ids=lambda c: c["id"])
def test_env_case(case: dict[str, t.Any], problems: dict[str, list[str]]) -> None:
    host = f"env-{case['id']}"
    mine = [p for p in problems["env-clean"] if p.startswith(host + ":")]
    assert any(case["expect"] in p for p in mine), mine


@pytest.mark.parametrize("case", CASES["var_cases"], ids=lambda c: c["id"])
def test_var_case(case: dict[str, t.Any], problems: dict[str, list[str]]) -> None:
    mine = problems[f"var-{case['id']}"]
    assert any(case["expect"] in p for p in mine), mine
