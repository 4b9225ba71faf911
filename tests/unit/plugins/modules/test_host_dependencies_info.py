"""Unit tests of the host_dependencies_info module, against the real interpreter and programs of this machine:
``json`` and ``sh`` are always there, names made up here never are."""

from __future__ import annotations

import json
import sys
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.modules import host_dependencies_info as deps

NO_MODULE = "payments_no_such_module_4f2a"
NO_PROGRAM = "payments-no-such-program-4f2a"


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], check: bool = False) -> dict[str, t.Any]:
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        deps.main()
    return json.loads(capsys.readouterr().out)


def names(items: list[dict[str, t.Any]]) -> list[str]:
    return [item["name"] for item in items]


@pytest.fixture
def versioned_program(tmp_path: Path) -> str:
    """A program that prints a version the way many do (``NAME (Suite) 15.18 (Debian ...)``)."""
    path = tmp_path / "pg_dump"
    path.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)'\n")
    path.chmod(0o755)
    return str(path)


def test_present_module_and_program(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {"python_modules": ["json"], "binaries": ["sh"]})
    assert not result.get("failed")
    assert result["changed"] is False and result["missing"] == [] and result["debian_packages"] == []
    assert names(result["present"]) == ["json", "sh"]
    module, program = result["present"]
    assert module["kind"] == "python_module" and module["path"].endswith("json/__init__.py")
    assert program["kind"] == "binary" and program["path"].endswith("/sh") and program["version"] is None
    assert result["interpreter"] == {"executable": sys.executable, "version": ".".join(map(str, sys.version_info[:3]))}
    assert result["msg"].startswith("Everything needed is present on this host")


def test_missing_fails_with_one_message(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {"python_modules": ["json", NO_MODULE], "binaries": ["sh", NO_PROGRAM]})
    assert result["failed"] is True and result["changed"] is False
    assert names(result["present"]) == ["json", "sh"]
    assert names(result["missing"]) == [NO_MODULE, NO_PROGRAM]
    assert [item["kind"] for item in result["missing"]] == ["python_module", "binary"]
    assert all(item["problem"] == "not found" and item["path"] is None for item in result["missing"])
    assert f"Python module {NO_MODULE}: not found (no known Debian package)" in result["msg"]
    assert f"program {NO_PROGRAM}: not found (no known Debian package)" in result["msg"]


def test_message_names_the_debian_packages(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {"python_modules": [NO_MODULE], "binaries": [NO_PROGRAM, "/nonexistent/pg_restore"],
                          "debian_packages": {NO_MODULE: "python3-nosuch", NO_PROGRAM: "nosuch-tools"}})
    assert result["failed"] is True
    assert [item["debian_package"] for item in result["missing"]] == ["python3-nosuch", "nosuch-tools", "postgresql-client"]
    assert "(Debian package python3-nosuch)" in result["msg"]
    assert "program /nonexistent/pg_restore: not found (Debian package postgresql-client)" in result["msg"]
    assert result["debian_packages"] == ["nosuch-tools", "postgresql-client", "python3-nosuch"]
    assert result["msg"].endswith("Install with: apt-get install nosuch-tools postgresql-client python3-nosuch")


def test_known_debian_packages() -> None:
    known = deps.KNOWN_DEBIAN_PACKAGES
    assert known["psycopg"] == "python3-psycopg"
    assert known["zstandard"] == "python3-zstandard"  # python3-zstd is another library (import name zstd)
    assert known["cryptography"] == "python3-cryptography" and known["boto3"] == "python3-boto3"
    assert known["pg_dump"] == known["pg_restore"] == "postgresql-client"
    assert known["haproxy"] == "haproxy" and known["supervisorctl"] == "supervisor"


def test_fail_on_missing_false_reports(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {"python_modules": [NO_MODULE], "fail_on_missing": False})
    assert not result.get("failed")
    assert names(result["missing"]) == [NO_MODULE] and result["msg"].startswith("Missing for the payments.deploy")


def test_check_mode_is_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {"python_modules": ["json", NO_MODULE], "binaries": ["sh"], "fail_on_missing": False}, check=True)
    assert result["changed"] is False
    assert names(result["present"]) == ["json", "sh"] and names(result["missing"]) == [NO_MODULE]


