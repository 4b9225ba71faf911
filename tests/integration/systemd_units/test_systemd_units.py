"""The release role's systemd unit, rendered by the role's own configure tasks with release_service_manager=systemd on
a temporary root: it passes `systemd-analyze verify` without a word, carries the hardening, runs the supervisor
program's command and logs to the same file, and its env file is root's alone. A re-run changes nothing, a change to
the unit of a live colour is refused, and an unknown service manager is refused before anything is written."""

from __future__ import annotations

import configparser
import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

NAME = "payment-service"
VERSION = "1.0.0"
PORTS = {"blue": 8001, "green": 8002}
STOP_TIMEOUT = 25
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
             "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
             "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
             "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "",
             "SystemCallArchitectures": "native"}
# The interpreter that runs the service: systemd-analyze verify wants ExecStart's program to exist.
RUNTIME_BIN_DIR = str(Path(sys.executable).parent)
ME, MY_GROUP = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
# Root owns the release files on a real host; an unprivileged test run can only give them to itself.
FILES_OWNER, FILES_GROUP = ("root", "root") if os.geteuid() == 0 else (ME, MY_GROUP)


def recap(output: str) -> dict[str, dict[str, int]]:
    """Each host's PLAY RECAP counts."""
    return {host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
            for host, counts in re.findall(r"^(\S+)\s+: (ok=.*)$", output, re.MULTILINE)}


def failure(output: str, host: str) -> str:
    """The failure message of one host, white space folded (the YAML callback wraps long lines)."""
    found = re.search(rf"^fatal: \[{re.escape(host)}\]: FAILED! =>(.*?)(?=^\S)", output, re.MULTILINE | re.DOTALL)
    return " ".join(found.group(1).split()) if found else ""


def reload_decision(output: str, host: str) -> str:
    """The release_reload the configure tasks decided on for one host ('' when they did not get that far)."""
    found = re.search(rf"^ok: \[{re.escape(host)}\] =>.*?reload=(\w+)", output, re.MULTILINE | re.DOTALL)
    return found.group(1) if found else ""


class World(t.NamedTuple):
    roots: dict[str, Path]
    hosts: dict[str, dict[str, t.Any]]


def make_root(root: Path) -> Path:
    """What the install phase leaves behind: the directories and an unpacked release."""
    for directory in ("opt/payments/bin", "opt/payments/colours", f"opt/payments/releases/{VERSION}", "etc/payments",
                      "etc/systemd/system", "etc/supervisor/conf.d", "var/log/payments"):
        (root / directory).mkdir(parents=True)
    manifest = {"name": NAME, "version": VERSION, "start_command": "python3 -m gunicorn --bind 127.0.0.1:{port} app"}
    (root / "opt/payments/releases" / VERSION / "manifest.json").write_text(json.dumps(manifest))
    return root


def variables(root: Path, manager: str, **more: t.Any) -> dict[str, t.Any]:
    return {"payments_root": str(root), "release_version": VERSION, "release_colour": "blue",
            "release_service_manager": manager, "payments_colour_ports": PORTS,
            "payments_env": {"DATABASE_URL": "postgresql://payments:s3cr\"et@db.internal/payments",
                             "STRIPE_SECRET_KEY": "sk_live_example"},
            "release_runtime_bin_dir": RUNTIME_BIN_DIR, "release_stop_timeout": STOP_TIMEOUT,
            "release_service_user": "payments", "release_files_owner": FILES_OWNER,
            "release_files_group": FILES_GROUP, **more}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    roots = {name: make_root(tmp_path_factory.mktemp(name))
             for name in ("systemd", "supervisor", "bad_main", "bad_install")}
    bad = {"release_service_manager": "upstart", "release_artifact_base_url": "http://127.0.0.1:9"}
    hosts = {
        "systemd": variables(roots["systemd"], "systemd"),
        # The supervisor program, for comparison: the service group must exist to own its env file.
        "supervisor": variables(roots["supervisor"], "supervisor", release_service_user=ME,
                                release_service_group=MY_GROUP, release_supervisor_config="/nonexistent",
                                release_unpacked={"user": ME}),
        "bad_main": variables(roots["bad_main"], "systemd", entry_point="main", **bad),
        "bad_install": variables(roots["bad_install"], "systemd", entry_point="install", **bad),
    }
    return World(roots, hosts)


@pytest.fixture(scope="module")
def first_run(world, configure):
    return configure("first", world.hosts)


def unit_path(root: Path) -> Path:
    return root / "etc" / "systemd" / "system" / f"{NAME}-blue.service"


