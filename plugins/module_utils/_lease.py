# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy lock: a lease with an expiry kept in a JSON file, changed only under an flock on a side file.

Every read-check-write happens while holding ``fcntl.flock`` on ``<lock>.guard``; the lock file itself is replaced
by rename (see ``_files.write_text_atomic``), so a reader outside the guard sees the old or the new lock, never a mix.
The guard file is never removed: unlinking a file other processes may be waiting to flock would let two of them
lock two different files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import re
import secrets
import time
import typing as t

from ansible_collections.payments.deploy.plugins.module_utils._files import fsync_dir, write_text_atomic

LOCK_FORMAT = 1
LOCK_MODE = 0o640
DIRECTORY_MODE = 0o750
MAX_LEASE_SECONDS = 86400
# The guard is held for a read and a write only (milliseconds); waiting longer means something is stuck.
GUARD_TIMEOUT = 10.0
# An environment names directories and appears in every message: one short word.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOKEN_PATTERN = re.compile(r"[0-9a-f]{32}")
TIMESTAMPS = ("acquired_at", "renewed_at", "expires_at")
HOLDER_ORDER = ("user", "controller", "playbook", "operation")

Lock = dict[str, t.Any]


class LeaseError(Exception):
    """The lock file cannot be read, is corrupt, or cannot be changed; the message names the file and the problem."""


class LockHeld(Exception):
    """Another run holds an unexpired lease."""

    def __init__(self, msg: str, lock: Lock) -> None:
        super().__init__(msg)
        self.lock = lock


class LockLost(Exception):
    """A renewal's token no longer holds the lock: the run must stop."""

    def __init__(self, msg: str, lock: Lock | None) -> None:
        super().__init__(msg)
        self.lock = lock


@dataclasses.dataclass
class Outcome:
    """What acquire or release did; ``lock`` is the lock as it now is (in check mode: would be), token included."""

    msg: str
    lock: Lock | None
    before: Lock | None
    changed: bool = False
    acquired: bool = False
    renewed: bool = False
    released: Lock | None = None
    taken_over: Lock | None = None


# --- inputs and text ------------------------------------------------------------------------------------


def input_problems(environment: str, state: str, lease_seconds: int, token: str | None, force: bool,
                   reason: str | None, holder: dict[str, t.Any]) -> list[str]:
    """Every problem with the module's inputs, before anything is read or written."""
    problems = []
    if not NAME_PATTERN.fullmatch(environment):
        problems.append(f"environment {environment!r} must be a plain name of 1 to 64 letters, digits, '_' and '-'")
    if not 0 < lease_seconds <= MAX_LEASE_SECONDS:
        problems.append(f"lease_seconds must be between 1 and {MAX_LEASE_SECONDS} (24 hours), not {lease_seconds}")
    if token is not None and not TOKEN_PATTERN.fullmatch(token):
        problems.append("token must be the 32 lowercase hex digits this module returned when it acquired the lock")
    if force and state != "absent":
        problems.append("force only applies to state=absent (releasing somebody else's lock)")
    if force and not (reason or "").strip():
        problems.append("force=true needs a non-empty reason: it is recorded and shown to whoever held the lock")
    bad = sorted(str(k) for k, v in holder.items() if isinstance(v, (dict, list)))
    if bad:
        problems.append(f"holder values must be plain strings, not lists or dicts (keys: {', '.join(bad)})")
    return problems


def clean_holder(holder: dict[str, t.Any]) -> dict[str, str]:
    """The holder as strings, empty values dropped."""
    return {str(k): str(v) for k, v in holder.items() if v is not None and str(v) != ""}