def test_python_module_minimum(capsys: pytest.CaptureFixture[str]) -> None:
    """pytest is installed as a distribution with metadata, unlike json: its version is known."""
    version = pytest.__version__
    met = run(capsys, {"python_modules": ["pytest"], "min_versions": {"pytest": "1.0"}})
    assert met["missing"] == [] and met["present"][0]["version"] == version and met["present"][0]["min_version"] == "1.0"

    unmet = run(capsys, {"python_modules": ["pytest"], "min_versions": {"pytest": "999.1"}})
    assert unmet["failed"] is True
    item = unmet["missing"][0]
    assert item["version"] == version and item["path"] and item["problem"] == f"version {version} is older than 999.1"
    assert f"Python module pytest: version {version} is older than 999.1" in unmet["msg"]


def test_distribution_name_differs_from_import_name(capsys: pytest.CaptureFixture[str]) -> None:
    """yaml is shipped by the PyYAML distribution (ansible-core needs it, so it is here)."""
    result = run(capsys, {"python_modules": ["yaml"], "min_versions": {"yaml": "5.1"}})
    assert result["missing"] == [] and result["present"][0]["version"] is not None


def test_version_unknown_with_a_minimum_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {"python_modules": ["json"], "min_versions": {"json": "1.0"}})
    assert result["failed"] is True
    assert result["missing"][0]["problem"] == "version unknown, 1.0 or later needed"


def test_program_minimum(capsys: pytest.CaptureFixture[str], versioned_program: str) -> None:
    met = run(capsys, {"binaries": [versioned_program], "min_versions": {versioned_program: "15"}})
    assert met["missing"] == [] and met["present"][0]["version"] == "15.18"

    unmet = run(capsys, {"binaries": [versioned_program], "min_versions": {versioned_program: "16.2"}})
    assert unmet["failed"] is True
    assert unmet["missing"][0]["problem"] == "version 15.18 is older than 16.2"
    assert unmet["missing"][0]["debian_package"] == "postgresql-client"  # by the base name of the path
    assert "Install with: apt-get install postgresql-client" in unmet["msg"]


def test_every_missing_item_in_one_message(capsys: pytest.CaptureFixture[str], versioned_program: str) -> None:
    result = run(capsys, {"python_modules": [NO_MODULE, "pytest"], "binaries": [NO_PROGRAM, versioned_program],
                          "min_versions": {"pytest": "999", versioned_program: "99"}})
    assert names(result["missing"]) == [NO_MODULE, "pytest", NO_PROGRAM, versioned_program]
    assert result["msg"].count(";") == 3


@pytest.mark.parametrize(("version", "minimum", "older"), [
    ("3.3.9", "3.1", False), ("3.1", "3.1.0", False), ("3.0.18", "3.1", True), ("2.6.12-1+deb12u4", "2.6.12", False),
    ("12.4.0", "12.5", True), ("v1.10", "1.9", False), ("0.25.0", "0.20", False),
])
def test_older_than(version: str, minimum: str, older: bool) -> None:
    assert deps.older_than(version, minimum) is older


@pytest.mark.parametrize(("args", "problem"), [
    ({"python_modules": ["not a module"]}, "python_modules: 'not a module' is not a Python import name"),
    ({"binaries": ["bin/pg_dump"]}, "binaries: 'bin/pg_dump' is neither a program name nor an absolute path"),
    ({"binaries": ["sh"], "min_versions": {"pg_dump": "15"}}, "min_versions: 'pg_dump' is in neither python_modules nor binaries"),
    ({"binaries": ["sh"], "min_versions": {"sh": "latest"}}, "min_versions: sh: 'latest' is not a version"),
    ({"binaries": ["sh"], "debian_packages": {"sh": "Dash Shell"}}, "debian_packages: sh: 'Dash Shell' is not a Debian package name"),
])
def test_bad_input(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], problem: str) -> None:
    result = run(capsys, args)
    assert result["failed"] is True and problem in result["msg"]
    assert result["present"] == [] and result["missing"] == []


def test_checked_modules_are_not_imported(capsys: pytest.CaptureFixture[str]) -> None:
    """Looking for a module does not import it (a library with import-time side effects stays unloaded)."""
    name = "xml.dom.pulldom"
    sys.modules.pop(name, None)
    result = run(capsys, {"python_modules": [name]})
    assert names(result["present"]) == [name] and name not in sys.modules
