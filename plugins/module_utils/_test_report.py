# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Judge a release's test attestation (``NAME-VERSION.tar.gz.tests.json``) against the artifact it must describe.

Private to the payments.deploy collection: the interface may change without notice.

The attestation is written by the release pipeline from the JUnit XML of each suite it ran on the commit the artifact
was built from::

    {"format": 1, "name": "payment-service", "version": "1.1.0", "artifact": "payment-service-1.1.0.tar.gz",
     "artifact_sha256": "<64 hex>", "commit": "<40 hex>", "ref": "main", "run_id": "...", "run_url": "https://...",
     "finished_at": "2026-11-29T05:00:00Z",
     "suites": {"unit": {"tests": 41, "failures": 0, "errors": 0, "skipped": 0, "junit_sha256": "<64 hex>"}, ...}}

Every problem is collected (never only the first), so one message names all of them.
"""

from __future__ import annotations

import datetime
import json
import re
import typing as t

SHA256 = re.compile(r"[0-9a-f]{64}")
COMMIT = re.compile(r"[0-9a-f]{40}")
COUNTS = ("tests", "failures", "errors", "skipped")
MAX_TEXT = 1 << 20  # an attestation is a few hundred bytes; anything near this is not one


class ReportError(Exception):
    """The attestation cannot be read as one (not JSON, not an object)."""


class Expectations(t.NamedTuple):
    artifact_sha256: str
    required_suites: t.Sequence[str]
    min_tests: int
    max_skipped_fraction: float
    ref_pattern: t.Pattern[str]
    max_age_days: float
    name: str | None = None
    version: str | None = None


def parse(text: str) -> dict[str, t.Any]:
    """The attestation as a dict, or ReportError."""
    if len(text) > MAX_TEXT:
        raise ReportError(f"the attestation is larger than {MAX_TEXT} characters")
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ReportError(f"the attestation is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise ReportError("the attestation is not a JSON object")
    return data


def parse_time(value: t.Any) -> datetime.datetime | None:
    """An ISO 8601 time with a zone (``Z`` accepted), as an aware datetime; None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def count(value: t.Any) -> int | None:
    """A non-negative whole number (booleans are not counts)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def judge_suite(kind: str, suite: t.Any, expect: Expectations) -> tuple[dict[str, t.Any], list[str]]:
    """One suite's figures and problems."""
    if not isinstance(suite, dict):
        return {}, [f"suite {kind} is not an object"]
    figures: dict[str, t.Any] = {name: count(suite.get(name)) for name in COUNTS}
    figures["junit_sha256"] = suite.get("junit_sha256")
    problems = [f"suite {kind}: {name} is not a non-negative integer" for name in COUNTS if figures[name] is None]
    if problems:
        return figures, problems
    tests, skipped = figures["tests"], figures["skipped"]
    if tests < expect.min_tests:
        problems.append(f"suite {kind} ran {tests} test(s), fewer than the minimum {expect.min_tests}")
    if figures["failures"] or figures["errors"]:
        problems.append(f"suite {kind} has {figures['failures']} failure(s) and {figures['errors']} error(s)")
    if skipped > tests:
        problems.append(f"suite {kind} skipped {skipped} of {tests} test(s), more than it ran")
    elif tests and skipped / tests > expect.max_skipped_fraction:
        problems.append(f"suite {kind} skipped {skipped} of {tests} test(s), more than the allowed fraction "
                        f"{expect.max_skipped_fraction:g}")
    if not isinstance(figures["junit_sha256"], str) or not SHA256.fullmatch(figures["junit_sha256"]):
        problems.append(f"suite {kind} does not name the sha256 of the JUnit XML it came from")
    return figures, problems


def judge_origin(figures: dict[str, t.Any], expect: Expectations, now: datetime.datetime) -> list[str]:
    """The commit, the branch or tag and the age; sets figures["age_days"]."""
    problems = []
    if not isinstance(figures["commit"], str) or not COMMIT.fullmatch(figures["commit"]):
        problems.append(f"the source commit {figures['commit']!r} is not 40 hexadecimal digits")
    if not isinstance(figures["ref"], str) or not expect.ref_pattern.search(figures["ref"]):
        problems.append(f"the branch or tag {figures['ref']!r} does not match {expect.ref_pattern.pattern!r}")
    finished = parse_time(figures["finished_at"])
    figures["age_days"] = None
    if finished is None:
        return problems + [f"finished_at {figures['finished_at']!r} is not an ISO 8601 time with a zone"]
    age = (now - finished).total_seconds() / 86400
    figures["age_days"] = round(age, 3)
    if age > expect.max_age_days:
        problems.append(f"the tests finished {age:.1f} days ago, longer than the maximum {expect.max_age_days:g}")
    elif age < -1 / 24:  # more than an hour ahead: a clock or a forged time
        problems.append(f"finished_at {figures['finished_at']} is in the future")
    return problems


def judge(report: dict[str, t.Any], expect: Expectations,
          now: datetime.datetime) -> tuple[dict[str, t.Any], list[str]]:
    """Every figure of the attestation and every reason it does not clear the artifact."""
    problems: list[str] = []
    figures: dict[str, t.Any] = {key: report.get(key) for key in
                                 ("name", "version", "artifact", "artifact_sha256", "commit", "ref", "run_id",
                                  "run_url", "finished_at")}
    attested = figures["artifact_sha256"]
    if not isinstance(attested, str) or not SHA256.fullmatch(attested):
        problems.append("the attestation names no artifact sha256")
    elif attested != expect.artifact_sha256:
        problems.append(f"the attestation is for another artifact (sha256 {attested}, the installed artifact is "
                        f"{expect.artifact_sha256})")
    for key, wanted in (("name", expect.name), ("version", expect.version)):
        if wanted and figures[key] != wanted:
            problems.append(f"the attestation's {key} is {figures[key]!r}, not {wanted!r}")
    problems += judge_origin(figures, expect, now)
    suites = report.get("suites")
    figures["suites"] = {}
    if not isinstance(suites, dict):
        problems.append("the attestation lists no suites")
        suites = {}
    for kind in sorted(set(suites) | set(expect.required_suites)):
        if kind not in suites:
            problems.append(f"required suite {kind} is missing")
            continue
        suite_figures, suite_problems = judge_suite(str(kind), suites[kind], expect)
        figures["suites"][kind] = suite_figures
        # A suite that was not asked for is reported, and only its failures count against the artifact.
        problems += suite_problems if kind in expect.required_suites else \
            [problem for problem in suite_problems if "failure(s)" in problem]
    figures["totals"] = {name: sum(suite.get(name) or 0 for suite in figures["suites"].values()) for name in COUNTS}
    return figures, problems
