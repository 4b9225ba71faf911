"""The lab's test attestations: counts read from the JUnit XML of a real pytest run (a failing test gives failures),
rewritten only when missing, of another artifact or old, and the attestation labctl writes and signs for a real build
clears that build through payments.deploy.release_test_report_info."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)
MINISIGN = shutil.which("minisign")
VERSIONS = {"2.0.0": (), "2.0.1": ()}


@pytest.fixture(name="attest", scope="module")
def attest_fixture() -> ModuleType:
    sys.path.insert(0, str(REPO / "lab"))
    try:
        import release_attestation  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(str(REPO / "lab"))
    return release_attestation


def a_suite(directory: Path, passing: int, failing: int, skipped: int, broken: int) -> Path:
    """A pytest file with that many passing, failing, skipped tests and tests whose fixture raises (errors)."""
    lines = ["import pytest", "", "@pytest.fixture", "def broken():", "    raise RuntimeError('setup fails')", ""]
    lines += [f"def test_passes_{n}():\n    assert {n} + 1 > {n}\n" for n in range(passing)]
    lines += [f"def test_fails_{n}():\n    assert {n} == -1\n" for n in range(failing)]
    lines += [f"@pytest.mark.skip(reason='not here')\ndef test_skipped_{n}():\n    pass\n" for n in range(skipped)]
    lines += [f"def test_broken_{n}(broken):\n    pass\n" for n in range(broken)]
    path = directory / "test_generated_suite.py"
    path.write_text("\n".join(lines))
    return path


def artifacts(directory: Path) -> Path:
    directory.mkdir()
    for version in VERSIONS:
        (directory / f"payment-service-{version}.tar.gz").write_bytes(f"release {version}\n".encode())
    return directory


def read(directory: Path, version: str) -> dict:
    return json.loads((directory / f"payment-service-{version}.tar.gz.tests.json").read_text())


def test_counts_are_read_from_the_junit_xml_of_a_real_run(attest: ModuleType, tmp_path: Path) -> None:
    out = artifacts(tmp_path / "artifacts")
    suites = {"unit": (str(a_suite(tmp_path, passing=4, failing=2, skipped=1, broken=1)),)}
    assert attest.write_attestations(out, VERSIONS, "payment-service", suites=suites) == list(VERSIONS)
    report = read(out, "2.0.0")
    unit = report["suites"]["unit"]
    assert (unit["tests"], unit["failures"], unit["skipped"], unit["errors"]) == (8, 2, 1, 1)
    assert len(unit["junit_sha256"]) == 64
    assert report["artifact_sha256"] == hashlib.sha256(b"release 2.0.0\n").hexdigest()
    assert read(out, "2.0.1")["suites"] == report["suites"]  # one run for every release of the same source


def test_a_clean_run_records_no_failure(attest: ModuleType, tmp_path: Path) -> None:
    out = artifacts(tmp_path / "artifacts")
    suites = {"unit": (str(a_suite(tmp_path, passing=3, failing=0, skipped=0, broken=0)),)}
    attest.write_attestations(out, VERSIONS, "payment-service", suites=suites)
    unit = read(out, "2.0.1")["suites"]["unit"]
    assert (unit["tests"], unit["failures"], unit["errors"], unit["skipped"]) == (3, 0, 0, 0)


def test_rewritten_only_when_missing_stale_or_of_another_artifact(attest: ModuleType, tmp_path: Path) -> None:
    out = artifacts(tmp_path / "artifacts")
    suites = {"unit": (str(a_suite(tmp_path, passing=1, failing=0, skipped=0, broken=0)),)}
    assert attest.write_attestations(out, VERSIONS, "payment-service", suites=suites) == ["2.0.0", "2.0.1"]
    assert attest.write_attestations(out, VERSIONS, "payment-service", suites=suites) == []
    (out / "payment-service-2.0.1.tar.gz").write_bytes(b"release 2.0.1, rebuilt\n")
    assert attest.write_attestations(out, VERSIONS, "payment-service", suites=suites) == ["2.0.1"]
    old = read(out, "2.0.0")
    old["finished_at"] = (datetime.datetime.now(datetime.timezone.utc)
                          - datetime.timedelta(days=attest.REFRESH_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (out / "payment-service-2.0.0.tar.gz.tests.json").write_text(json.dumps(old))
    assert attest.write_attestations(out, VERSIONS, "payment-service", suites=suites) == ["2.0.0"]


@pytest.mark.skipif(MINISIGN is None, reason="the minisign program is not installed")
def test_the_lab_attestation_of_a_real_build_clears_it(labctl: ModuleType, tmp_path: Path) -> None:
    state = tmp_path / "state"
    labctl.build_artifacts(state)
    assert labctl.attest_artifacts(state) == ["1.0.0", "1.1.0", "1.1.1"]
    public = labctl.sign_artifacts(state).read_text().splitlines()[1]
    report = state / "artifacts" / "payment-service-1.1.1.tar.gz.tests.json"
    assert read(state / "artifacts", "1.1.1")["suites"].keys() == {"unit", "integration", "security"}
    args = {"path": str(report), "signature_path": f"{report}.minisig", "public_keys": [public],
            "artifact_path": str(state / "artifacts" / "payment-service-1.1.1.tar.gz"), "version": "1.1.1",
            "ref_pattern": "^lab/.+$", "min_tests": 5}
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    done = subprocess.run([str(Path(sys.executable).with_name("ansible")), "localhost", "-c", "local", "-o",
                           "-m", "payments.deploy.release_test_report_info", "-a", json.dumps(args)],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.split("=>", 1)[1])
    assert result["passed"] is True and result["signed"] is True
    assert result["report"]["totals"]["failures"] == 0 and result["report"]["totals"]["tests"] >= 15
    # The 1.1.0 attestation does not clear 1.1.1: each names its own artifact.
    args["path"] = str(report).replace("1.1.1", "1.1.0")
    args["signature_path"] = args["path"] + ".minisig"
    del args["version"]
    done = subprocess.run([str(Path(sys.executable).with_name("ansible")), "localhost", "-c", "local", "-o",
                           "-m", "payments.deploy.release_test_report_info", "-a", json.dumps(args)],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=120)
    assert done.returncode != 0 and "the attestation is for another artifact" in done.stdout


@pytest.mark.skipif(MINISIGN is None, reason="the minisign program is not installed")
def test_the_command_attests_and_signs_a_release_built_for_a_test(tmp_path: Path) -> None:
    out, keys = tmp_path / "artifacts", tmp_path / "keys"
    keys.mkdir()
    subprocess.run([MINISIGN, "-G", "-W", "-p", str(keys / "k.pub"), "-s", str(keys / "k.key")], check=True,
                   capture_output=True)
    subprocess.run([sys.executable, str(REPO / "lab" / "build_release.py"), "--version", "1.2.0", "--output-dir", str(out)],
                   check=True, capture_output=True)
    command = [sys.executable, str(REPO / "lab" / "release_attestation.py"), "--artifacts-dir", str(out),
               "--sign-key", str(keys / "k.key")]
    first = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    report = out / "payment-service-1.2.0.tar.gz.tests.json"
    assert json.loads(first.stdout) == {"attestation": str(report), "signed": True}
    assert read(out, "1.2.0")["artifact_sha256"] == hashlib.sha256((out / "payment-service-1.2.0.tar.gz").read_bytes()).hexdigest()
    subprocess.run([MINISIGN, "-V", "-p", str(keys / "k.pub"), "-m", str(report)], check=True, capture_output=True)
    assert subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout == ""  # up to date
