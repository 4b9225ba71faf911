"""release_test_report_info: a signed attestation of the installed artifact with clean suites passes; every way it can
be wrong (a failing or missing suite, another artifact, a bad or missing signature, a file changed after signing, an
old attestation, a branch outside the pattern) fails naming the problem, all problems in one message."""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import subprocess
import typing as t
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.modules import release_test_report_info

MINISIGN = shutil.which("minisign")
pytestmark = pytest.mark.skipif(MINISIGN is None, reason="the minisign program is not installed")
COMMIT = "5d41402abc4b2a76b9719d911017c592ae7e5f3b"


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], check: bool = False) -> dict[str, t.Any]:
    with patch_module_args({**args, "_ansible_check_mode": check}), pytest.raises(SystemExit):
        release_test_report_info.main()
    return json.loads(capsys.readouterr().out)


def keypair(directory: Path) -> tuple[Path, str]:
    """A fresh minisign key without a password: the secret key file and the public key line."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([MINISIGN, "-G", "-W", "-p", str(directory / "k.pub"), "-s", str(directory / "k.key")], check=True,
                   capture_output=True)
    return directory / "k.key", (directory / "k.pub").read_text().splitlines()[1]


def sign(path: Path, secret: Path) -> None:
    subprocess.run([MINISIGN, "-S", "-s", str(secret), "-m", str(path), "-t", path.name], check=True,
                   capture_output=True)


def suite(tests: int, failures: int = 0, errors: int = 0, skipped: int = 0) -> dict[str, t.Any]:
    junit = f"<testsuite tests='{tests}' failures='{failures}'/>".encode()
    return {"tests": tests, "failures": failures, "errors": errors, "skipped": skipped,
            "junit_sha256": hashlib.sha256(junit).hexdigest()}


class Release:
    """An artifact, its attestation and the key that signs it, in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.artifact = root / "payment-service-1.1.0.tar.gz"
        self.artifact.write_bytes(b"payment-service 1.1.0 release bytes\n")
        self.sha256 = hashlib.sha256(self.artifact.read_bytes()).hexdigest()
        self.report = root / "payment-service-1.1.0.tar.gz.tests.json"
        self.secret, self.public = keypair(root / "keys")

    def attest(self, signed: bool = True, **changes: t.Any) -> None:
        finished = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
        data = {"format": 1, "name": "payment-service", "version": "1.1.0", "artifact": self.artifact.name,
                "artifact_sha256": self.sha256, "commit": COMMIT, "ref": "main", "run_id": "4711",
                "run_url": "https://ci.example.com/payments/runs/4711",
                "finished_at": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "suites": {"unit": suite(120), "integration": suite(40, skipped=2), "security": suite(25)}}
        data.update(changes)
        self.report.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        if signed:
            sign(self.report, self.secret)

    def args(self, **extra: t.Any) -> dict[str, t.Any]:
        return {"path": str(self.report), "signature_path": f"{self.report}.minisig", "public_keys": [self.public],
                "artifact_path": str(self.artifact), "version": "1.1.0", **extra}


@pytest.fixture(name="release")
def release_fixture(tmp_path: Path) -> Release:
    return Release(tmp_path)


def test_a_signed_clean_attestation_of_the_artifact_passes_in_check_mode_too(capsys, release):
    release.attest()
    for check in (False, True):
        result = run(capsys, release.args(), check=check)
        assert result["passed"] is True and not result.get("failed") and not result["changed"]
        assert result["problems"] == [] and result["signed"] is True
        assert result["expected_sha256"] == release.sha256 == result["report"]["artifact_sha256"]
        assert result["report"]["totals"] == {"tests": 185, "failures": 0, "errors": 0, "skipped": 2}
        assert 1.9 < result["report"]["age_days"] * 24 < 2.1
        assert "passed: 3 suites, 185 tests" in result["msg"]


def test_the_artifacts_sha256_may_be_given_instead_of_its_path(capsys, release):
    release.attest()
    args = release.args(artifact_sha256=release.sha256.upper())
    del args["artifact_path"]
    assert run(capsys, args)["passed"] is True


