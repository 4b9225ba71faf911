"""deploy.yml and rollback.yml with --check --diff on a lab that has a deploy: both run to the end, change nothing on any
host (HAProxy's map, the journal and the lock, the release trees, env files and supervisor programs, the database's
migrations, Stripe's webhook endpoints) and say what a real run would change. The playbooks' tags work on their own."""
from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from helpers import map_colour, other_release, query

pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[2]
# What a run may change on a lab host: the journal and lock, the release trees, env files, supervisor programs, the map.
HOST_TREES = ("var/lib/payments", "opt/payments", "etc/payments", "etc/supervisor", "etc/haproxy")


def tree_state(root: Path) -> dict[str, str]:
    """Every file, link and directory under root: content hash, link target, mode."""
    state = {}
    for path in sorted(root.rglob("*")) if root.exists() else []:
        # The run reports are the controller's record of each run (a check run's too), kept beside the journal.
        parts = path.relative_to(root).parts
        if "__pycache__" in parts or parts[:2] == ("journal", "reports"):
            continue
        name = str(path.relative_to(root))
        if path.is_symlink():
            state[name] = "-> " + os.readlink(path)
        elif path.is_file():
            state[name] = f"{path.stat().st_mode:o} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        else:
            state[name] = f"{path.stat().st_mode:o} dir"
    return state


