# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Running pgBackRest and psql as the cluster's OS user, with every command, its exit status and its time recorded.

The repository cipher pass reaches pgBackRest through its environment (``PGBACKREST_REPO1_CIPHER_PASS``) or the
0600 include file the role writes, never through the command line. psql connects over the cluster's Unix socket
as its OS user (peer authentication), the way pgBackRest itself does.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import time
import typing as t

CIPHER_ENV = "PGBACKREST_REPO1_CIPHER_PASS"
INVALID_OPTION = "configuration file contains invalid option"
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*\Z")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Backup types from the cheapest to the most complete; a newer one of a type resets the age of that type and below.
BACKUP_TYPES = ("incr", "diff", "full")
_STANZA = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_OS_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")
RESTORE_POINT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}\Z")


def plain_path(value: str) -> bool:
    """An absolute path without control or line-separator characters (safe to name in a message and a command)."""
    return (value.startswith("/") and len(value) <= 4096
            and not any(ord(char) < 32 or 0x7F <= ord(char) <= 0x9F or char in "\u2028\u2029" for char in value))


def input_problems(params: t.Mapping[str, t.Any]) -> list[str]:
    """Every problem with the options every pgbackrest_* module shares, found before any command runs."""
    problems = []
    if not _STANZA.match(params["stanza"]):
        problems.append("stanza must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    for name in ("config", "config_include_path", "pg_socket_path", "pg_bin_dir", "pgbackrest_bin"):
        if params.get(name) is not None and not plain_path(params[name]):
            problems.append(f"{name} must be an absolute path without control characters")
    if plain_path(params["config"]) and not os.path.isfile(params["config"]):
        problems.append(f"config: {params['config']} is not a file")
    if params.get("config_include_path") and plain_path(params["config_include_path"]) and not os.path.isdir(params["config_include_path"]):
        problems.append(f"config_include_path: {params['config_include_path']} is not a directory")
    if plain_path(params["pgbackrest_bin"]) and not (os.path.isfile(params["pgbackrest_bin"]) and os.access(params["pgbackrest_bin"], os.X_OK)):
        problems.append(f"pgbackrest_bin: {params['pgbackrest_bin']} is not an executable file")
    if plain_path(params["pg_bin_dir"]) and not os.path.isdir(params["pg_bin_dir"]):
        problems.append(f"pg_bin_dir: {params['pg_bin_dir']} is not a directory")
    cipher = params.get("cipher_pass")
    if cipher is not None and (not cipher.strip() or any(ord(char) < 32 or char in "\u2028\u2029" for char in cipher)):
        problems.append("cipher_pass must be non-empty, on one line (it is not shown)")
    if not _OS_USER.match(params["os_user"]):
        problems.append("os_user must be a user name (lower-case letters, digits, '_' or '-')")
    else:
        try:
            pwd.getpwnam(params["os_user"])
        except KeyError:
            problems.append(f"os_user: no such user {params['os_user']!r}")
    if not 1 <= params["pg_port"] <= 65535:
        problems.append("pg_port must be from 1 to 65535")
    if not 1 <= params["command_timeout"] <= 7 * 86400:
        problems.append("command_timeout must be from 1 to 604800 seconds")
    return problems


class PgBackRestError(Exception):
    """A command failed or its output could not be used; the message says which and why."""


def common_argument_spec() -> dict[str, dict[str, t.Any]]:
    """Options every pgbackrest_* module shares."""
    return {
        "stanza": {"type": "str", "required": True},
        "config": {"type": "path", "default": "/etc/pgbackrest/pgbackrest.conf"},
        "config_include_path": {"type": "path"},
        "cipher_pass": {"type": "str", "no_log": True},
        "os_user": {"type": "str", "default": "postgres"},
        "pg_port": {"type": "int", "default": 5432},
        "pg_socket_path": {"type": "path", "default": "/var/run/postgresql"},
        "pg_bin_dir": {"type": "path", "default": "/usr/lib/postgresql/15/bin"},
        "pgbackrest_bin": {"type": "path", "default": "/usr/bin/pgbackrest"},
        "command_timeout": {"type": "int", "default": 3600},
    }


def parse_age(value: str | int | float, label: str) -> float:
    """Seconds of an age written as ``90``, ``30m``, ``12h``, ``7d`` or ``2w``."""
    match = _AGE.match(str(value))
    if not match:
        raise PgBackRestError(f"{label}: {value!r} is not an age (a number of seconds, or a number with s, m, h, d or w)")
    return float(match.group(1)) * _AGE_UNITS[match.group(2) or "s"]


def choose_backup_type(backups: list[dict[str, t.Any]], now: float, max_ages: t.Mapping[str, float]) -> tuple[str | None, str]:
    """The backup to take now (``full``, ``diff``, ``incr`` or None) and why.

    ``backups`` are pgBackRest's ``info`` entries (``type``, ``timestamp.stop``); ``max_ages`` the seconds a backup of
    each type may be old. A full backup older than its age (or none) calls for a full; otherwise the newest full or
    differential older than the diff age calls for a diff; otherwise the newest backup of any type older than the incr
    age calls for an incremental.
    """
    newest: dict[str, float] = {}
    for backup in backups:
        if backup.get("error"):
            continue
        rank = BACKUP_TYPES.index(backup["type"])
        stop = float(backup["timestamp"]["stop"])
        # a backup counts for its own type and every cheaper one
        for kind in BACKUP_TYPES[:rank + 1]:
            newest[kind] = max(newest.get(kind, 0.0), stop)
    for kind in reversed(BACKUP_TYPES):
        if kind not in newest:
            return kind, f"no {kind} backup yet" if kind == "full" else f"no backup yet counts as {kind}"
        age = now - newest[kind]
        if age > max_ages[kind]:
            return kind, f"the newest backup counting as {kind} is {age:.0f} s old, more than {max_ages[kind]:.0f} s"
    return None, "every backup type is younger than its maximum age"


class Runner:
    """Runs commands as ``os_user`` (dropping root's privileges when needed) and records them."""

    def __init__(self, params: t.Mapping[str, t.Any], check_mode: bool = False, problems: t.Sequence[str] = ()) -> None:
        found = [*input_problems(params), *problems]
        if found:
            raise PgBackRestError("; ".join(found))
        self.params = params
        self.check_mode = check_mode
        self.commands: list[dict[str, t.Any]] = []
        try:
            self.account = pwd.getpwnam(params["os_user"])
        except KeyError as exc:
            raise PgBackRestError(f"os_user: no such user {params['os_user']!r}") from exc

    def base_options(self) -> list[str]:
        options = [f"--config={self.params['config']}", f"--stanza={self.params['stanza']}",
                   "--log-level-console=off", "--log-level-stderr=warn"]
        if self.params.get("config_include_path"):
            options.append(f"--config-include-path={self.params['config_include_path']}")
        return options

    def environment(self, cipher: bool) -> dict[str, str]:
        env = {key: os.environ[key] for key in _ENV_KEEP if key in os.environ}
        if os.geteuid() == 0:
            env.update(HOME=self.account.pw_dir, USER=self.account.pw_name, LOGNAME=self.account.pw_name)
        if cipher and self.params.get("cipher_pass"):
            env[CIPHER_ENV] = self.params["cipher_pass"]
        return env

    def run(self, argv: list[str], check: bool = True, record: str | None = None, planned: bool = False,
            as_os_user: bool = True, cipher: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``argv``; ``planned`` commands are only recorded in check mode (they would change something)."""
        entry: dict[str, t.Any] = {"command": argv, "purpose": record}
        self.commands.append(entry)
        if planned and self.check_mode:
            entry.update(rc=None, seconds=0.0, skipped="check mode")
            return subprocess.CompletedProcess(argv, 0, "", "")
        started = time.monotonic()
        drop: dict[str, t.Any] = {}
        if as_os_user and os.geteuid() == 0 and self.account.pw_uid != 0:
            drop = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        try:
            # run_command cannot drop to the cluster's OS user (peer authentication, the repository's owner).
            proc = subprocess.run(  # pylint: disable=ansible-bad-function
                argv, capture_output=True, text=True, errors="replace", check=False, env=self.environment(cipher), cwd="/",
                timeout=self.params["command_timeout"], **drop)
        except (OSError, subprocess.TimeoutExpired) as exc:
            entry.update(rc=None, seconds=round(time.monotonic() - started, 3))
            raise PgBackRestError(f"{argv[0]} could not run: {exc}") from exc
        entry.update(rc=proc.returncode, seconds=round(time.monotonic() - started, 3))
        if INVALID_OPTION in proc.stderr:
            raise PgBackRestError(f"{self.params['config']}: {proc.stderr.strip()}")
        if check and proc.returncode != 0:
            raise PgBackRestError(f"{' '.join(argv[:1] + argv[-2:])} failed with exit status {proc.returncode}: "
                                  f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        return proc

    def pgbackrest(self, *args: str, check: bool = True, record: str | None = None, planned: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run([self.params["pgbackrest_bin"], *self.base_options(), *args], check=check, record=record, planned=planned, cipher=True)

    def sql(self, query: str, record: str | None = None, planned: bool = False) -> list[list[str]]:
        """Rows of one statement, as psql prints them unaligned (``|`` between columns)."""
        argv = [os.path.join(self.params["pg_bin_dir"], "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                "-h", self.params["pg_socket_path"], "-p", str(self.params["pg_port"]), "-U", self.params["os_user"],
                "-d", "postgres", "-c", query]
        out = self.run(argv, record=record, planned=planned).stdout
        return [line.split("|") for line in out.splitlines() if line]

    def info(self) -> dict[str, t.Any]:
        """The stanza's entry of ``pgbackrest info``; fails when the repository cannot be read (a wrong cipher pass)."""
        proc = self.pgbackrest("--output=json", "info", record="read the repository")
        try:
            stanzas = json.loads(proc.stdout, strict=False)  # a wrong cipher pass puts decrypted garbage in messages
        except ValueError as exc:
            raise PgBackRestError(f"pgbackrest info printed no JSON: {proc.stdout[:200]!r}") from exc
        stanza = next((s for s in stanzas if s.get("name") == self.params["stanza"]), None)
        if stanza is None:
            raise PgBackRestError(f"pgbackrest info does not list stanza {self.params['stanza']!r}")
        return stanza


# The error an S3 endpoint answers (pgBackRest prints the response body after the request)
S3_ERROR = re.compile(r"<Code>([^<]+)</Code>\s*(?:<Message>([^<]*)</Message>)?")


def stanza_status(stanza: t.Mapping[str, t.Any]) -> tuple[int, str]:
    """pgBackRest's status code and message: 0 ok, 1 missing stanza path, 2 no valid backups, 99 other error."""
    status = stanza.get("status", {})
    return int(status.get("code", 99)), str(status.get("message", ""))


def unreadable_cause(messages: list[str]) -> str:
    """What most likely keeps the repository from being read, from pgBackRest's messages: the S3 endpoint's answer
    (its error code and message, after the request pgBackRest prints), its TLS certificate, or else the cipher pass."""
    text = "\n".join(messages)
    answer = S3_ERROR.search(text)
    if answer:
        return f"S3 answered {answer.group(1)}: {answer.group(2) or 'no message'}"
    if "unable to find hostname" in text:
        return "TLS: the S3 endpoint's certificate does not name the host connected to (repo1-s3-endpoint, repo1-storage-host)"
    if "certificate" in text:
        return "TLS: the S3 endpoint's certificate is not trusted (repo1-storage-ca-file) or does not name the endpoint"
    return "a wrong cipher pass?"


def require_readable(stanza: t.Mapping[str, t.Any]) -> None:
    """Fail when the stanza exists but its info files cannot be read (wrong cipher pass, damaged repository), or the
    repository cannot be reached (S3: TLS, credentials, bucket)."""
    code, message = stanza_status(stanza)
    if code not in (0, 1, 2):
        # the repository's own status says which file could not be loaded
        messages = [str(r.get("status", {}).get("message", "")) for r in stanza.get("repo", []) if r.get("status", {}).get("code")]
        details = "; ".join(m.splitlines()[0] for m in messages if m) or message
        raise PgBackRestError(f"the repository of stanza {stanza.get('name')!r} cannot be read ({unreadable_cause(messages)}): {details}")


def ensure_cipher(params: t.Mapping[str, t.Any], runner: Runner) -> None:
    """Refuse to go on when no cipher pass reaches pgBackRest: an encrypted repository needs one, and one without
    encryption is refused (repo1-cipher-type must be set in the configuration)."""
    proc = runner.pgbackrest("help", "backup", "repo1-cipher-type", check=False, record="read the configuration")
    if proc.returncode != 0:
        raise PgBackRestError(f"{params['config']} cannot be used: {(proc.stderr or proc.stdout).strip()[-1000:]}")
    if "current: aes-256-cbc" not in proc.stdout:
        raise PgBackRestError(f"{params['config']} does not set repo1-cipher-type=aes-256-cbc: the repository must be encrypted")
    if params.get("cipher_pass"):
        return
    proc = runner.pgbackrest("help", "backup", "repo1-cipher-pass", check=False, record="read the configuration")
    if "current: <redacted>" not in proc.stdout:
        raise PgBackRestError("no repository cipher pass: set cipher_pass or repo1-cipher-pass in the configuration (an include file, mode 0600)")


def run_and_exit(module: t.Any, result: dict[str, t.Any], work: t.Callable[[], None], timing: tuple[str, ...] = ("timings", "total")) -> None:
    """Run WORK, then exit with RESULT, or fail with a PgBackRestError's message and RESULT as far as it got; either way
    the seconds taken go to RESULT at the key path TIMING."""
    started = time.monotonic()

    def record() -> None:
        target = result
        for key in timing[:-1]:
            target = target.setdefault(key, {})
        target[timing[-1]] = round(time.monotonic() - started, 3)

    try:
        work()
    except PgBackRestError as exc:
        record()
        module.fail_json(msg=str(exc), **result)
    record()
    module.exit_json(**result)
