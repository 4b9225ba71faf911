"""Runs the roles with the real ansible-playbook on localhost (as root: the modules drop to the cluster's OS user)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

from pgbackrest_world import PG_BIN, Cluster
from host_python import HOST_PYTHON

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


def role_vars(cluster: Cluster, cipher_pass: str) -> dict[str, t.Any]:
    """The payments.deploy.pgbackrest variables of an inventory, pointing into the test's directory."""
    etc = cluster.base / "etc"
    return {"pgbackrest_install": False, "pgbackrest_cipher_pass": cipher_pass, "pgbackrest_config_path": str(etc / "pgbackrest.conf"),
            "pgbackrest_config_include_path": str(etc / "conf.d"), "pgbackrest_pg_path": str(cluster.data), "pgbackrest_pg_port": cluster.port,
            "pgbackrest_pg_socket_path": str(cluster.base), "pgbackrest_pg_bin_dir": str(PG_BIN),
            "pgbackrest_restart_command": cluster.restart_command(), "pgbackrest_repo_path": str(cluster.base / "role-repo"),
            "pgbackrest_log_path": str(cluster.base / "log"), "pgbackrest_lock_path": str(cluster.base / "lock"),
            "pgbackrest_spool_path": str(cluster.base / "spool"), "pgbackrest_stanza": "payments"}


def play(tasks: list[dict[str, t.Any]], variables: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    return [{"name": "pgbackrest roles", "hosts": "localhost", "gather_facts": False, "vars": variables, "tasks": tasks}]


def run_playbook(collections_dir: Path, workdir: Path, playbook: list[dict[str, t.Any]], verbosity: str = "") -> tuple[int, dict[str, t.Any], str]:
    """Exit status, the json callback's report and the raw output of one run."""
    path = workdir / "play.yml"
    path.write_text(json.dumps(playbook), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PG"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_dir), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_NOCOLOR="1", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    argv = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={HOST_PYTHON}", str(path)]
    if verbosity:
        argv.append(verbosity)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600, env=env, cwd=workdir)
    try:
        report = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError as exc:
        raise AssertionError(f"ansible-playbook printed no report ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc
    return proc.returncode, report, proc.stdout + proc.stderr


def task_results(report: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    """Each task's localhost result by task name (the last of a name wins)."""
    return {task["task"]["name"]: task["hosts"].get("localhost", {}) for task in report["plays"][0]["tasks"]}
