"""The host_dependencies role run for real with ansible-playbook on this machine: its check fails a play before
anything changes when a requirement is missing and passes when all are present; its venv install path installs one
small pinned package from PyPI into a temporary venv and names the interpreter to use. (The apt path is not run: it
would change this machine.)"""

from __future__ import annotations

import re
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from conftest import Run  # pylint: disable=import-error

MISSING_MODULE = "payments_no_such_module_7c1d"
MISSING_PROGRAM = "payments-no-such-program-7c1d"
VENV_PACKAGE, VENV_PIN = "tomli_w", "tomli-w==1.2.0"  # small, pure Python, no dependencies, not in the test venv

PRESENT = {
    "python_modules": [{"name": "json", "why": "the standard library"},
                       {"name": "yaml", "min_version": "5.1", "why": "ansible-core needs it"}],
    "binaries": [{"name": "sh", "why": "every host has one"}],
}


def test_check_passes_when_all_present(run_role: t.Callable[..., Run]) -> None:
    run = run_role("check", PRESENT)
    assert run.rc == 0, run.report
    assert run.recap()["failures"] == 0 and run.recap()["changed"] == 0
    assert run.result() == {"present": ["json", "yaml", "sh"], "missing": [], "interpreter": sys.executable}


def test_check_fails_listing_what_is_missing(run_role: t.Callable[..., Run]) -> None:
    requirements = {
        "python_modules": PRESENT["python_modules"] + [
            {"name": MISSING_MODULE, "debian_package": "python3-nosuch", "why": "a module of this test"}],
        "binaries": PRESENT["binaries"] + [
            {"name": MISSING_PROGRAM, "why": "a program of this test"},
            {"name": "pg_restore", "min_version": "999", "debian_package": "postgresql-client", "why": "restores"}],
    }
    run = run_role("check", requirements)
    assert run.rc == 2 and run.recap()["failures"] == 1 and run.recap()["changed"] == 0
    message = run.failure()
    assert f"Python module {MISSING_MODULE}: not found (Debian package python3-nosuch)" in message
    assert f"program {MISSING_PROGRAM}: not found (no known Debian package)" in message
    assert f"{MISSING_MODULE}: a module of this test; {MISSING_PROGRAM}: a program of this test" in message
    # not found, or found (with the PostgreSQL client programs) and older than 999
    assert re.search(r"program pg_restore: (not found|version [0-9.]+ is older than 999) \(Debian package postgresql-client\)",
                     message)
    assert message.endswith("Install with: apt-get install postgresql-client python3-nosuch. Needed on this host (probe) because: "
                            f"{MISSING_MODULE}: a module of this test; {MISSING_PROGRAM}: a program of this test; "
                            "pg_restore: restores. The role payments.deploy.host_dependencies (playbooks/host_dependencies.yml) "
                            "installs what is missing.")
    for present in ("json", "yaml", "sh"):
        assert f" {present}: " not in message
    tasks = [name for name, result in run.tasks()]
    assert tasks[-1] == "Stop when something is missing"


def test_defaults_for_every_kind_of_host(run_role: t.Callable[..., Run]) -> None:
    """A host in every default group is checked for the union of the default requirements (whether this machine
    has them all depends on what it has installed, so only the names are compared). The app hosts' service manager
    command follows release_service_manager: systemctl by default, release_supervisorctl_path under supervisor."""
    common = ["stripe", "requests", "redis", "cryptography", "psycopg", "yaml", "zstandard", "boto3", "haproxy",
              "pg_dump", "pg_restore"]
    for extra, manager in (({}, "systemctl"),
                           ({"release_service_manager": "supervisor", "release_supervisorctl_path": "/opt/x/supervisorctl"},
                            "/opt/x/supervisorctl")):
        run = run_role("check", None, groups=("loadbalancers", "production_app", "databases"), **extra)
        checked = next(result for name, result in run.tasks()
                       if name == "Look for the Python libraries and programs the payments.deploy modules need on this host")
        names = [item["name"] for item in checked["present"] + checked["missing"]]
        assert sorted(names) == sorted([*common, manager])
    assert checked["changed"] is False


