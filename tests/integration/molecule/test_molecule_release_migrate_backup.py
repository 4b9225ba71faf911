"""The release, migrate and backup molecule scenarios pass `molecule test` (converge, idempotence, verify), each on
free ports; what they leave behind is checked from outside, then broken on purpose to prove that their verify fails on
it; destroy stops every process they started and removes their state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest
import yaml

from molecule_runner import REPO, SCENARIOS, Scenario
from loopback_ports import free_port
from test_molecule_scenarios import SEQUENCE, assert_destroy_removes_state, get, poll

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
MINISIGN = shutil.which("minisign") or "/usr/bin/minisign"


def run_test_keeping_state(scenario: Scenario) -> str:
    """`molecule test` without its final destroy; every action passed. Returns the run's output; prints its time."""
    started = time.monotonic()
    run = scenario.molecule("test", "--destroy", "never")
    print(f"molecule test -s {scenario.name}: {time.monotonic() - started:.1f} s", file=sys.stderr)
    assert run.rc == 0, run.output[-6000:]
    for action in SEQUENCE:
        assert run.action_result(scenario.name, action) == "Executed: Successful", (action, run.output[-6000:])
    assert scenario.state.is_dir()
    return run.output


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def assert_exits(pid: int, what: str) -> None:
    """The process is gone, or going: pg_ctl stop returns once the pid file is removed, the process exits just after."""
    poll(lambda: not alive(pid), f"{what} (pid {pid}) to exit")


def pid_in(path: Path) -> int:
    return int(path.read_text().split()[0])


def psql(port: int, password: str, database: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database,
                           "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql], env=dict(os.environ, PGPASSWORD=password),
                          capture_output=True, text=True, check=False, timeout=60)


def needs_postgres() -> None:
    if not os.access(PG_BIN / "postgres", os.X_OK):
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    if os.geteuid() == 0 and subprocess.run(["id", "-u", "postgres"], capture_output=True, check=False).returncode != 0:
        pytest.skip("running as root without a postgres user to run the server as")


def test_release_scenario_installs_a_running_colour_and_verify_catches_a_changed_file(scenario: t.Callable[[str], Scenario]) -> None:
    if not os.access(MINISIGN, os.X_OK):
        pytest.skip("minisign is not installed")
    release = scenario("release")
    blue = free_port()
    release.env.update(PAYMENTS_MOLECULE_RELEASE_PORT=str(free_port()), PAYMENTS_MOLECULE_RELEASE_BLUE_PORT=str(blue),
                       PAYMENTS_MOLECULE_RELEASE_GREEN_PORT=str(free_port()), PAYMENTS_MOLECULE_MINISIGN=MINISIGN)
    output = run_test_keeping_state(release)
    inventory = yaml.safe_load((SCENARIOS / "release" / "inventory" / "hosts.yml").read_text())["all"]["vars"]
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "ENCRYPTION_KEY", "DATABASE_URL"):
        assert inventory["payments_env"][name] not in output, f"{name} appears in molecule's output"

    root = release.state / "hosts" / "app1"
    installed = root / "opt" / "payments" / "releases" / inventory["release_version"]
    # the colour still runs the installed release, from the colour's link, under the scenario's supervisord
    status, body = get(blue)
    assert status == 200 and json.loads(body)["version"] == inventory["release_version"]
    assert (root / "opt" / "payments" / "colours" / "blue").resolve() == installed
    supervisord, server = pid_in(root / "run" / "supervisord.pid"), pid_in(release.state / "artifact-server.pid")
    assert alive(supervisord) and alive(server)

    changed = installed / "gunicorn.conf.py"
    with changed.open("a") as handle:
        handle.write("import os  # changed after the install\n")
    broken = release.molecule("verify")
    assert broken.rc != 0
    assert "gunicorn.conf.py: FAILED" in broken.output, broken.output[-6000:]

    assert_destroy_removes_state(release)
    assert_exits(supervisord, "supervisord")
    assert_exits(server, "the artifact server")


def test_migrate_scenario_applies_the_plan_once_and_verify_catches_a_missing_index(scenario: t.Callable[[str], Scenario]) -> None:
    needs_postgres()
    migrate = scenario("migrate")
    port = free_port()
    migrate.env.update(PAYMENTS_MOLECULE_MIGRATE_PG_PORT=str(port), PAYMENTS_MOLECULE_PG_BIN=str(PG_BIN))
    run_test_keeping_state(migrate)
    password = (migrate.state / "postgres" / "superuser.pw").read_text().strip()
    plan = yaml.safe_load((REPO / "lab" / "payment_service" / "migrations" / "plan.yml").read_text())
    names = [change["name"] for change in plan["changes"]]
    registry = psql(port, password, "payments", "SELECT name FROM payments_deploy.changes ORDER BY name")
    assert registry.stdout.split() == sorted(names)  # converge, idempotence and verify ran the role: each change once
    reported = json.loads((migrate.state / "reported-head.json").read_text())
    assert reported["head"] == names[-1]

    dropped = psql(port, password, "payments", "DROP INDEX payments_created_at_idx")
    assert dropped.returncode == 0, dropped.stderr
    broken = migrate.molecule("verify")
    assert broken.rc != 0
    assert "missing or invalid indexes ['payments_created_at_idx']" in " ".join(broken.output.split()), broken.output[-6000:]

    postmaster = pid_in(migrate.state / "postgres" / "data" / "postmaster.pid")
    assert_destroy_removes_state(migrate)
    assert_exits(postmaster, "PostgreSQL")


def test_backup_scenario_backs_up_once_and_verify_catches_a_changed_backup(scenario: t.Callable[[str], Scenario]) -> None:
    needs_postgres()
    backup = scenario("backup")
    port = free_port()
    backup.env.update(PAYMENTS_MOLECULE_BACKUP_PG_PORT=str(port), PAYMENTS_MOLECULE_PG_BIN=str(PG_BIN))
    output = run_test_keeping_state(backup)
    key = (backup.state / "backup.key").read_text().strip()
    assert len(key) == 64 and key not in output
    # the idempotence step skipped the backup (a new one per run, by design): converge made the only one
    manifests = sorted((backup.state / "backups").glob("shop-*.manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    password = (backup.state / "postgres" / "superuser.pw").read_text().strip()
    # verify dropped the database it restored into, and the source still holds what the manifest counted
    databases = psql(port, password, "postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'shop%' ORDER BY 1")
    assert databases.stdout.split() == ["shop"]
    for table, rows in manifest["row_counts"].items():
        assert psql(port, password, "shop", f"SELECT count(*) FROM {table}").stdout.strip() == str(rows)

    stored = backup.state / "backups" / manifest["object"]
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    broken = backup.molecule("verify")
    assert broken.rc != 0
    assert f"sha256 {manifest['sha256']} (sha256sum: " in " ".join(broken.output.split()), broken.output[-6000:]

    postmaster = pid_in(backup.state / "postgres" / "data" / "postmaster.pid")
    assert_destroy_removes_state(backup)
    assert_exits(postmaster, "PostgreSQL")