def unit(root: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd's keys are case-sensitive
    parser.read_string(unit_path(root).read_text())
    return parser


def program(root: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string((root / "etc" / "supervisor" / "conf.d" / f"{NAME}-blue.conf").read_text())
    return parser[f"program:{NAME}-blue"]


def test_configure_renders_the_unit_instead_of_the_program(world, first_run):
    counts = recap(first_run.stdout)
    assert counts["systemd"]["failed"] == 0 and counts["supervisor"]["failed"] == 0, first_run.stdout
    root = world.roots["systemd"]
    assert unit_path(root).is_file()
    assert not list((root / "etc" / "supervisor").rglob("*.conf"))
    assert not list((world.roots["supervisor"] / "etc" / "systemd").rglob("*.service"))
    assert reload_decision(first_run.stdout, "systemd") == "update"  # daemon-reload, then restart


def test_unit_passes_systemd_analyze_verify_without_a_word(world, first_run):
    assert recap(first_run.stdout)["systemd"]["failed"] == 0, first_run.stdout
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: Debian's systemd package (make system-packages) provides it")
    done = subprocess.run([analyze, "verify", str(unit_path(world.roots["systemd"]))], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    # It exits 0 even on parse warnings ("Unknown key name ..."): the unit passes only when nothing is printed.
    assert (done.returncode, done.stdout + done.stderr) == (0, ""), done.stdout + done.stderr


def test_unit_is_hardened_and_stops_gracefully(world, first_run):
    assert recap(first_run.stdout)["systemd"]["failed"] == 0, first_run.stdout
    service = unit(world.roots["systemd"])["Service"]
    for option, value in HARDENING.items():
        assert service.get(option) == value, option
    assert (service["User"], service["Group"]) == ("payments", "payments")
    assert (service["Restart"], service["KillSignal"], service["KillMode"]) == ("on-failure", "SIGTERM", "mixed")
    assert service["TimeoutStopSec"] == str(STOP_TIMEOUT)
    # The service writes only to stdout, a file systemd opens for it: nothing of the file system is writable.
    assert "ReadWritePaths" not in service


def test_unit_runs_the_programs_command_in_the_colour_with_its_log(world, first_run):
    assert recap(first_run.stdout)["supervisor"]["failed"] == 0, first_run.stdout
    systemd_root, supervisor_root = str(world.roots["systemd"]), str(world.roots["supervisor"])
    service, conf = unit(world.roots["systemd"])["Service"], program(world.roots["supervisor"])
    env_file = f"{systemd_root}/etc/payments/{NAME}-blue.env"
    # systemd reads the root-only env file and hands the service a copy in its credentials directory (%d).
    assert service["LoadCredential"] == f"env:{env_file}"
    assert service["ExecStart"] == (conf["command"].replace(supervisor_root, systemd_root)
                                    .replace(f"--env-file {env_file}", "--env-file %d/env"))
    assert service["ExecStart"].startswith(f"{RUNTIME_BIN_DIR}/python3 {systemd_root}/opt/payments/bin/payments-launch")
    assert service["WorkingDirectory"] == conf["directory"].replace(supervisor_root, systemd_root)
    assert Path(service["WorkingDirectory"]).resolve() == world.roots["systemd"] / "opt/payments/releases" / VERSION
    assert service["StandardOutput"] == "append:" + conf["stdout_logfile"].replace(supervisor_root, systemd_root)
    assert f'"PATH={RUNTIME_BIN_DIR}:/usr/local/bin:/usr/bin:/bin"' in service["Environment"]
    assert "PYTHONDONTWRITEBYTECODE=1" in service["Environment"].split()


def test_env_file_is_roots_alone_under_systemd_and_the_groups_under_supervisor(world, first_run):
    assert recap(first_run.stdout)["systemd"]["failed"] == 0, first_run.stdout
    systemd_env = world.roots["systemd"] / "etc" / "payments" / f"{NAME}-blue.env"
    supervisor_env = world.roots["supervisor"] / "etc" / "payments" / f"{NAME}-blue.env"
    found = systemd_env.stat()
    assert (stat.S_IMODE(found.st_mode), pwd.getpwuid(found.st_uid).pw_name,
            grp.getgrgid(found.st_gid).gr_name) == (0o600, FILES_OWNER, FILES_GROUP)
    found = supervisor_env.stat()
    assert (stat.S_IMODE(found.st_mode), grp.getgrgid(found.st_gid).gr_name) == (0o640, MY_GROUP)
    assert 'DATABASE_URL="postgresql://payments:s3cr\\"et@db.internal/payments"' in systemd_env.read_text()


def test_an_unknown_service_manager_is_refused_before_anything_is_written(world, first_run):
    for host in ("bad_main", "bad_install"):
        assert recap(first_run.stdout)[host]["failed"] == 1, first_run.stdout
        message = failure(first_run.stdout, host)
        assert "release_service_manager" in message and "systemd, supervisor" in message, message
        assert "upstart" in message, message
        root = world.roots[host]
        assert not [path for path in root.rglob("*") if path.is_file() or path.is_symlink()
                    if path.name != "manifest.json"], host


@pytest.fixture(scope="module")
def rerun(world, configure, first_run):
    assert recap(first_run.stdout)["systemd"]["failed"] == 0, first_run.stdout
    return configure("rerun", {"systemd": world.hosts["systemd"]})


def test_rerun_changes_nothing_and_only_keeps_the_colour_running(rerun):
    counts = recap(rerun.stdout)["systemd"]
    assert (counts["changed"], counts["failed"]) == (0, 0), rerun.stdout
    assert reload_decision(rerun.stdout, "systemd") == "none"


def test_a_changed_unit_of_the_live_colour_is_refused(world, configure, rerun):
    assert recap(rerun.stdout)["systemd"]["failed"] == 0, rerun.stdout
    before = unit_path(world.roots["systemd"]).read_text()
    done = configure("live", {"systemd": {**world.hosts["systemd"], "release_colour_is_live": True,
                                          "release_stop_timeout": STOP_TIMEOUT + 5}})
    assert recap(done.stdout)["systemd"]["failed"] == 1, done.stdout
    message = failure(done.stdout, "systemd")
    assert "serves live traffic" in message and "its program would change" in message, message
    assert unit_path(world.roots["systemd"]).read_text() == before
