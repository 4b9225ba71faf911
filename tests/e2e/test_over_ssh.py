"""The lab's hosts over SSH (inventories/lab-ssh): an unprivileged deploy user with a key, become through sudo and
host key checking on. A deploy and its rollback under load, and the two ways a real host fails before
anything changes: unreachable, and no sudo."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, run_playbook
from helpers import journal, lab_program, live, lock_file, map_colour, other_release
from loadgen import LoadGenerator, summarize
from test_blue_green import assert_zero_downtime

pytestmark = [pytest.mark.timeout(1800),
              pytest.mark.skipif(os.geteuid() != 0, reason="the SSH lab starts sshd and a sudo user: it needs root")]
SSH_INVENTORY = REPO / "inventories" / "lab-ssh"
SUDOERS = Path("/etc/sudoers.d/payments-lab-deploy")
SSH_HOSTS = ("lb1", "app1", "app2", "stg1", "db1")


@pytest.fixture(scope="module")
def ssh_lab(lab) -> dict:
    """The lab with its SSH hosts (`labctl up --ssh` when they are not there yet)."""
    labctl = [str(REPO / "lab" / "labctl")]
    if "ssh_inventory" not in lab or lab["programs"].get("sshd-app1") != "RUNNING":
        subprocess.run([*labctl, "up", "--ssh"], check=True, capture_output=True, timeout=300)
    status = json.loads(subprocess.run([*labctl, "status", "--json"], capture_output=True, text=True,
                                       check=True).stdout)
    return {**lab, **{key: status[key] for key in ("ssh_inventory", "ssh_user", "ssh_private_key", "ssh_known_hosts")}}


@pytest.fixture
def fresh_connections(tmp_path) -> dict:
    """A control path directory of its own: no SSH master connection of an earlier run is reused, so a stopped sshd
    or a changed key is really met."""
    return {"ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp")}


def under_load(lab: dict, action):
    """Run action() while persistent connections send requests through the production frontend. A run over SSH on a
    busy machine can take minutes: the generator's own bounds (15 minutes, a million requests) only stop a runaway."""
    gen = LoadGenerator(lab["production_url"] + "/version", concurrency=4, duration=900, max_requests=1_000_000,
                        pause=0.01)
    with gen:
        result = action()
    samples = gen.stop()
    print(summarize(samples))
    return result, samples


def over_ssh(playbook: str, *args: str, env: dict | None = None):
    return run_playbook(playbook, *args, inventory=SSH_INVENTORY, env=env)


def adhoc(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / ".venv" / "bin" / "ansible"), "-i", str(SSH_INVENTORY), *args], cwd=REPO,
                          env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), **(env or {})},
                          capture_output=True, text=True, timeout=300, check=False)


def accepted_logins(lab: dict) -> dict[str, int]:
    """Public key logins of the deploy user, per host, from each host's sshd log."""
    logs = Path(lab["state_dir"]) / "var" / "log" / "supervisor"
    return {host: (logs / f"sshd-{host}.log").read_text(errors="replace").count(f"Accepted publickey for {lab['ssh_user']}")
            for host in SSH_HOSTS}


def test_hosts_are_ssh_targets_that_become_root(ssh_lab, fresh_connections):
    before = accepted_logins(ssh_lab)
    become = adhoc("ssh_targets", "-m", "ansible.builtin.command", "-a", "id -un", env=fresh_connections)
    assert become.returncode == 0, become.stdout + become.stderr
    assert become.stdout.count("CHANGED | rc=0 >>\nroot") == len(SSH_HOSTS), become.stdout
    # Without become: the login user itself (raw: the lab's interpreter is not the deploy user's to run).
    plain = adhoc("ssh_targets", "-m", "ansible.builtin.raw", "-a", "id -un", "-e", "ansible_become=false",
                  env=fresh_connections)
    assert plain.stdout.count(f"CHANGED | rc=0 >>\n{ssh_lab['ssh_user']}") == len(SSH_HOSTS), plain.stdout
    after = accepted_logins(ssh_lab)
    assert all(after[host] > before[host] for host in SSH_HOSTS), (before, after)


def test_a_host_showing_another_key_is_refused(ssh_lab, fresh_connections, tmp_path):
    """Host key checking stays on: app1 presenting a key that known_hosts does not hold for it is not connected to."""
    lines = Path(ssh_lab["ssh_known_hosts"]).read_text().splitlines()
    lb1_key = next(line for line in lines if line.startswith("[127.0.0.1]:28301 ")).split(" ", 1)[1]
    tampered = tmp_path / "known_hosts"
    tampered.write_text("\n".join(f"[127.0.0.1]:28302 {lb1_key}" if line.startswith("[127.0.0.1]:28302 ") else line
                                  for line in lines) + "\n")
    done = adhoc("app1", "-m", "ansible.builtin.ping", "-e",
                 f"ansible_ssh_common_args='-o UserKnownHostsFile={tampered} -o StrictHostKeyChecking=yes "
                 "-o IdentitiesOnly=yes -o BatchMode=yes'", env=fresh_connections)
    assert done.returncode != 0
    assert "UNREACHABLE" in done.stdout and "Host key verification failed" in done.stdout + done.stderr, done.stdout


