# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""How healthy the backups of a database are: the newest verified logical backup of a store, the newest pgBackRest
backup of a stanza, and the last disaster-recovery drill recorded in the deploy journal.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import typing as t

from ansible_collections.payments.deploy.plugins.module_utils import _backup_store as store_lib
from ansible_collections.payments.deploy.plugins.module_utils import _crypto as crypto
from ansible_collections.payments.deploy.plugins.module_utils import _journal as journal

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*\Z")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DRILL_KIND = "drill"


def parse_duration(value: t.Any, label: str) -> float:
    """Seconds of ``90``, ``30m``, ``26h``, ``35d`` or ``2w``; ValueError naming ``label`` otherwise."""
    match = DURATION.match(str(value)) if not isinstance(value, bool) else None
    if not match:
        raise ValueError(f"{label}: {str(value)[:40]!r} is not a duration (seconds, or a number with s, m, h, d or w)")
    seconds = float(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"{label} must be above 0")
    return seconds


def epoch_of(stamp: str) -> float:
    """Epoch seconds of a manifest time (``2026-01-01T02:00:00.120000Z``, or without fractions)."""
    text = stamp.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def human_age(seconds: float) -> str:
    """``3 h 12 min`` / ``2.5 days``: an age as a person reads it."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    return f"{seconds:.0f} s"


def object_size(store: store_lib.Store, name: str) -> int | None:
    """Bytes of a stored file, None when it is not there."""
    if isinstance(store, store_lib.LocalStore):
        try:
            return os.path.getsize(store.location(name))
        except OSError:
            return None
    if not store.exists(name):
        return None
    head = store.client.head_object(Bucket=store.bucket, Key=store.key(name))  # type: ignore[attr-defined]
    return int(head["ContentLength"])


def object_sha256(store: store_lib.Store, name: str) -> str:
    digest = hashlib.sha256()
    for block in store.read(name):
        digest.update(block)
    return digest.hexdigest()


def unverified_reason(store: store_lib.Store, manifest: dict[str, t.Any], key: bytes, checksum: bool) -> str | None:
    """None when the backup is usable: its manifest authenticates with the key and its object has the recorded size
    (and sha256, with ``checksum``); else why not."""
    if not isinstance(manifest.get("mac"), str):
        return "its manifest carries no MAC"
    if not crypto.manifest_authentic(key, manifest):
        return "its manifest does not authenticate with the key (modified, or made under another key)"
    name = store_lib.object_name(manifest["backup_id"])
    size = object_size(store, name)
    if size is None:
        return f"its object {store.location(name)} is missing"
    recorded = (manifest.get("sizes") or {}).get("stored_bytes")
    if recorded != size:
        return f"its object is {size} bytes, the manifest records {recorded}"
    if checksum and object_sha256(store, name) != manifest["sha256"]:
        return "its object's sha256 is not the one the manifest records"
    return None


def describe_logical(store: store_lib.Store, manifest: dict[str, t.Any], now: float) -> dict[str, t.Any]:
    created = epoch_of(manifest["created_at"])
    return {
        "backup_id": manifest["backup_id"], "database": manifest["database"], "created_at": manifest["created_at"],
        "created_epoch": round(created, 3), "age_seconds": round(now - created, 1),
        "size": (manifest.get("sizes") or {}).get("stored_bytes"), "sha256": manifest["sha256"],
        "location": store.location(store_lib.object_name(manifest["backup_id"])),
        "migration_head": manifest.get("migration_head"), "row_counts": manifest.get("row_counts"),
    }


def newest_logical(stores: t.Sequence[store_lib.Store], database: str, key: bytes, checksum: bool,
                   now: float) -> tuple[dict[str, t.Any] | None, list[dict[str, str]], int]:
    """The newest verified backup over the stores (newest first by ``created_at``; the first that verifies wins), the
    newer ones skipped with their reason, and how many manifests there were."""
    candidates = []
    for store in stores:
        candidates.extend((manifest, store) for manifest in store.manifests(database))
    candidates.sort(key=lambda pair: (pair[0]["created_at"], pair[0]["backup_id"]), reverse=True)
    skipped = []
    for manifest, store in candidates:
        try:
            created_ok = bool(epoch_of(manifest["created_at"]))
        except ValueError:
            created_ok = False
        reason = unverified_reason(store, manifest, key, checksum) if created_ok else "its created_at is not a time"
        if reason is None:
            return describe_logical(store, manifest, now), skipped, len(candidates)
        skipped.append({"backup_id": manifest["backup_id"], "location": store.describe(), "reason": reason})
    return None, skipped, len(candidates)


def newest_pgbackrest(stanza: t.Mapping[str, t.Any], now: float) -> dict[str, t.Any] | None:
    """The newest backup of a stanza's ``pgbackrest info`` entry without an error, or None."""
    good = [b for b in stanza.get("backup", []) if not b.get("error")]
    if not good:
        return None
    newest = max(good, key=lambda b: float(b["timestamp"]["stop"]))
    stop = float(newest["timestamp"]["stop"])
    info = newest.get("info") or {}
    return {
        "label": newest.get("label"), "type": newest.get("type"), "stop_epoch": stop,
        "stop_time": datetime.datetime.fromtimestamp(stop, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "age_seconds": round(now - stop, 1), "size": info.get("size"),
        "repo_size": (info.get("repository") or {}).get("size"), "repo": (newest.get("database") or {}).get("repo-key"),
        "archive_stop": (newest.get("archive") or {}).get("stop"),
    }


def last_drill(journal_dir: str, environment: str, now: float) -> dict[str, t.Any] | None:
    """The newest drill record of the environment's journal history, with its age; None when none was recorded."""
    records = journal.read_history(os.path.join(journal_dir, environment, "history.jsonl"))
    for record in reversed(records):
        if record.get("kind") == DRILL_KIND and record.get("environment") == environment:
            written = journal.record_time(record)
            return {**record, "age_seconds": round(now - written, 1) if written is not None else None}
    return None


def stale_message(what: str, found: dict[str, t.Any] | None, limit: float, limit_text: str) -> str | None:
    """Why ``found`` (with its ``age_seconds``) fails the age limit, or None when it passes."""
    if found is None:
        return f"no {what} found: the newest may be at most {limit_text} old"
    age = found.get("age_seconds")
    if age is None or age > limit:
        shown = "of unknown age" if age is None else f"{human_age(age)} ({age:.0f} s) old"
        return f"the newest {what} is {shown}, older than the {limit_text} ({limit:.0f} s) allowed"
    return None