@pytest.mark.parametrize("changes, problem", [
    ({"suites": {"unit": suite(120), "integration": suite(40), "security": suite(25, failures=1)}},
     "suite security has 1 failure(s) and 0 error(s)"),
    ({"suites": {"unit": suite(120, errors=3), "integration": suite(40), "security": suite(25)}},
     "suite unit has 0 failure(s) and 3 error(s)"),
    ({"suites": {"unit": suite(120), "integration": suite(40)}}, "required suite security is missing"),
    ({"suites": {"unit": suite(0), "integration": suite(40), "security": suite(25)}},
     "suite unit ran 0 test(s), fewer than the minimum 1"),
    ({"suites": {"unit": suite(120), "integration": suite(40, skipped=30), "security": suite(25)}},
     "suite integration skipped 30 of 40 test(s)"),
    ({"artifact_sha256": hashlib.sha256(b"another build").hexdigest()}, "the attestation is for another artifact"),
    ({"finished_at": "2026-01-02T03:04:05Z"}, "days ago, longer than the maximum 30"),
    ({"finished_at": "yesterday"}, "is not an ISO 8601 time"),
    ({"ref": "feature/try-something"}, "the branch or tag 'feature/try-something' does not match"),
    ({"commit": "HEAD"}, "the source commit 'HEAD' is not 40 hexadecimal digits"),
    ({"version": "1.1.1"}, "the attestation's version is '1.1.1', not '1.1.0'"),
])
def test_a_wrong_attestation_fails_naming_the_problem(capsys, release, changes, problem):
    release.attest(**changes)
    result = run(capsys, release.args())
    assert result["failed"] is True and result["passed"] is False
    assert problem in result["msg"]
    assert [item for item in result["problems"] if problem in item]
    assert result["signed"] is True  # the signature was fine: only the content is refused


def test_a_tag_passes_the_default_pattern(capsys, release):
    release.attest(ref="v1.1.0")
    assert run(capsys, release.args())["passed"] is True


def test_a_file_changed_after_signing_is_refused(capsys, release):
    release.attest()
    text = release.report.read_text().replace('"failures": 0', '"failures": 0 ', 1)
    release.report.write_text(text)
    result = run(capsys, release.args())
    assert result["failed"] is True and result["signed"] is False
    assert "signature was refused" in result["msg"] and "does not match the file's content" in result["msg"]


def test_a_signature_by_another_key_is_refused(capsys, release, tmp_path):
    release.attest(signed=False)
    other, other_public = keypair(tmp_path / "other")
    sign(release.report, other)
    result = run(capsys, release.args())
    assert result["failed"] is True and "which is not a trusted key" in result["msg"]
    assert run(capsys, release.args(public_keys=[release.public, other_public]))["passed"] is True


@pytest.mark.parametrize("args, problem", [
    ({}, "the attestation is not signed (no .minisig)"),
    ({"public_keys": []}, "not signed"),
])
def test_an_unsigned_attestation_is_refused(capsys, release, args, problem):
    release.attest(signed=False)
    result = run(capsys, release.args(**args))
    assert result["failed"] is True and problem in result["msg"]


def test_no_public_key_means_the_signature_cannot_be_trusted(capsys, release):
    release.attest()
    result = run(capsys, release.args(public_keys=[]))
    assert result["failed"] is True and "no public key is configured" in result["msg"]


def test_every_problem_is_in_one_message_and_reported_without_failing_on_request(capsys, release):
    release.attest(signed=False, ref="wip", suites={"unit": suite(120, failures=2)})
    result = run(capsys, release.args(fail_on_problems=False))
    assert not result.get("failed") and result["passed"] is False
    for problem in ("not signed", "'wip' does not match", "suite unit has 2 failure(s)",
                    "required suite integration is missing", "required suite security is missing"):
        assert problem in result["msg"]
    assert len(result["problems"]) == 5
    assert result["report"]["suites"]["unit"]["failures"] == 2


def test_no_published_attestation_is_a_problem(capsys, release):
    result = run(capsys, release.args(fail_on_problems=False))
    assert result["passed"] is False and "no test attestation was published" in result["problems"][0]


def test_an_attestation_that_is_not_json_is_refused(capsys, release):
    release.report.write_text("<testsuite tests='3'/>\n")
    sign(release.report, release.secret)
    result = run(capsys, release.args())
    assert result["failed"] is True and "not JSON" in result["msg"] and result["signed"] is True
