"""The maintenance role's systemd timers, rendered by its own timers entry point on localhost into a temporary directory:
daily, weekly and a monthly drill each get a service and a timer that `systemd-analyze verify` passes without a word;
a second run changes nothing; a malformed OnCalendar, a bad unit name or a bad delay is refused before any unit is
written."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from host_python import HOST_PYTHON

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK_PROGRAM = str(Path(sys.executable).parent / "ansible-playbook")
PLAY = """- name: Render the maintenance timers
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Render the units
      ansible.builtin.include_role:
        name: payments.deploy.maintenance
        tasks_from: timers
"""
SCHEDULES = [
    {"name": "payments-maintenance-daily", "playbook": "payments.deploy.maintenance_daily", "on_calendar": "*-*-* 06:00:00"},
    {"name": "payments-maintenance-weekly", "playbook": "payments.deploy.maintenance_weekly", "on_calendar": "Mon *-*-* 07:00:00"},
    {"name": "payments-dr-drill", "playbook": "payments.deploy.dr_drill", "on_calendar": "monthly",
     "extra_args": ["-e", "dr_drill_environment=staging"]},
]


@pytest.fixture(scope="module")
def collections_dir():
    directory = Path(tempfile.mkdtemp(prefix="maintenance-units-collections-"))
    (directory / "ansible_collections" / "payments").mkdir(parents=True)
    (directory / "ansible_collections" / "payments" / "deploy").symlink_to(REPO)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def render(collections_dir: Path, workdir: Path, **variables) -> subprocess.CompletedProcess:
    """Runs the timers entry point with these variables (as extra vars) and returns the finished ansible-playbook."""
    playbook = workdir / "timers.yml"
    playbook.write_text(PLAY)
    extra = workdir / "vars.json"
    extra.write_text(json.dumps(variables))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_COLLECTIONS_PATH": str(collections_dir), "ANSIBLE_LOCALHOST_WARNING": "0",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    return subprocess.run([PLAYBOOK_PROGRAM, "-i", "localhost,", "-c", "local", "-e", f"@{extra}",
                           "-e", f"ansible_python_interpreter={HOST_PYTHON}", str(playbook)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)


def recap_counts(output: str) -> dict[str, int]:
    found = re.search(r"^localhost\s+: (ok=.*)$", output, re.MULTILINE)
    assert found, output
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", found.group(1))}


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # keep the keys' case
    parser.read_string(path.read_text())
    return parser


@pytest.fixture(scope="module")
def rendered(collections_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("maintenance-units")
    units = workdir / "system"
    options = {"maintenance_schedules": SCHEDULES, "maintenance_timer_dir": str(units),
               "maintenance_ansible_playbook": PLAYBOOK_PROGRAM, "maintenance_inventory": "/etc/payments/inventory.yml",
               "maintenance_working_dir": str(workdir), "maintenance_randomized_delay": "10min"}
    first = render(collections_dir, workdir, **options)
    second = render(collections_dir, workdir, **options)
    return units, first, second


def test_every_schedule_gets_a_service_and_a_timer(rendered):
    units, first, _second = rendered
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(p.name for p in units.iterdir()) == sorted(
        f"{s['name']}.{kind}" for s in SCHEDULES for kind in ("service", "timer"))
    for schedule in SCHEDULES:
        timer = unit(units / f"{schedule['name']}.timer")["Timer"]
        assert timer["OnCalendar"] == schedule["on_calendar"]
        assert timer["Persistent"] == "true" and timer["RandomizedDelaySec"] == "10min"
        assert timer["Unit"] == f"{schedule['name']}.service"
        service = unit(units / f"{schedule['name']}.service")["Service"]
        assert service["Type"] == "oneshot"
        assert service["ExecStart"].split() == [PLAYBOOK_PROGRAM, "-i", "/etc/payments/inventory.yml",
                                                schedule["playbook"], *schedule.get("extra_args", [])]


def test_units_pass_systemd_analyze_verify_without_a_word(rendered):
    units, first, _second = rendered
    assert first.returncode == 0, first.stdout + first.stderr
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: Debian's systemd package provides it")
    for timer in sorted(units.glob("*.timer")):
        done = subprocess.run([analyze, "verify", str(timer), str(timer.with_suffix(".service"))], capture_output=True,
                              text=True, timeout=60, check=False, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
        assert done.returncode == 0 and done.stdout + done.stderr == "", f"{timer.name}: {done.stdout}{done.stderr}"


def test_a_second_run_changes_nothing(rendered):
    _units, first, second = rendered
    assert recap_counts(first.stdout)["changed"] > 0
    assert second.returncode == 0 and recap_counts(second.stdout)["changed"] == 0, second.stdout


@pytest.mark.parametrize(("schedule", "delay", "expected"), [
    ({"name": "payments-dr-drill", "playbook": "payments.deploy.dr_drill", "on_calendar": "*-*-32 25:00"}, "15min",
     "OnCalendar \"*-*-32 25:00\" of payments-dr-drill is refused by systemd"),
    ({"name": "payments-dr-drill", "playbook": "payments.deploy.dr_drill", "on_calendar": "monthly; rm -rf /"}, "15min",
     "on_calendar monthly; rm -rf / is not a calendar expression"),
    ({"name": "../evil", "playbook": "payments.deploy.dr_drill", "on_calendar": "monthly"}, "15min",
     "name ../evil is not a plain unit name"),
    ({"name": "payments-dr-drill", "playbook": "payments.deploy.dr_drill", "on_calendar": "monthly"}, "soon",
     "maintenance_randomized_delay soon is not a time span"),
])
def test_bad_schedules_are_refused_before_any_unit_is_written(collections_dir, tmp_path, schedule, delay, expected):
    units = tmp_path / "system"
    done = render(collections_dir, tmp_path, maintenance_schedules=[schedule], maintenance_timer_dir=str(units),
                  maintenance_randomized_delay=delay, maintenance_working_dir=str(tmp_path))
    assert done.returncode != 0
    assert expected in " ".join(done.stdout.split()), done.stdout
    assert "no unit was written" in " ".join(done.stdout.split())
    assert not units.exists()
