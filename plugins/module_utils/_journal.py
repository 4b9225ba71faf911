# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the deploy journal's history (one JSON record a line) and finding a release's staging evidence."""

from __future__ import annotations

import json
import time
from typing import Any

# The kinds of record that prove a release ran in an environment: a deploy that switched to it (and smoke-tested it).
EVIDENCE_KINDS = ("deploy",)


class JournalError(Exception):
    """The history could not be read; the message names the file and the line."""


def read_history(path: str) -> list[dict[str, Any]]:
    """Every record of a history file, oldest first; a missing file is an empty history."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror}") from exc
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise JournalError(f"{path} line {number} is not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise JournalError(f"{path} line {number} is not a JSON object")
        records.append(record)
    return records


def record_time(record: dict[str, Any]) -> float | None:
    """When a record was written, as epoch seconds (None when it does not say)."""
    value = record.get("recorded_epoch")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def judge(record: dict[str, Any], sha256: str, max_age: float, now: float | None = None,
          require_load_test: bool = False) -> str | None:
    """None when the record is evidence that the artifact passed in its environment, else why it is not."""
    now = time.time() if now is None else now
    version = record.get("release_to", "?")
    if record.get("release_sha256") != sha256:
        return f"{version}: another artifact (sha256 {str(record.get('release_sha256'))[:12]}...)"
    smoke = record.get("smoke")
    if not isinstance(smoke, dict) or smoke.get("passed") is not True:
        return f"{version}: recorded without a passing smoke test"
    if require_load_test:
        load = record.get("load_test")
        if not isinstance(load, dict):
            return f"{version}: recorded without a load test"
        if load.get("passed") is not True:
            failed = ", ".join(str(item) for item in load.get("failed_checks") or []) or "no verdict recorded"
            return f"{version}: its load test did not pass ({failed})"
    written = record_time(record)
    if written is None:
        return f"{version}: the record has no time"
    age = now - written
    if age > max_age:
        return f"{version}: passed {age / 86400:.1f} days ago, older than the {max_age / 86400:g} days allowed"
    if age < -300:
        return f"{version}: recorded in the future (clock skew of {-age:.0f} s)"
    return None


def find_evidence(records: list[dict[str, Any]], environment: str, sha256: str, max_age: float,
                  version: str | None = None, now: float | None = None,
                  require_load_test: bool = False) -> tuple[dict[str, Any] | None, list[str]]:
    """The newest record proving the artifact in the environment, and why each record of the same artifact (or of
    the same version) was refused."""
    refused: list[str] = []
    for record in reversed(records):
        if record.get("environment") != environment or record.get("kind") not in EVIDENCE_KINDS:
            continue
        reason = judge(record, sha256, max_age, now, require_load_test)
        if reason is None:
            return record, refused
        if record.get("release_sha256") == sha256 or (version and record.get("release_to") == version):
            refused.append(reason)
    return None, refused