def runtime_map(admin_socket: str, map_file: str) -> str:
    """The colour map HAProxy serves (its runtime API), which the map file on disk only persists."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(admin_socket)
        sock.sendall(f"show map {map_file}\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return " ".join(sorted(" ".join(line.split()[1:]) for line in answer.decode().splitlines() if line.strip()))


def programs(conf: Path) -> list[str]:
    """Each supervisor program of an app host with its state and pid (a restart changes the pid)."""
    out = subprocess.run([str(REPO / ".venv" / "bin" / "supervisorctl"), "-c", str(conf), "status"], capture_output=True,
                         text=True, check=False, timeout=60).stdout
    return sorted(" ".join(line.split()[:4]).rstrip(",") for line in out.splitlines() if line.strip())


def webhook_endpoints(lab: dict) -> list[tuple]:
    import stripe  # pylint: disable=import-outside-toplevel

    client = stripe.StripeClient(lab["secrets"]["stripe_live_key"], base_addresses={"api": lab["stripe_api"]})
    return sorted((e.id, e.url, tuple(sorted(e.enabled_events)), e.status) for e in client.v1.webhook_endpoints.list().data)


def snapshot(lab: dict) -> dict:
    """Everything a deploy or a rollback changes on the lab."""
    state_dir = Path(lab["state_dir"])
    hosts = sorted(path.name for path in (state_dir / "hosts").iterdir())
    return {
        "files": {f"{host}/{tree}": tree_state(state_dir / "hosts" / host / tree) for host in hosts for tree in HOST_TREES},
        "scrape targets": tree_state(state_dir / "monitoring" / "prometheus" / "targets"),
        "runtime maps": {name: runtime_map(lb["admin_socket"], lb["map_file"]) for name, lb in lab["load_balancers"].items()},
        "programs": {host: programs(state_dir / "hosts" / host / "etc" / "supervisor" / "supervisord.conf")
                     for host in lab["app_hosts"]},
        "migrations": query(lab, "SELECT * FROM payments_deploy.changes ORDER BY 1"),
        "columns": query(lab, "SELECT table_name, column_name, data_type FROM information_schema.columns "
                              "WHERE table_schema = 'public' ORDER BY 1, 2"),
        "webhook endpoints": webhook_endpoints(lab),
        "lab state": sorted(path.name for path in state_dir.iterdir()),  # e.g. no scratch cluster of a drill
    }


def test_check_mode_deploy_and_rollback_change_nothing(lab, playbook, deployed):
    before = snapshot(lab)
    live_colour = map_colour(lab["haproxy_map_file"])
    target = other_release(deployed)

    deploy = playbook("deploy.yml", "--check", "--diff", "-e", f"release_version={target}")
    assert deploy.rc == 0
    assert snapshot(lab) == before
    idle = "green" if live_colour == "blue" else "blue"
    assert f"Check mode: production would be switched from {live_colour} to {idle} (release {target})" in deploy.text
    assert f"release {target} goes to {idle}" in deploy.text
    assert "Check mode: the smoke test of production" in deploy.text and "no backup is taken" in deploy.text
    assert f"--- before: {lab['haproxy_map_file']}" in deploy.output  # the map's diff
    assert deploy.changed > 0  # what a real run would change is reported as changed
    # no module that makes a payment or flips traffic ran for real
    ran = {event["event_data"].get("task_action") for event in deploy.events if event.get("event") == "runner_on_ok"}
    assert "payments.deploy.smoke_test" not in ran and "payments.deploy.pg_backup" not in ran

    rollback = playbook("rollback.yml", "--check", "--diff")
    assert rollback.rc == 0
    assert snapshot(lab) == before
    assert f"production: would switch back from {live_colour} ({deployed}) to" in rollback.text
    assert "Check mode: traffic was not moved" in rollback.text


@pytest.mark.extended
def test_tags_are_listed_and_a_tagged_run_plans_first(lab, playbook, deployed):
    listed = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), str(REPO / "playbooks" / "deploy.yml"),
                             "--list-tags", "--list-tasks", "-e", "release_version=1.1.0"],
                            capture_output=True, text=True, check=False, env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")})
    assert listed.returncode == 0, listed.stderr
    tags = {tag.strip() for found in re.findall(r"TASK TAGS: \[([^\]]*)\]", listed.stdout) for tag in found.split(",")}
    assert {"preflight", "always", "config", "release", "backup", "migrate", "smoke", "switch"} <= tags

    before = snapshot(lab)
    run = playbook("deploy.yml", "--tags", "switch", "--check", "-e", f"release_version={other_release(deployed)}")
    assert run.rc == 0
    assert snapshot(lab) == before
    assert "Show the plan" in run.output and "Check mode: production would be switched" in run.text
    assert "TASK [Apply the release's migrations]" not in run.output and "TASK [Smoke-test every app host" not in run.output

    refused = playbook("deploy.yml", "--tags", "switch", "-e", f"release_version={other_release(deployed)}")
    assert refused.rc != 0
    assert "The switch phase needs the migrate, release and smoke phases of the same run" in refused.text
    assert "The deploy lock of production was released" in refused.text
    assert snapshot(lab)["runtime maps"] == before["runtime maps"]
    assert not (Path(lab["state_dir"]) / "hosts" / "lb1" / "var" / "lib" / "payments" / "journal" / "production" / "deploy.lock").exists()


# Every other playbook the lab can run: (playbook, extra arguments, what its check run must say). The lab's HAProxy
# configuration is labctl's, not the role's, so loadbalancer.yml finds a change to make: it must say so and make none.
# restore.yml runs with --tags restore, which plans and locks all the same (every play is tagged restore or always).
# dr_drill.yml and host_dependencies.yml run in check mode in their integration suites (tests/integration/dr_drill,
# tests/integration/host_dependencies): nothing journalled, no scratch cluster, nothing installed. webhooks.yml is
# the deploy's own "Configure Stripe webhooks" play (import_playbook), checked by the deploy's check run above.
OTHER_PLAYBOOKS = [
    ("backup.yml", [], "Check mode: database payments would be dumped"),
    ("restore.yml", ["--tags", "restore"], "Check mode: payments would be restored from"),  # plans and locks first all the same
    ("migrate.yml", ["-e", "release_version={deployed}"], "ok="),
    ("monitoring.yml", [], "ok="),
    ("smoke_test.yml", [], "ok="),
    ("unlock.yml", ["-e", "deploy_environment=production", "-e", "reason=check mode rehearsal"], "ok="),
    ("promote.yml", ["-e", "release_version={other}"], "Check mode: production would be switched"),
    ("loadbalancer.yml", [], "check mode: would reload HAProxy"),
    ("maintenance_daily.yml", ["-e", "maintenance_refund_rate_target=100"], "ok="),  # every lab smoke payment is refunded
    ("maintenance_weekly.yml", [], "ok="),
]


@pytest.mark.parametrize("name, arguments, says", OTHER_PLAYBOOKS,
                         ids=[entry[0] + ("-tagged" if "--tags" in entry[1] else "") for entry in OTHER_PLAYBOOKS])
@pytest.mark.extended
def test_every_other_playbook_runs_under_check_diff_and_changes_nothing(lab, playbook, deployed, name, arguments, says):
    before = snapshot(lab)
    run = playbook(name, "--check", "--diff", *[a.format(deployed=deployed, other=other_release(deployed)) for a in arguments])
    assert run.rc == 0, run.text[-3000:]
    assert says in run.text
    assert snapshot(lab) == before
