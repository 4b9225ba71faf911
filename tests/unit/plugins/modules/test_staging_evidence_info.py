"""Unit tests of staging_evidence_info and the journal reader it uses: real history files in a temporary directory."""

from __future__ import annotations

import json
import time
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils._journal import (
    JournalError, find_evidence, judge, read_history)
from ansible_collections.payments.deploy.plugins.modules import staging_evidence_info

SHA_A = "a" * 64
SHA_B = "b" * 64
DAY = 86400.0


def record(sha256: str = SHA_A, version: str = "1.4.2", age_days: float = 1.0, passed: bool | None = True,
           kind: str = "deploy", environment: str = "staging", now: float | None = None) -> dict[str, t.Any]:
    now = time.time() if now is None else now
    entry: dict[str, t.Any] = {"kind": kind, "environment": environment, "release_to": version, "release_sha256": sha256,
                               "recorded_epoch": now - age_days * DAY, "recorded_at": "2026-11-26T00:00:00Z"}
    if passed is not None:
        entry["smoke"] = {"passed": passed}
    return entry


def write_history(root: Path, records: list[dict[str, t.Any]], environment: str = "staging") -> Path:
    directory = root / environment
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "history.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any]) -> dict[str, t.Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        staging_evidence_info.main()
    return json.loads(capsys.readouterr().out)


def test_newest_passing_record_of_the_same_artifact_is_the_evidence() -> None:
    now = time.time()
    older, newer = record(age_days=3, now=now), record(age_days=1, now=now)
    found, refused = find_evidence([older, newer, record(sha256=SHA_B, now=now)], "staging", SHA_A, 7 * DAY, now=now)
    assert found == newer and refused == []


@pytest.mark.parametrize(("entry", "reason"), [
    (record(passed=False), "1.4.2: recorded without a passing smoke test"),
    (record(passed=None), "1.4.2: recorded without a passing smoke test"),
    (record(age_days=9), "1.4.2: passed 9.0 days ago, older than the 7 days allowed"),
    (record(age_days=-1), "1.4.2: recorded in the future"),
    (record(sha256=SHA_B), "1.4.2: another artifact (sha256 bbbbbbbbbbbb...)"),
])
def test_refusals_say_why(entry: dict[str, t.Any], reason: str) -> None:
    assert (judge(entry, SHA_A, 7 * DAY) or "").startswith(reason)


def test_other_environments_and_kinds_are_not_evidence() -> None:
    entries = [record(environment="production"), record(kind="rollback"), record(kind="unlock")]
    assert find_evidence(entries, "staging", SHA_A, 7 * DAY) == (None, [])


def test_same_version_with_another_artifact_is_reported() -> None:
    found, refused = find_evidence([record(sha256=SHA_B)], "staging", SHA_A, 7 * DAY, version="1.4.2")
    assert found is None and refused == ["1.4.2: another artifact (sha256 bbbbbbbbbbbb...)"]


def test_history_reader(tmp_path: Path) -> None:
    assert not read_history(str(tmp_path / "missing.jsonl"))
    path = write_history(tmp_path, [record(), record(version="1.4.3")])
    path.write_text(path.read_text() + "\n")  # a trailing blank line is fine
    assert [r["release_to"] for r in read_history(str(path))] == ["1.4.2", "1.4.3"]
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(JournalError, match="line 4 is not JSON"):
        read_history(str(path))
    path.write_text("[1, 2]\n")
    with pytest.raises(JournalError, match="line 1 is not a JSON object"):
        read_history(str(path))


def test_module_finds_the_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_history(tmp_path, [record(age_days=2), record(passed=False, age_days=0.5)])
    result = run(capsys, {"journal_dir": str(tmp_path), "environment": "staging", "release_sha256": SHA_A.upper(),
                          "release_version": "1.4.2"})
    assert result["changed"] is False and result["records_read"] == 2
    assert result["evidence"]["release_sha256"] == SHA_A and 1.9 < result["age_days"] < 2.1
    assert result["refused"] == ["1.4.2: recorded without a passing smoke test"]


def test_module_without_evidence_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_history(tmp_path, [record(age_days=30)])
    result = run(capsys, {"journal_dir": str(tmp_path), "environment": "staging", "release_sha256": SHA_A,
                          "max_age_days": 14})
    assert result["evidence"] is None and result["age_days"] is None
    assert result["refused"] == ["1.4.2: passed 30.0 days ago, older than the 14 days allowed"]


def test_module_without_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {"journal_dir": str(tmp_path), "environment": "staging", "release_sha256": SHA_A})
    assert result["evidence"] is None and result["records_read"] == 0
    assert result["history_file"] == str(tmp_path / "staging" / "history.jsonl")


@pytest.mark.parametrize(("args", "message"), [
    ({"environment": "../prod"}, "environment must be a plain name"),
    ({"release_sha256": "abc"}, "release_sha256 must be 64 hex characters"),
    ({"max_age_days": 0}, "max_age_days must be above 0"),
    ({"max_age_days": 400}, "max_age_days must be above 0 and at most 365"),
])
def test_module_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: dict[str, t.Any],
                          message: str) -> None:
    result = run(capsys, {"journal_dir": str(tmp_path), "environment": "staging", "release_sha256": SHA_A, **args})
    assert result["failed"] is True and message in result["msg"]


def test_module_corrupt_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_history(tmp_path, []).write_text("garbage\n")
    result = run(capsys, {"journal_dir": str(tmp_path), "environment": "staging", "release_sha256": SHA_A})
    assert result["failed"] is True and "line 1 is not JSON" in result["msg"]


def with_load_test(entry: dict[str, t.Any], load_test: dict[str, t.Any] | None) -> dict[str, t.Any]:
    if load_test is not None:
        entry = dict(entry, load_test=load_test)
    return entry


@pytest.mark.parametrize(("load_test", "reason"), [
    (None, "1.4.2: recorded without a load test"),
    ({"passed": False, "failed_checks": ["p95 0.9 s above 0.5 s"]}, "1.4.2: its load test did not pass (p95 0.9 s above 0.5 s)"),
    ({"passed": "true"}, "1.4.2: its load test did not pass (no verdict recorded)"),
])
def test_a_required_load_test_must_have_passed(load_test: dict[str, t.Any] | None, reason: str) -> None:
    entry = with_load_test(record(), load_test)
    assert judge(entry, SHA_A, 7 * DAY, require_load_test=True) == reason
    # Not required: the smoke test alone proves the artifact, as before.
    assert judge(entry, SHA_A, 7 * DAY) is None


def test_the_module_skips_a_record_without_load_test_for_an_older_one_with_a_passing_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    proven = with_load_test(record(age_days=2, now=now), {"passed": True, "achieved_rps": 19.8})
    write_history(tmp_path, [proven, record(age_days=1, now=now)])
    args = {"journal_dir": str(tmp_path), "environment": "staging", "release_sha256": SHA_A}
    assert run(capsys, args)["evidence"]["recorded_epoch"] == pytest.approx(now - DAY)
    result = run(capsys, dict(args, require_load_test=True))
    assert result["evidence"]["load_test"] == {"passed": True, "achieved_rps": 19.8}
    assert result["refused"] == ["1.4.2: recorded without a load test"]
