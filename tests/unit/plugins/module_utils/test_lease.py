"""Unit tests of the deploy lock's lease file (real files in tmp_path, an injected clock, real processes racing)."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import typing as t
from pathlib import Path

import pytest

from ansible_collections.payments.deploy.plugins.module_utils import _lease
from ansible_collections.payments.deploy.plugins.module_utils._lease import LeaseError, LockHeld, LockLost

HOLDER = {"user": "alice", "controller": "ctl-1", "playbook": "deploy.yml", "operation": "deploy 1.1.0"}
T0 = 1_767_261_600.0  # 2026-01-01T10:00:00Z


class Clock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def take(path: Path, clock: Clock, **extra: t.Any) -> _lease.Outcome:
    args: dict[str, t.Any] = {"environment": "production", "holder": HOLDER, "lease_seconds": 900, "phase": "preflight",
                              "now": clock}
    return _lease.acquire(str(path), **{**args, **extra})


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "journal" / "production" / "deploy.lock"


def test_acquire_writes_a_lock_file(lock_path: Path) -> None:
    outcome = take(lock_path, Clock())
    assert outcome.changed and outcome.acquired and not outcome.renewed and outcome.taken_over is None
    on_disk = json.loads(lock_path.read_text())
    assert on_disk == outcome.lock
    assert len(on_disk["token"]) == 32 and int(on_disk["token"], 16) >= 0
    assert on_disk["holder"] == HOLDER
    assert on_disk["phase"] == "preflight"
    assert on_disk["acquired_at"] == on_disk["renewed_at"] == T0
    assert on_disk["expires_at"] == T0 + 900
    assert on_disk["acquired_at_iso"] == "2026-01-01T10:00:00Z"
    assert on_disk["expires_at_iso"] == "2026-01-01T10:15:00Z"
    assert stat.S_IMODE(lock_path.stat().st_mode) == 0o640
    assert stat.S_IMODE(lock_path.parent.stat().st_mode) == 0o750
    assert sorted(p.name for p in lock_path.parent.iterdir()) == ["deploy.lock", "deploy.lock.guard"]


def test_second_acquire_is_refused_naming_the_holder(lock_path: Path) -> None:
    clock = Clock()
    take(lock_path, clock, phase="migrate")
    before = lock_path.read_bytes()
    clock.now += 125
    with pytest.raises(LockHeld) as refused:
        take(lock_path, clock, holder={"user": "bob"})
    msg = str(refused.value)
    for part in ("alice on ctl-1", "deploy.yml", "deploy 1.1.0", "since 2026-01-01T10:00:00Z", "phase 'migrate'",
                 "lease 12m55s left", "ansible-playbook payments.deploy.unlock -e deploy_environment=production",
                 "playbooks/unlock.yml", "expires by itself at 2026-01-01T10:15:00Z"):
        assert part in msg
    assert refused.value.lock["holder"] == HOLDER
    assert lock_path.read_bytes() == before


def test_renew_extends_the_lease_and_records_the_phase(lock_path: Path) -> None:
    clock = Clock()
    token = take(lock_path, clock).lock["token"]
    clock.now += 600
    outcome = take(lock_path, clock, token=token, phase="switch", holder={"user": "someone else"}, lease_seconds=300)
    assert outcome.renewed and not outcome.acquired and outcome.changed
    on_disk = json.loads(lock_path.read_text())
    assert on_disk["token"] == token
    assert on_disk["holder"] == HOLDER  # the holder that took it
    assert on_disk["phase"] == "switch"
    assert on_disk["acquired_at"] == T0
    assert on_disk["renewed_at"] == T0 + 600
    assert on_disk["expires_at"] == T0 + 900
    assert on_disk["lease_seconds"] == 300
    # a renewal without a phase keeps the last one
    take(lock_path, clock, token=token, phase=None)
    assert json.loads(lock_path.read_text())["phase"] == "switch"


def test_expired_lock_is_taken_over(lock_path: Path) -> None:
    clock = Clock()
    old_token = take(lock_path, clock, lease_seconds=60).lock["token"]
    clock.now += 61
    outcome = take(lock_path, clock, holder={"user": "bob"})
    assert outcome.acquired and outcome.taken_over is not None
    assert outcome.taken_over["token"] == old_token
    assert "took over the expired lock of alice on ctl-1" in outcome.msg
    assert outcome.lock["token"] != old_token
    assert json.loads(lock_path.read_text())["holder"] == {"user": "bob"}
    # the dead run, come back to life, has lost it
    with pytest.raises(LockLost) as lost:
        take(lock_path, clock, token=old_token)
    assert "this run lost the deploy lock of production" in str(lost.value)
    assert "now held by bob" in str(lost.value)


def test_expired_lock_still_renews_when_nobody_took_it(lock_path: Path) -> None:
    clock = Clock()
    token = take(lock_path, clock, lease_seconds=60).lock["token"]
    clock.now += 3600
    assert take(lock_path, clock, token=token).renewed


def test_renew_after_a_forced_release_is_lost(lock_path: Path) -> None:
    clock = Clock()
    token = take(lock_path, clock).lock["token"]
    _lease.release(str(lock_path), environment="production", force=True, reason="dead run", now=clock)
    with pytest.raises(LockLost) as lost:
        take(lock_path, clock, token=token)
    assert "is gone" in str(lost.value)
    assert not lock_path.exists()


def test_release_needs_the_holders_token(lock_path: Path) -> None:
    clock = Clock()
    token = take(lock_path, clock).lock["token"]
    before = lock_path.read_bytes()
    for other in (None, "0" * 32):
        outcome = _lease.release(str(lock_path), environment="production", token=other, now=clock)
        assert not outcome.changed and outcome.released is None
        assert "left in place" in outcome.msg
        assert lock_path.read_bytes() == before
    outcome = _lease.release(str(lock_path), environment="production", token=token, now=clock)
    assert outcome.changed and outcome.released is not None and outcome.released["token"] == token
    assert not lock_path.exists()
    again = _lease.release(str(lock_path), environment="production", token=token, now=clock)
    assert not again.changed and "nothing to release" in again.msg


def test_force_release_removes_whoever_holds_it(lock_path: Path) -> None:
    clock = Clock()
    take(lock_path, clock)
    outcome = _lease.release(str(lock_path), environment="production", force=True, reason="controller died", now=clock)
    assert outcome.changed and outcome.released["holder"] == HOLDER
    assert "reason: controller died" in outcome.msg
    assert not lock_path.exists()


@pytest.mark.parametrize(("content", "problem"), [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "JSON list, not an object"),
    (b'{"token": "xyz", "acquired_at": 1, "renewed_at": 1, "expires_at": 1}', "token is missing or not 32 hex digits"),
    (json.dumps({"token": "a" * 32, "acquired_at": 1, "renewed_at": 1, "expires_at": "soon"}).encode(),
     "expires_at is missing"),
])
def test_corrupt_lock_is_never_overwritten(lock_path: Path, content: bytes, problem: str) -> None:
    lock_path.parent.mkdir(parents=True)
    lock_path.write_bytes(content)
    with pytest.raises(LeaseError, match=problem):
        take(lock_path, Clock())
    with pytest.raises(LeaseError, match=str(lock_path)):
        _lease.release(str(lock_path), environment="production", token="a" * 32)
    assert lock_path.read_bytes() == content
    outcome = _lease.release(str(lock_path), environment="production", force=True, reason="corrupt")
    assert outcome.changed and problem in outcome.released["corrupt"]
    assert not lock_path.exists()


def test_unreadable_lock_names_the_file(lock_path: Path) -> None:
    lock_path.mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(LeaseError, match=f"cannot read deploy lock file {lock_path}"):
        take(lock_path, Clock())


def test_check_mode_creates_nothing(tmp_path: Path) -> None:
    lock_path = tmp_path / "missing" / "deploy.lock"
    outcome = take(lock_path, Clock(), check=True)
    assert outcome.acquired and outcome.changed and outcome.lock["token"] is None
    assert list(tmp_path.iterdir()) == []
    real = take(lock_path, Clock())
    before = sorted((p.name, p.read_bytes()) for p in lock_path.parent.iterdir())
    assert _lease.release(str(lock_path), environment="production", token=real.lock["token"], check=True).changed
    assert take(lock_path, Clock(), token=real.lock["token"], check=True).renewed
    assert sorted((p.name, p.read_bytes()) for p in lock_path.parent.iterdir()) == before


def test_input_problems_are_all_reported() -> None:
    assert _lease.input_problems("production", "present", 900, None, False, None, HOLDER) == []
    problems = _lease.input_problems("prod/../etc", "present", 0, "NOTHEX", True, "  ", {"user": ["a"]})
    assert len(problems) == 6
    assert any("plain name" in p for p in problems)
    assert any("lease_seconds must be between 1 and 86400" in p for p in problems)
    assert any("token must be the 32 lowercase hex digits" in p for p in problems)
    assert any("force only applies to state=absent" in p for p in problems)
    assert any("non-empty reason" in p for p in problems)
    assert any("holder values must be plain strings" in p for p in problems)
    assert _lease.input_problems("staging", "present", 86401, None, False, None, {})[0].startswith("lease_seconds")


def test_duration_and_holder_text() -> None:
    assert [_lease.duration(s) for s in (9, 845, 3720, -5)] == ["9s", "14m05s", "1h02m", "0s"]
    assert _lease.holder_text({"holder": {}}) == "an unknown user"
    with_job = {"holder": {**HOLDER, "job": "42"}}
    assert _lease.holder_text(with_job) == "alice on ctl-1 (deploy.yml, deploy 1.1.0, job=42)"


def _race(path: str, start: t.Any, results: t.Any) -> None:
    start.wait()
    try:
        outcome = _lease.acquire(path, environment="production", holder={"user": f"pid-{os.getpid()}"},
                                 lease_seconds=900)
        results.put(("acquired", outcome.lock["token"]))
    except LockHeld:
        results.put(("refused", None))


def test_processes_racing_for_the_lock_exactly_one_wins(lock_path: Path) -> None:
    racers = 8
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(racers), context.Queue()
    processes = [context.Process(target=_race, args=(str(lock_path), start, results)) for _unused in range(racers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _unused in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    winners = [token for kind, token in outcomes if kind == "acquired"]
    assert len(winners) == 1
    assert [outcome[0] for outcome in outcomes].count("refused") == racers - 1
    assert json.loads(lock_path.read_text())["token"] == winners[0]
