"""Unit tests of the deploy_lock module: the module runs in-process against real lock files in tmp_path."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import time
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _lease
from ansible_collections.payments.deploy.plugins.modules import deploy_lock

HOLDER = {"user": "alice", "controller": "ctl-1", "playbook": "deploy.yml", "operation": "deploy 1.1.0"}


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], check: bool = False,
        diff: bool = False) -> dict[str, t.Any]:
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        deploy_lock.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "journal" / "production" / "deploy.lock"


def lock_args(lock_path: Path, **extra: t.Any) -> dict[str, t.Any]:
    return {"path": str(lock_path), "environment": "production", **extra}


def take(capsys: pytest.CaptureFixture[str], lock_path: Path, **extra: t.Any) -> dict[str, t.Any]:
    return run(capsys, lock_args(lock_path, **{"holder": HOLDER, "phase": "preflight", **extra}))


def warnings(result: dict[str, t.Any]) -> list[str]:
    """Warning texts of a module result (ansible-core >= 2.19 wraps each one in a WarningSummary)."""
    return [w if isinstance(w, str) else w["event"]["msg"] for w in result.get("warnings", [])]


def files(directory: Path) -> list[tuple[str, bytes]]:
    return sorted((p.name, p.read_bytes()) for p in directory.iterdir()) if directory.exists() else []


def test_acquire_renew_release(lock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = take(capsys, lock_path)
    assert taken["changed"] is True and taken["acquired"] is True and taken["renewed"] is False
    assert taken["taken_over"] is None and taken["released"] is None
    token = taken["token"]
    assert len(token) == 32
    assert "token" not in taken["lock"]  # the lock as shown never carries the token
    assert taken["lock"]["holder"] == HOLDER and taken["lock"]["phase"] == "preflight"
    assert taken["expires_at"] == taken["lock"]["expires_at_iso"]
    assert 890 <= taken["seconds_left"] <= 900
    assert json.loads(lock_path.read_text())["token"] == token

    renewed = run(capsys, lock_args(lock_path, token=token, phase="migrate"))
    assert renewed["changed"] is True and renewed["renewed"] is True and renewed["acquired"] is False
    assert renewed["token"] == token
    assert json.loads(lock_path.read_text())["phase"] == "migrate"

    released = run(capsys, lock_args(lock_path, token=token, state="absent"), diff=True)
    assert released["changed"] is True
    assert released["released"]["phase"] == "migrate" and "token" not in released["released"]
    assert released["lock"] is None and released["token"] is None and released["seconds_left"] is None
    assert "user: alice" in released["diff"]["before"] and released["diff"]["after"] == ""
    assert not lock_path.exists()

    again = run(capsys, lock_args(lock_path, token=token, state="absent"))
    assert again["changed"] is False and "nothing to release" in again["msg"]


def test_refusal_names_the_holder_and_writes_nothing(lock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    take(capsys, lock_path, phase="migrate")
    before = files(lock_path.parent)
    refused = run(capsys, lock_args(lock_path, holder={"user": "bob"}, phase="preflight"))
    assert refused["failed"] is True
    for part in ("held by alice on ctl-1 (deploy.yml, deploy 1.1.0)", "phase 'migrate'", "left (until",
                 "ansible-playbook payments.deploy.unlock -e deploy_environment=production -e 'reason=\"...\"'",
                 "expires by itself at " + refused["expires_at"]):
        assert part in refused["msg"]
    assert refused["lock"]["holder"] == HOLDER and "token" not in refused["lock"]
    assert refused["seconds_left"] > 0
    assert files(lock_path.parent) == before


def test_expired_lock_is_taken_over_and_its_run_loses_it(lock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = _lease.acquire(str(lock_path), environment="production", holder=HOLDER, lease_seconds=60,
                           now=lambda: time.time() - 3600)
    taken = run(capsys, lock_args(lock_path, holder={"user": "bob"}))
    assert taken["acquired"] is True and taken["changed"] is True
    assert taken["taken_over"]["holder"] == HOLDER and "token" not in taken["taken_over"]
    assert any("took over the expired lock of alice on ctl-1" in w for w in warnings(taken))
    assert taken["token"] != stale.lock["token"]

    lost = run(capsys, lock_args(lock_path, token=stale.lock["token"], phase="switch"))
    assert lost["failed"] is True
    assert lost["msg"].startswith("this run lost the deploy lock of production")
    assert "now held by bob" in lost["msg"]
    assert json.loads(lock_path.read_text())["token"] == taken["token"]


def test_expiry_with_a_short_lease(lock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    take(capsys, lock_path, lease_seconds=1)
    time.sleep(1.1)
    taken = run(capsys, lock_args(lock_path, holder={"user": "bob"}))
    assert taken["acquired"] is True and taken["taken_over"]["holder"] == HOLDER


def test_a_failed_run_never_releases_another_runs_lock(lock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    take(capsys, lock_path)
    before = files(lock_path.parent)
    for extra in ({}, {"token": "0" * 32}):
        result = run(capsys, lock_args(lock_path, state="absent", **extra))
        assert result["changed"] is False and "failed" not in result
        assert "left in place" in result["msg"]
        assert result["lock"]["holder"] == HOLDER
    assert files(lock_path.parent) == before


def test_force_release_needs_a_reason(lock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    take(capsys, lock_path)
    before = files(lock_path.parent)
    for reason in (None, "", "   "):
        refused = run(capsys, lock_args(lock_path, state="absent", force=True, reason=reason))
        assert refused["failed"] is True and "non-empty reason" in refused["msg"]
    assert files(lock_path.parent) == before

    forced = run(capsys, lock_args(lock_path, state="absent", force=True, reason="controller died mid-deploy"))
    assert forced["changed"] is True
    assert forced["released"]["holder"] == HOLDER
    assert forced["reason"] == "controller died mid-deploy"
    assert not lock_path.exists()


def test_check_mode_writes_nothing(lock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checked = run(capsys, lock_args(lock_path, holder=HOLDER), check=True, diff=True)
    assert checked["changed"] is True and checked["acquired"] is True and checked["token"] is None
    assert "user: alice" in checked["diff"]["after"] and checked["diff"]["before"] == ""
    assert not lock_path.parent.exists()

    token = take(capsys, lock_path)["token"]
    before = files(lock_path.parent)
    assert run(capsys, lock_args(lock_path, token=token, phase="x"), check=True)["renewed"] is True
    assert run(capsys, lock_args(lock_path, token=token, state="absent"), check=True)["changed"] is True
    assert run(capsys, lock_args(lock_path, state="absent", force=True, reason="r"), check=True)["changed"] is True
    assert run(capsys, lock_args(lock_path, holder={"user": "bob"}), check=True)["failed"] is True
    assert files(lock_path.parent) == before


def test_corrupt_lock_file_fails_and_is_kept(lock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock_path.parent.mkdir(parents=True)
    lock_path.write_text('{"token": "truncated')
    for args in (lock_args(lock_path), lock_args(lock_path, state="absent", token="a" * 32)):
        result = run(capsys, args)
        assert result["failed"] is True
        assert f"deploy lock file {lock_path} is corrupt: it is not JSON" in result["msg"]
        assert "release it by force" in result["msg"]
    assert lock_path.read_text() == '{"token": "truncated'
    forced = run(capsys, lock_args(lock_path, state="absent", force=True, reason="corrupt after a full disk"))
    assert forced["changed"] is True and "not JSON" in forced["released"]["corrupt"]
    assert not lock_path.exists()


@pytest.mark.parametrize(("args", "problem"), [
    ({"lease_seconds": 0}, "lease_seconds must be between 1 and 86400"),
    ({"lease_seconds": 86401}, "lease_seconds must be between 1 and 86400"),
    ({"environment": "prod uction"}, "must be a plain name"),
    ({"token": "not-hex"}, "token must be the 32 lowercase hex digits"),
    ({"force": True, "reason": "x"}, "force only applies to state=absent"),
    ({"path": "relative/deploy.lock"}, "must be absolute"),
    ({"holder": {"user": ["a", "b"]}}, "holder values must be plain strings"),
])
def test_bad_inputs_fail_before_anything_is_touched(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    args: dict[str, t.Any], problem: str) -> None:
    lock_path = tmp_path / "production" / "deploy.lock"
    result = run(capsys, {**lock_args(lock_path), **args})
    assert result["failed"] is True and problem in result["msg"]
    assert list(tmp_path.iterdir()) == []


def _module_race(path: str, user: str, start: t.Any, results: t.Any) -> None:
    start.wait()
    out = io.StringIO()
    with patch_module_args({"path": path, "environment": "production", "holder": {"user": user}}), \
            contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        deploy_lock.main()
    results.put(json.loads(out.getvalue()))


def test_processes_running_the_module_at_once_exactly_one_acquires(lock_path: Path) -> None:
    racers = 8
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(racers), context.Queue()
    processes = [context.Process(target=_module_race, args=(str(lock_path), f"user{i}", start, results))
                 for i in range(racers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _unused in processes]
    for process in processes:
        process.join(timeout=60)
    winners = [o for o in outcomes if o.get("acquired")]
    losers = [o for o in outcomes if o.get("failed")]
    assert len(winners) == 1 and len(losers) == racers - 1
    winner = winners[0]["lock"]["holder"]["user"]
    assert all(f"held by {winner}" in o["msg"] for o in losers)
    assert json.loads(lock_path.read_text())["token"] == winners[0]["token"]
