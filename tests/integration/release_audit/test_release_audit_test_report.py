"""The release_audit role's test_report entry point through ansible-playbook: the attestation is downloaded from a
real HTTP server beside the artifact, its minisign signature checked, and production refuses what does not clear the
installed artifact (a failing suite, a missing attestation, another artifact) while staging only reports."""

from __future__ import annotations

import datetime
import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import threading
import typing as t
from pathlib import Path

import pytest
from loopback_ports import free_port

if t.TYPE_CHECKING:
    from conftest import AuditWorld

MINISIGN = shutil.which("minisign")
pytestmark = [pytest.mark.skipif(MINISIGN is None, reason="the minisign program is not installed"),
              pytest.mark.timeout(300)]
VERSION = "2.3.4"
ARTIFACT = f"payment-service-{VERSION}.tar.gz"
RECORD = "Record the test attestation for the journal and the report"


def suite(tests: int, failures: int = 0) -> dict[str, t.Any]:
    return {"tests": tests, "failures": failures, "errors": 0, "skipped": 0,
            "junit_sha256": hashlib.sha256(f"junit {tests} {failures}".encode()).hexdigest()}


class Published:
    """An artifact server (a real HTTP server on loopback) and the app host's installed copy of the artifact."""

    def __init__(self, base: Path) -> None:
        self.site = base / "site"
        self.site.mkdir()
        (self.site / ARTIFACT).write_bytes(b"payment-service 2.3.4 release bytes\n")
        self.root = base / "root"
        installed = self.root / "opt" / "payments" / "artifacts"
        installed.mkdir(parents=True)
        shutil.copy(self.site / ARTIFACT, installed / ARTIFACT)
        self.installed = installed / ARTIFACT
        keys = base / "keys"
        keys.mkdir()
        subprocess.run([MINISIGN, "-G", "-W", "-p", str(keys / "k.pub"), "-s", str(keys / "k.key")], check=True,
                       capture_output=True)
        self.secret, self.public = keys / "k.key", (keys / "k.pub").read_text().splitlines()[1]
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(self.site))
        handler.log_message = lambda *args: None  # type: ignore[attr-defined]
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def attest(self, **changes: t.Any) -> None:
        data = {"format": 1, "name": "payment-service", "version": VERSION, "artifact": ARTIFACT,
                "artifact_sha256": hashlib.sha256((self.site / ARTIFACT).read_bytes()).hexdigest(),
                "commit": "5d41402abc4b2a76b9719d911017c592ae7e5f3b", "ref": "release/2.3", "run_id": "981",
                "run_url": "https://ci.example.com/runs/981",
                "finished_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "suites": {"unit": suite(80), "integration": suite(20), "security": suite(12)}, **changes}
        path = self.site / f"{ARTIFACT}.tests.json"
        path.write_text(json.dumps(data) + "\n")
        subprocess.run([MINISIGN, "-S", "-s", str(self.secret), "-m", str(path)], check=True, capture_output=True)

    def variables(self) -> dict[str, t.Any]:
        return {"payments_root": str(self.root), "release_version": VERSION, "release_artifact_base_url": self.url,
                "release_audit_test_report_public_keys": [self.public]}


@pytest.fixture(name="published")
def published_fixture(tmp_path: Path) -> t.Iterator[Published]:
    site = Published(tmp_path)
    yield site
    site.server.shutdown()
    site.server.server_close()


def test_production_passes_a_clean_signed_attestation_and_records_it(world: AuditWorld, published: Published) -> None:
    published.attest()
    run = world.run("test_report", "production", **published.variables())
    assert run.rc == 0, run.failure() or run.stdout[-3000:]
    fact = run.result_of(RECORD)["ansible_facts"]["release_audit_test_report"]
    assert fact["passed"] is True and fact["required"] is True and fact["signed"] is True and fact["problems"] == []
    assert fact["report"]["totals"]["tests"] == 112 and fact["report"]["ref"] == "release/2.3"
    assert fact["artifact_sha256"] == hashlib.sha256(published.installed.read_bytes()).hexdigest()
    assert world.marker.exists()


def test_production_refuses_a_failing_suite_before_anything_changes(world: AuditWorld, published: Published) -> None:
    published.attest(suites={"unit": suite(80), "integration": suite(20), "security": suite(12, failures=1)})
    run = world.run("test_report", "production", **published.variables())
    assert run.rc != 0
    assert "suite security has 1 failure(s)" in run.failure() and "Nothing was switched" in run.failure()
    assert not world.marker.exists()


def test_production_refuses_a_missing_attestation(world: AuditWorld, published: Published) -> None:
    run = world.run("test_report", "production", **published.variables())
    assert run.rc != 0 and "no test attestation was published" in run.failure()
    assert not world.marker.exists()


def test_an_installed_artifact_other_than_the_attested_one_is_refused(world: AuditWorld,
                                                                      published: Published) -> None:
    published.attest()
    published.installed.write_bytes(b"payment-service 2.3.4 patched on the host\n")
    run = world.run("test_report", "production", **published.variables())
    assert run.rc != 0 and "the attestation is for another artifact" in run.failure()


def test_staging_reports_without_failing(world: AuditWorld, published: Published) -> None:
    published.attest(ref="feature/quick-fix")
    run = world.run("test_report", "staging", **published.variables())
    assert run.rc == 0, run.failure()
    fact = run.result_of(RECORD)["ansible_facts"]["release_audit_test_report"]
    assert fact["passed"] is False and fact["required"] is False
    assert "would block production" in run.result_of("Warn about an attestation that would block a required environment")["msg"]
    assert world.marker.exists()


def test_check_mode_judges_the_same_and_leaves_no_scratch_directory(world: AuditWorld, published: Published) -> None:
    published.attest(suites={"unit": suite(80), "integration": suite(20)})
    run = world.run("test_report", "production", check=True, **published.variables())
    assert run.rc != 0 and "required suite security is missing" in run.failure()
    scratch = run.result_of("Create a scratch directory on the controller")["path"]
    assert not Path(scratch).exists()
