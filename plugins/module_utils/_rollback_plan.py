# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a rollback goes back to: the last deploy of an environment, read from its journal record.

The record is ``<journal_dir>/<environment>/last-deploy.json`` as written by the deploy_journal role: the deploy
switched from ``colour_from`` (running ``release_from``) to ``colour_to`` (running ``release_to``). Rolling back
means routing to ``colour_from`` again, which the deploy kept running. A ``switch-intent.json`` beside it (written
before a flip, removed once the switch is recorded) means a run was killed in between: like the role's ``read``, it
is then the deploy to roll back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing as t

JOURNAL_FILE = "last-deploy.json"
INTENT_FILE = "switch-intent.json"
LOCK_FILE = "deploy.lock"


class PlanError(Exception):
    """The journal cannot be used for a rollback; the message names the file and says why."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """The colour and release to go back to, and those the deploy put live."""

    record: dict[str, t.Any]
    path: str
    unfinished: bool
    colour_back: str
    release_back: str
    colour_live: str
    release_live: str


def journal_file(journal_dir: str, environment: str, name: str = JOURNAL_FILE) -> str:
    return os.path.join(journal_dir, environment, name)


def default_lock_path(journal_dir: str, environment: str) -> str:
    """Where the deploy_lock role keeps the lock by default: beside the journal."""
    return os.path.join(journal_dir, environment, LOCK_FILE)


def read_record(journal_dir: str, environment: str) -> tuple[str, dict[str, t.Any]]:
    """The path and the parsed last deploy record; PlanError when it is missing, unreadable or not a JSON object."""
    if not os.path.isdir(journal_dir):
        raise PlanError(f"journal_dir {journal_dir} is not a directory on this host (is this the load balancer "
                        "host that keeps the deploy journal?)")
    intent = journal_file(journal_dir, environment, INTENT_FILE)
    path = intent if os.path.lexists(intent) else journal_file(journal_dir, environment)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise PlanError(f"the journal has no deploy of {environment} ({path} does not exist): nothing to roll back "
                        "to") from None
    except UnicodeDecodeError:
        raise PlanError(f"journal record {path} is corrupt: it is not UTF-8 text") from None
    except OSError as exc:
        raise PlanError(f"cannot read journal record {path}: {exc.strerror or exc}") from exc
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise PlanError(f"journal record {path} is corrupt: it is not JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise PlanError(f"journal record {path} is corrupt: it holds a JSON {type(record).__name__}, not an object")
    return path, record


def plan_from(path: str, record: dict[str, t.Any], environment: str, colours: t.Sequence[str]) -> Plan:
    """Check the record describes a deploy of ``environment`` between two allowed colours, with a release before."""
    recorded_env = record.get("environment")
    if recorded_env != environment:
        raise PlanError(f"journal record {path} is for environment {recorded_env!r}, not {environment!r}: "
                        "it was copied or written by hand; refusing to act on it")
    if record.get("kind", "deploy") != "deploy":
        raise PlanError(f"journal record {path} is a {record.get('kind')!r} record, not a deploy")
    if not record.get("release_from"):
        raise PlanError(f"the last deploy of {environment} ({record.get('release_to')!r} to "
                        f"{record.get('colour_to')!r}) "
                        f"replaced no live release ({path}): nothing to roll back to")
    problems = []
    for name in ("colour_from", "colour_to"):
        if record.get(name) not in colours:
            problems.append(f"{name} {record.get(name)!r} is not one of {list(colours)}")
    for name in ("release_from", "release_to"):
        if not isinstance(record.get(name), str) or not record[name]:
            problems.append(f"{name} {record.get(name)!r} is not a release version")
    if not problems and record["colour_from"] == record["colour_to"]:
        problems.append(f"colour_from and colour_to are both {record['colour_to']!r}")
    if problems:
        raise PlanError(f"journal record {path} cannot be rolled back: {'; '.join(problems)}")
    return Plan(record=record, path=path, unfinished=os.path.basename(path) == INTENT_FILE,
                colour_back=record["colour_from"], release_back=record["release_from"],
                colour_live=record["colour_to"], release_live=record["release_to"])


def load_plan(journal_dir: str, environment: str, colours: t.Sequence[str]) -> Plan:
    path, record = read_record(journal_dir, environment)
    return plan_from(path, record, environment, colours)