def test_an_app_host_is_checked_for_what_the_rollback_mirror_runs_there(run_role: t.Callable[..., Run]) -> None:
    """cache_namespace_clear (redis) is delegated to the first app host; the load balancers never import redis."""
    names = {}
    for group in ("production_app", "loadbalancers"):
        run = run_role("check", None, groups=(group,))
        checked = next(result for name, result in run.tasks()
                       if name == "Look for the Python libraries and programs the payments.deploy modules need on this host")
        names[group] = {item["name"] for item in checked["present"] + checked["missing"]}
    assert "redis" in names["production_app"] and "redis" not in names["loadbalancers"]


def test_unknown_kind_of_host_fails(run_role: t.Callable[..., Run]) -> None:
    run = run_role("check", PRESENT, host_dependencies_roles=["probe", "cache"])
    assert run.rc == 2
    assert "host_dependencies_roles names cache, which host_dependencies_requirements does not have" in run.failure()


def test_main_in_check_mode_installs_nothing(run_role: t.Callable[..., Run], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    requirements = {"python_modules": [{"name": VENV_PACKAGE, "pip": VENV_PIN, "why": "the test's library"}], "binaries": []}
    run = run_role("main", requirements, check=True, host_dependencies_venv_path=str(venv), host_dependencies_become=False,
                   host_dependencies_venv_debian_packages=[], host_dependencies_venv_python=sys.executable)
    assert run.rc == 0, run.report
    assert not venv.exists()
    said = run.said("Say which interpreter the payments.deploy modules are to use")
    assert f"Python module {VENV_PACKAGE}: not found" in said and "Check mode: nothing was installed." in said


def pypi_reachable() -> bool:
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--dest", "/dev/null/x", "--quiet",
                           "--dry-run", VENV_PIN], capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode == 0 or "Would download" in proc.stdout


def test_main_installs_a_venv_and_names_its_interpreter(run_role: t.Callable[..., Run], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    requirements = {"python_modules": [{"name": VENV_PACKAGE, "pip": VENV_PIN, "why": "the test's library"},
                                       {"name": "json", "why": "the standard library"}],
                    "binaries": [{"name": "sh", "why": "every host has one"}]}
    options = {"host_dependencies_venv_path": str(venv), "host_dependencies_become": False,
               "host_dependencies_venv_debian_packages": [], "host_dependencies_venv_python": sys.executable}
    run = run_role("main", requirements, **options)
    if run.rc != 0 and not pypi_reachable():
        pytest.skip(f"{VENV_PIN} cannot be downloaded here")
    assert run.rc == 0, run.report
    interpreter = str(venv / "bin" / "python")
    assert run.result() == {"present": [VENV_PACKAGE, "json", "sh"], "missing": [], "interpreter": interpreter}
    said = run.said("Say which interpreter the payments.deploy modules are to use")
    assert f"set ansible_python_interpreter: {interpreter} for this host" in said
    assert run.recap()["changed"] == 1  # the venv
    assert subprocess.run([interpreter, "-c", f"import {VENV_PACKAGE}"], check=False).returncode == 0

    again = run_role("main", requirements, **options)
    assert again.rc == 0 and again.recap()["changed"] == 0, again.report
    assert f"set ansible_python_interpreter: {interpreter}" in again.said("Say which interpreter the payments.deploy modules are to use")


def test_too_old_library_points_to_the_venv_method(run_role: t.Callable[..., Run]) -> None:
    requirements = {"python_modules": [{"name": "yaml", "min_version": "999", "debian_package": "python3-yaml",
                                        "why": "plans"}], "binaries": []}
    run = run_role("check", requirements)
    assert run.rc == 2
    message = run.failure()
    assert re.search(r"Python module yaml: version [0-9.]+ is older than 999 \(Debian package python3-yaml\)", message)
    assert "host_dependencies_install_method=venv installs the pinned versions from PyPI" in message