@pytest.mark.extended
def test_deploy_and_rollback_over_ssh(ssh_lab, fresh_connections):
    logins = accepted_logins(ssh_lab)
    [old] = live(ssh_lab["production_url"])[0]
    new = other_release(old)
    run, samples = under_load(ssh_lab, lambda: over_ssh("deploy.yml", "-e", f"release_version={new}", env=fresh_connections))
    assert run.rc == 0
    record = journal(ssh_lab, "deploy")
    assert (record["release_from"], record["release_to"]) == (old, new)
    assert_zero_downtime(samples, float(record["switched_at"]), old, new)
    # What become wrote as root on the app hosts: the colour's env file, readable by the service's group only.
    for host in ("app1", "app2"):
        env_file = Path(ssh_lab["state_dir"]) / "hosts" / host / "etc" / "payments" / f"payment-service-{record['colour_to']}.env"
        info = env_file.stat()
        assert (info.st_uid, oct(info.st_mode & 0o777)) == (0, "0o640"), env_file

    run, samples = under_load(ssh_lab, lambda: over_ssh("rollback.yml", env=fresh_connections))
    assert run.rc == 0
    rollback = journal(ssh_lab, "rollback")
    assert rollback["colour_to"] == record["colour_from"] == map_colour(ssh_lab["haproxy_map_file"])
    assert_zero_downtime(samples, float(rollback["switched_at"]), new, old)
    assert live(ssh_lab["production_url"])[0] == {old}
    # Every host the runs changed was reached over SSH (new connections: a control path of their own), not locally.
    after = accepted_logins(ssh_lab)
    assert all(after[host] > logins[host] for host in ("lb1", "app1", "app2", "db1")), (logins, after)


def assert_nothing_changed(lab: dict, run, colour: str, last_deploy: dict) -> None:
    assert run.rc != 0
    assert "Nothing was changed (no lock taken, traffic untouched)" in run.text
    assert map_colour(lab["haproxy_map_file"]) == colour
    assert not lock_file(lab).exists(), "the failed run left the deploy lock behind"
    assert journal(lab, "deploy") == last_deploy


def test_an_unreachable_host_stops_the_deploy_before_anything_changes(ssh_lab, fresh_connections):
    colour, last_deploy = map_colour(ssh_lab["haproxy_map_file"]), journal(ssh_lab, "deploy")
    lab_program(ssh_lab, "stop", "sshd-app2")
    try:
        run = over_ssh("deploy.yml", "-e", "release_version=1.0.0", env=fresh_connections)
    finally:
        lab_program(ssh_lab, "start", "sshd-app2")
    assert_nothing_changed(ssh_lab, run, colour, last_deploy)
    assert "app2 is unreachable" in run.text and "port 28303: Connection refused" in run.text


def test_a_user_without_sudo_stops_the_deploy_before_anything_changes(ssh_lab, fresh_connections, tmp_path):
    colour, last_deploy = map_colour(ssh_lab["haproxy_map_file"]), journal(ssh_lab, "deploy")
    kept = tmp_path / "sudoers"
    shutil.move(SUDOERS, kept)
    try:
        run = over_ssh("deploy.yml", "-e", "release_version=1.0.0", env=fresh_connections)
    finally:
        shutil.move(kept, SUDOERS)
    assert_nothing_changed(ssh_lab, run, colour, last_deploy)
    for host in ("lb1", "app1", "app2", "db1"):
        assert f"{host} is not usable: Missing sudo password" in run.text


@pytest.mark.extended
def test_a_host_missing_a_library_stops_the_deploy_before_anything_changes(ssh_lab, fresh_connections):
    """The hosts' own Debian interpreter, which has no psycopg or stripe: named per host, with the Debian package."""
    colour, last_deploy = map_colour(ssh_lab["haproxy_map_file"]), journal(ssh_lab, "deploy")
    run = over_ssh("deploy.yml", "-e", "release_version=1.0.0", "-e", "ansible_python_interpreter=/usr/bin/python3",
                   env=fresh_connections)
    assert run.rc != 0
    assert map_colour(ssh_lab["haproxy_map_file"]) == colour and journal(ssh_lab, "deploy") == last_deploy
    assert not lock_file(ssh_lab).exists()
    assert "psycopg" in run.text and "python3-psycopg" in run.text and "db_migrate" in run.text
    assert "stripe" in run.text and "payments.deploy.host_dependencies" in run.text
