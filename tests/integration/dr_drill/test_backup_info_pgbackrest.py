"""payments.deploy.backup_info with a stanza, against a real archiving PostgreSQL 15 cluster and a real encrypted
pgBackRest repository: the newest backup with its type, stop time, age and sizes as pgbackrest info records them;
max_age against it (and a stanza without a backup); a wrong cipher pass. (The last drill read back from the journal
after a real pgBackRest drill: test_dr_drill_pgbackrest.py, on the drill it runs.)"""

from __future__ import annotations

import time
import typing as t
from pathlib import Path

from drill_world import backup_info
from pgbackrest_drill_world import EMPTY_STANZA, StanzaWorld, stanza_world, wait_until  # noqa: F401  pylint: disable=unused-import


def stanza_args(world: StanzaWorld, **extra: t.Any) -> dict[str, t.Any]:
    return world.repo.module_args(**extra)


def test_the_newest_pgbackrest_backup_is_reported_with_its_age_and_size(collections_dir: Path, stanza_world: StanzaWorld) -> None:  # noqa: F811
    world = stanza_world
    world.write_payment(501)
    taken = world.backup("incr")
    asked = time.time()
    result = backup_info(collections_dir, stanza_args(world))
    answered = time.time()
    assert result.get("failed") is not True, result
    newest = result["pgbackrest"]
    recorded = world.repo.backups()
    assert recorded[-1]["label"] == taken["label"] and len(recorded) >= 2
    assert newest["label"] == taken["label"] and newest["type"] == "incr"
    assert newest["stop_epoch"] == float(taken["timestamp"]["stop"])
    assert newest["stop_time"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(taken["timestamp"]["stop"]))
    # the age is taken between the call and its answer (rounded to 0.1 s)
    assert asked - taken["timestamp"]["stop"] - 0.1 <= newest["age_seconds"] <= answered - taken["timestamp"]["stop"] + 0.1
    assert newest["size"] == taken["info"]["size"] > 0
    assert newest["repo_size"] == taken["info"]["repository"]["size"] > 0
    assert newest["archive_stop"] == taken["archive"]["stop"]
    assert result["backup"] is None and result["drill"] is None and result["stale"] == []
    assert result["commands"] and all(world.repo.cipher_pass not in str(command) for command in result["commands"])


def test_a_pgbackrest_backup_older_than_max_age_fails_and_a_stanza_without_one_too(
        collections_dir: Path, stanza_world: StanzaWorld) -> None:  # noqa: F811
    world = stanza_world
    newest = world.repo.backups()[-1]
    assert wait_until(lambda: time.time() - newest["timestamp"]["stop"] > 2)
    stale = backup_info(collections_dir, stanza_args(world, max_age="2s"))
    assert stale.get("failed") is True, stale
    age = stale["pgbackrest"]["age_seconds"]
    assert stale["msg"] == f"the newest pgBackRest backup of stanza {world.repo.stanza} is {age:.0f} s ({age:.0f} s) old, older than the 2s (2 s) allowed"
    assert stale["pgbackrest"]["label"] == newest["label"]
    reported = backup_info(collections_dir, stanza_args(world, max_age="2s", fail_on_stale=False))
    assert reported.get("failed") is not True, reported
    assert [message.split(" is ")[0] for message in reported["stale"]] == [f"the newest pgBackRest backup of stanza {world.repo.stanza}"]
    fresh = backup_info(collections_dir, stanza_args(world, max_age="1h"))
    assert fresh.get("failed") is not True and fresh["stale"] == [], fresh
    empty = backup_info(collections_dir, stanza_args(world, stanza=EMPTY_STANZA))
    assert empty.get("failed") is not True and empty["pgbackrest"] is None, empty
    empty_stale = backup_info(collections_dir, stanza_args(world, stanza=EMPTY_STANZA, max_age="26h"))
    assert empty_stale.get("failed") is True and f"no pgBackRest backup of stanza {EMPTY_STANZA} found" in empty_stale["msg"]


def test_a_wrong_cipher_pass_fails_naming_the_repository(collections_dir: Path, stanza_world: StanzaWorld) -> None:  # noqa: F811
    world = stanza_world
    args = stanza_args(world, cipher_pass="wrong-" + world.repo.cipher_pass)
    result = backup_info(collections_dir, args)
    assert result.get("failed") is True
    assert f"the repository of stanza '{world.repo.stanza}' cannot be read (a wrong cipher pass?)" in result["msg"], result["msg"]
    assert world.repo.cipher_pass not in str(result) and result["pgbackrest"] is None