def iso(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def duration(seconds: float) -> str:
    """``1h02m``, ``14m05s``, ``9s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def unlock_command(environment: str) -> str:
    # the reason quoted inside the argument: -e reason="a b" would reach Ansible as reason=a (b dropped)
    return (f"ansible-playbook payments.deploy.unlock -e deploy_environment={environment} -e 'reason=\"...\"' "
            "(or playbooks/unlock.yml from a checkout)")


def holder_text(lock: Lock) -> str:
    """``alice on ctl-1 (deploy.yml, deploy 1.1.0, job=42)``."""
    holder = lock.get("holder") or {}
    text = holder.get("user") or "an unknown user"
    if holder.get("controller"):
        text += f" on {holder['controller']}"
    what = [holder[k] for k in ("playbook", "operation") if holder.get(k)]
    what += [f"{k}={v}" for k, v in sorted(holder.items()) if k not in HOLDER_ORDER]
    return text + (f" ({', '.join(what)})" if what else "")


def describe(lock: Lock, now: float) -> str:
    """Who holds the lock, since when, doing what, and how long its lease still runs."""
    text = f"{holder_text(lock)}, since {iso(lock['acquired_at'])}"
    if lock.get("phase"):
        text += f", now in phase '{lock['phase']}'"
    left = lock["expires_at"] - now
    if left > 0:
        return text + f", lease {duration(left)} left (until {iso(lock['expires_at'])})"
    return text + f", lease ran out at {iso(lock['expires_at'])}"


def public(lock: Lock | None) -> Lock | None:
    """The lock without its token: what may be shown to a run that does not hold it."""
    if lock is None:
        return None
    return {k: v for k, v in lock.items() if k != "token"}


def seconds_left(lock: Lock | None, now: float) -> int | None:
    if lock is None or "expires_at" not in lock:
        return None
    return max(0, int(lock["expires_at"] - now))


# --- the file -------------------------------------------------------------------------------------------


def lock_problem(lock: t.Any) -> str | None:
    """What makes a parsed lock file unusable, or None."""
    if not isinstance(lock, dict):
        return f"it holds a JSON {type(lock).__name__}, not an object"
    if not isinstance(lock.get("token"), str) or not TOKEN_PATTERN.fullmatch(lock["token"]):
        return "its token is missing or not 32 hex digits"
    for name in TIMESTAMPS:
        value = lock.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} is missing or not a number"
    if not isinstance(lock.get("holder", {}), dict):
        return "holder is not an object"
    return None


def read_lock(path: str) -> Lock | None:
    """The lock in ``path``; None when there is none. Raises LeaseError when it cannot be read or makes no sense."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise LeaseError(f"deploy lock file {path} is corrupt: it is not UTF-8 text") from None
    except OSError as exc:
        raise LeaseError(f"cannot read deploy lock file {path}: {exc.strerror}") from exc
    try:
        lock = json.loads(text)
    except ValueError as exc:
        raise LeaseError(f"deploy lock file {path} is corrupt: it is not JSON ({exc})") from exc
    problem = lock_problem(lock)
    if problem:
        raise LeaseError(f"deploy lock file {path} is corrupt: {problem}")
    return lock


def write_lock(path: str, lock: Lock) -> None:
    try:
        write_text_atomic(path, json.dumps(lock, indent=2, sort_keys=True) + "\n", mode=LOCK_MODE)
    except OSError as exc:
        raise LeaseError(f"cannot write deploy lock file {path}: {exc.strerror or exc}") from exc


def remove_lock(path: str) -> None:
    try:
        os.unlink(path)
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as exc:
        raise LeaseError(f"cannot remove deploy lock file {path}: {exc.strerror or exc}") from exc


def ensure_directory(directory: str) -> None:
    if os.path.isdir(directory):
        return
    try:
        os.makedirs(directory, mode=DIRECTORY_MODE, exist_ok=True)
        os.chmod(directory, DIRECTORY_MODE)  # makedirs' mode is reduced by the umask
    except OSError as exc:
        raise LeaseError(f"cannot create the deploy lock directory {directory}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def guarded(path: str, timeout: float = GUARD_TIMEOUT) -> t.Iterator[None]:
    """Hold an exclusive flock on ``<path>.guard`` (created 0640, with its directory 0750, when missing)."""
    ensure_directory(os.path.dirname(os.path.abspath(path)))
    guard = f"{path}.guard"
    try:
        fd = os.open(guard, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_MODE)
    except OSError as exc:
        raise LeaseError(f"cannot open the deploy lock guard {guard}: {exc.strerror}") from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LeaseError(f"another process has held {guard} for more than {timeout:g}s; "
                                     "it should take milliseconds: look for a stuck process on this host") from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # releases the flock


@contextlib.contextmanager
def _unguarded() -> t.Iterator[None]:
    # check mode creates nothing, not even the guard; the rename makes an unguarded read consistent
    yield


# --- acquire, renew, release ----------------------------------------------------------------------------


def _stamp(lock: Lock, name: str, epoch: float) -> None:
    lock[name] = epoch
    lock[f"{name}_iso"] = iso(epoch)


def acquire(path: str, *, environment: str, holder: dict[str, str], lease_seconds: int, phase: str | None = None,
            token: str | None = None, check: bool = False, now: t.Callable[[], float] = time.time) -> Outcome:
    """Take the lock (none, or an expired one), or renew it with ``token``.

    Raises LockHeld when another run holds an unexpired lease, LockLost when ``token`` no longer holds the lock,
    LeaseError when the file is unreadable or corrupt. In check mode nothing is created or written and a fresh
    lock has no token.
    """
    with _unguarded() if check else guarded(path):
        current = read_lock(path)
        stamp = now()  # read inside the guard: waiting for it takes time
        if token is not None:
            if current is None:
                raise LockLost(f"this run lost the deploy lock of {environment}: {path} is gone (it was released by "
                               "force). Stop here: going on would run unprotected.", None)
            if current["token"] != token:
                raise LockLost(f"this run lost the deploy lock of {environment}: its lease ran out or it was released "
                               f"by force, and it is now held by {describe(current, stamp)}. Stop here: going on would "
                               "run unprotected.", current)
            lock = dict(current, lease_seconds=lease_seconds)
            if phase is not None:
                lock["phase"] = phase
            _stamp(lock, "renewed_at", stamp)
            _stamp(lock, "expires_at", stamp + lease_seconds)
            outcome = Outcome(msg=f"renewed the deploy lock of {environment} until {iso(lock['expires_at'])}",
                              lock=lock, before=current, changed=True, renewed=True)
        elif current is not None and current["expires_at"] > stamp:
            raise LockHeld(
                f"the deploy lock of {environment} is held by {describe(current, stamp)}. Only one deploy or rollback "
                f"may run per environment at a time: wait for that run to finish. If it is dead, release its lock: "
                f"{unlock_command(environment)}; a dead run's lock also expires by itself at "
                f"{iso(current['expires_at'])}.",
                current)
        else:
            lock = {"format": LOCK_FORMAT, "environment": environment, "holder": holder, "phase": phase,
                    "lease_seconds": lease_seconds, "token": None if check else secrets.token_hex(16)}
            for name in ("acquired_at", "renewed_at"):
                _stamp(lock, name, stamp)
            _stamp(lock, "expires_at", stamp + lease_seconds)
            msg = f"acquired the deploy lock of {environment} until {iso(lock['expires_at'])}"
            if current is not None:
                msg += (f"; took over the expired lock of {holder_text(current)} (its lease ran out at "
                        f"{iso(current['expires_at'])}: that run is presumed dead)")
            outcome = Outcome(msg=msg, lock=lock, before=current, changed=True, acquired=True, taken_over=current)
        if not check:
            write_lock(path, lock)
    return outcome


def release(path: str, *, environment: str, token: str | None = None, force: bool = False, reason: str | None = None,
            check: bool = False, now: t.Callable[[], float] = time.time) -> Outcome:
    """Remove the lock when ``token`` holds it, or whoever holds it with ``force`` (a corrupt file too).

    Without a lock, or with another run's lock and no force, nothing changes: a failed run must never release
    somebody else's lock.
    """
    with _unguarded() if check else guarded(path):
        try:
            current = read_lock(path)
        except LeaseError as exc:
            if not force:
                raise
            current = {"corrupt": str(exc)}
        if current is None:
            return Outcome(msg=f"no deploy lock of {environment} at {path}: nothing to release", lock=None, before=None)
        if "corrupt" in current:
            held_by = f"a corrupt lock file ({current['corrupt']})"
        else:
            held_by = describe(current, now())
        if force:
            msg = f"force-released the deploy lock of {environment} held by {held_by}; reason: {reason}"
        elif token is None:
            return Outcome(msg=f"this run holds no deploy lock token: the lock of {environment} held by {held_by} "
                               "was left in place", lock=current, before=current)
        elif current["token"] != token:
            return Outcome(msg=f"the deploy lock of {environment} is held by another run ({held_by}), not by this "
                               "run's token: it was left in place", lock=current, before=current)
        else:
            msg = f"released the deploy lock of {environment}"
        if not check:
            remove_lock(path)
    return Outcome(msg=msg, lock=None, before=current, changed=True, released=current)
