#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbackrest_restore
short_description: Put a PostgreSQL cluster back to a named restore point with pgBackRest and swap it in
version_added: 0.1.0
description:
  - The way back of M(payments.deploy.pgbackrest_backup), for a rollback after a change the old release cannot serve
    (a contract migration). The whole cluster goes back to the restore point, every database in it.
  - "Checks first, before any data moves (a failure changes nothing): the live cluster answers; the configuration sets
    an encrypted repository and a cipher pass reaches pgBackRest; the repository can be read and holds the stanza; the
    stanza's C(pg1-path) is O(pg_data); a backup that ended before the restore point (O(backup_set) when given); the
    restore point's WAL segment comes back from the repository with C(archive-get) and holds a restore point of that
    name (read with C(pg_waldump)) when O(wal_segment) or O(restore_point_lsn) tells where it is; O(scratch_port) is
    free; O(restore_path) and O(keep_path) do not exist and are on O(pg_data)'s file system; the file system has room
    for the backup's size plus 256 MB."
  - Then C(pgbackrest restore --type=name --target=RESTORE_POINT --target-action=promote --archive-mode=off --set=BACKUP)
    into O(restore_path), starts it on O(scratch_port) (Unix socket only), waits until recovery stopped at the restore
    point and promoted (its log says so and its timeline is a new one), and stops it. The live cluster serves meanwhile.
  - With O(swap), stops the live cluster (O(stop_command)), renames O(pg_data) to O(keep_path) and O(restore_path) to
    O(pg_data), removes the settings the restore appended to C(postgresql.auto.conf) (so that C(archive_mode) is back),
    queues the new timeline's history file for archiving, starts it (O(start_command)) and waits for connections.
    The service is without its database between the stop and the start (C(downtime_seconds)).
  - If anything fails after the live cluster stopped, the original data directory is put back and started, so a failed
    restore never leaves the service without a database. The message says so.
  - Then C(pgbackrest check) on the swapped-in cluster and, with O(backup_after=full), a full backup (the first of the
    new timeline, which the next deploy's backups build on).
  - Run again after it succeeded (O(keep_path) exists and the live timeline began at the restore point), it changes
    nothing.
  - pgBackRest, C(psql), C(pg_waldump) and the default start and stop commands run as O(os_user).
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.pgbackrest
attributes:
  check_mode:
    support: full
    details:
      - Runs every check and reports the commands a real run would run (marked C(skipped)); nothing is restored.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - pgBackRest 2.45 or later, and C(psql), C(pg_ctl) and C(pg_waldump) of the cluster's PostgreSQL on the database host
options:
  pg_data:
    description: The live cluster's data directory (the stanza's C(pg1-path)).
    type: path
    required: true
  pg_config_file:
    description:
      - The cluster's C(postgresql.conf) when it is not in the data directory (Debian,
        C(/etc/postgresql/15/main/postgresql.conf)); the scratch cluster starts with it.
    type: path
  restore_point:
    description: Name of the restore point (the journal's C(restore_point), C(deploy-RUN_ID)).
    type: str
    required: true
  restore_point_lsn:
    description: Its LSN (the journal's C(restore_point_lsn)); chooses the backup and finds the WAL segment to check.
    type: str
  wal_segment:
    description: The WAL segment holding it (the journal's C(wal_segment)); checked in the repository before anything moves.
    type: str
  backup_set:
    description:
      - Label of the backup to restore from (the journal's C(backup_label)). Omitted, the newest backup that ended
        before O(restore_point_lsn) (the newest of all without it).
    type: str
  restore_path:
    description: Where the restore goes first; C(PG_DATA.restored-RESTORE_POINT) when omitted. Must not exist.
    type: path
  keep_path:
    description: Where the replaced data directory is kept (stopped); C(PG_DATA.replaced-RESTORE_POINT) when omitted. Must not exist.
    type: path
  scratch_port:
    description: Port of the restored cluster while it is checked (Unix socket only); O(pg_port) + 1 when omitted.
    type: int
  stop_command:
    description: Stops the live cluster (argv); C(pg_ctl -D PG_DATA -w stop -m fast) as O(os_user) when omitted.
    type: list
    elements: str
  start_command:
    description:
      - Starts the live cluster (argv); C(pg_ctl -D PG_DATA -l PG_DATA.log -w start) as O(os_user) when omitted.
        A given command runs as the module's user (root with become), so that C(systemctl) works.
    type: list
    elements: str
  swap:
    description: Swap the restored cluster in. V(false) only restores and checks it into O(restore_path), stopped.
    type: bool
    default: true
  recovery_timeout:
    description: Seconds the recovery to the restore point may take, and the swapped-in cluster to accept connections.
    type: int
    default: 600
  backup_after:
    description: V(full) takes a full backup after the swap (the first of the new timeline); V(none) leaves it to the next deploy.
    type: str
    choices: [full, none]
    default: full
seealso:
  - module: payments.deploy.pgbackrest_backup
  - module: payments.deploy.pgbackrest_stanza
"""

EXAMPLES = r"""
- name: Put the cluster back to the deploy's restore point
  payments.deploy.pgbackrest_restore:
    stanza: payments
    config_include_path: /etc/pgbackrest/conf.d
    pg_data: /var/lib/postgresql/15/main
    pg_config_file: /etc/postgresql/15/main/postgresql.conf
    restore_point: "{{ journal.backup_pgbackrest.restore_point }}"
    restore_point_lsn: "{{ journal.backup_pgbackrest.restore_point_lsn }}"
    wal_segment: "{{ journal.backup_pgbackrest.wal_segment }}"
    backup_set: "{{ journal.backup_pgbackrest.backup_label }}"
    stop_command: [systemctl, stop, postgresql@15-main]
    start_command: [systemctl, start, postgresql@15-main]
  become: true
  register: pitr

- name: Report
  ansible.builtin.debug:
    msg: "timeline {{ pitr.timeline }}, down {{ pitr.downtime_seconds }} s, the replaced cluster is in {{ pitr.kept_path }}"
"""

RETURN = r"""
restore_point:
  description: The restore point restored to.
  returned: always
  type: str
backup_set:
  description: Label of the backup restored from.
  returned: when the repository could be read
  type: str
wal_segment:
  description: The restore point's WAL segment checked in the repository (null when neither it nor its LSN was given).
  returned: always
  type: str
timeline:
  description: The restored cluster's timeline (a new one, begun at the restore point); null in check mode.
  returned: always
  type: int
replay_lsn:
  description: The last WAL position recovery replayed (the restore point's record).
  returned: when restored
  type: str
restore_path:
  description: Where the restore went first (after a swap, nothing is left there).
  returned: always
  type: str
kept_path:
  description: The replaced data directory, stopped; null when nothing was swapped.
  returned: always
  type: str
swapped:
  description: Whether the restored cluster is now the live one.
  returned: always
  type: bool
put_back:
  description: Whether a failure after the live stop put the original data directory back (and whether it serves, in the message).
  returned: always
  type: bool
downtime_seconds:
  description: Seconds from the live cluster's stop to the restored one accepting connections; null without a swap.
  returned: always
  type: float
timings:
  description: Seconds of C(checks), C(restore), C(recovery) (start, replay, promote and stop of the scratch cluster), C(swap),
    C(check), C(backup) and C(total).
  returned: always
  type: dict
commands:
  description: Every command run (or, in check mode, that would run), with its purpose, exit status and seconds; no secret.
  returned: always
  type: list
  elements: dict
stanza:
  description: The stanza.
  returned: always
  type: str
"""

import os
import shutil
import tempfile
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils import _pgbackrest as pgbr
from ansible_collections.payments.deploy.plugins.module_utils import _pgbackrest_restore as pitr


class Restore:
    """One restore: the checks, the scratch recovery, the swap and the way back; results go into ``result``."""

    def __init__(self, module: AnsibleModule, result: dict[str, t.Any]) -> None:
        self.module = module
        self.params = module.params
        self.result = result
        self.runner = pgbr.Runner(module.params, module.check_mode, input_problems(module.params))
        result["commands"] = self.runner.commands
        data = self.params["pg_data"].rstrip("/")
        point = self.params["restore_point"]
        self.pg_data = data
        self.restore_path = (self.params["restore_path"] or f"{data}.restored-{point}").rstrip("/")
        self.keep_path = (self.params["keep_path"] or f"{data}.replaced-{point}").rstrip("/")
        self.scratch_port = self.params["scratch_port"] or self.params["pg_port"] + 1
        self.backup: dict[str, t.Any] = {}
        self.segment: str | None = None
        self.workdir = ""
        result.update(restore_path=self.restore_path)

    def tool(self, name: str) -> str:
        return os.path.join(self.params["pg_bin_dir"], name)

    def timed(self, name: str, started: float) -> None:
        self.result["timings"][name] = round(time.monotonic() - started, 3)

    # ---- checks: nothing moves before all of them passed -------------------------------------------------------

    def already_done(self) -> bool:
        """A run that swapped this restore point in before: the live timeline began at it and the old cluster is kept."""
        if not os.path.isdir(self.keep_path):
            return False
        timeline = int(self.runner.sql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)", record="read the live timeline")[0][0], 16)
        if pitr.history_reason(self.pg_data, timeline) != f'at restore point "{self.params["restore_point"]}"':
            return False
        self.result.update(timeline=timeline, kept_path=self.keep_path, swapped=True,
                           msg=f"the cluster already runs timeline {timeline}, begun at restore point {self.params['restore_point']}; "
                               f"the replaced data directory is {self.keep_path}: nothing to do")
        return True

    def check_stanza(self) -> None:
        pgbr.ensure_cipher(self.params, self.runner)
        stanza = self.runner.info()
        pgbr.require_readable(stanza)
        code, message = pgbr.stanza_status(stanza)
        if code == 1:
            raise pgbr.PgBackRestError(f"stanza {self.params['stanza']!r} does not exist in the repository ({message}): nothing to restore from")
        proc = self.runner.pgbackrest("help", "restore", "pg1-path", check=False, record="read the stanza's data directory")
        configured = next((line.split("current:", 1)[1].strip() for line in proc.stdout.splitlines() if "current:" in line), None)
        if configured is None or os.path.realpath(configured) != os.path.realpath(self.pg_data):
            raise pgbr.PgBackRestError(f"stanza {self.params['stanza']!r} sets pg1-path to {configured or 'nothing'}, not pg_data "
                                       f"{self.pg_data}: the configuration and the cluster disagree")
        self.backup = pitr.choose_backup(stanza.get("backup", []), self.params["backup_set"], self.params["restore_point_lsn"])
        self.result["backup_set"] = self.backup["label"]

    def check_wal(self) -> None:
        """The restore point's segment comes back from the repository and holds a restore point of that name."""
        segment = self.params["wal_segment"]
        if not segment and self.params["restore_point_lsn"]:
            segment = pitr.segment_of(self.params["restore_point_lsn"], int(self.backup["archive"]["start"][:8], 16))
        self.result["wal_segment"] = self.segment = segment
        if not segment:
            return
        target = os.path.join(self.workdir, segment)
        proc = self.runner.pgbackrest("archive-get", segment, target, check=False, record="fetch the restore point's WAL segment")
        if proc.returncode == 1:
            raise pgbr.PgBackRestError(f"WAL segment {segment} of restore point {self.params['restore_point']} is not in the repository "
                                       "(never archived?): the restore could not reach it")
        if proc.returncode != 0:
            raise pgbr.PgBackRestError(f"archive-get {segment} failed with exit status {proc.returncode}: {proc.stderr.strip()[-1000:]}")
        dump = self.runner.run([self.tool("pg_waldump"), "--rmgr=XLOG", target], check=False, record="look for the restore point in it")
        # pg_waldump exits 1 at the segment's end (the next one is not there); the records it printed are what counts
        wanted = f"RESTORE_POINT {self.params['restore_point']}"
        if not any(line.rstrip().endswith(wanted) for line in dump.stdout.splitlines()):
            raise pgbr.PgBackRestError(f"WAL segment {segment} holds no restore point named {self.params['restore_point']} "
                                       "(never created, or another segment?)")

    def check_places(self) -> None:
        problems = []
        busy = pitr.port_in_use(self.scratch_port, self.params["pg_socket_path"])
        if busy:
            problems.append(f"scratch_port {self.scratch_port} is in use ({busy})")
        for name, path in (("restore_path", self.restore_path), ("keep_path", self.keep_path)):
            if os.path.lexists(path):
                problems.append(f"{name} {path} exists: move it away or name another")
            elif not pitr.same_file_system(path, self.pg_data):
                problems.append(f"{name} {path} is not on the file system of {self.pg_data} (the swap renames)")
        need = int(self.backup["info"]["size"]) + pitr.DISK_MARGIN
        free = pitr.free_bytes(self.restore_path)
        if free < need:
            problems.append(f"{free // 2**20} MB free for {self.restore_path}, the restore needs {need // 2**20} MB")
        if problems:
            raise pgbr.PgBackRestError("; ".join(problems))

    # ---- the restore into a scratch cluster ----------------------------------------------------------------------

    def restore(self) -> None:
        started = time.monotonic()
        self.runner.pgbackrest("--type=name", f"--target={self.params['restore_point']}", "--target-action=promote", "--archive-mode=off",
                               f"--set={self.backup['label']}", f"--pg1-path={self.restore_path}", "restore",
                               record="restore the backup into restore_path", planned=True)
        self.timed("restore", started)

    def scratch_options(self) -> str:
        options = [f"-p {self.scratch_port}", "-c listen_addresses=''", f"-c unix_socket_directories='{self.params['pg_socket_path']}'",
                   "-c archive_mode=off", "-c external_pid_file=''", "-c lc_messages=C"]
        if self.params["pg_config_file"]:
            options += [f"-c config_file='{self.params['pg_config_file']}'", f"-c data_directory='{self.restore_path}'"]
        return " ".join(options)

    def recover(self) -> None:
        """Start the restored cluster on the scratch port, wait until it stopped at the restore point, stop it."""
        started = time.monotonic()
        log = os.path.join(self.workdir, "scratch.log")
        pg_ctl = [self.tool("pg_ctl"), "-D", self.restore_path, "-l", log, "-w", "-t", str(self.params["recovery_timeout"])]
        self.runner.run([*pg_ctl, "-o", self.scratch_options(), "start"], check=False, record="start the restored cluster on scratch_port",
                        planned=True)
        if self.module.check_mode:
            return
        try:
            self.wait_promoted(log)
        finally:
            self.runner.run([*pg_ctl, "stop", "-m", "fast"], check=False, record="stop the restored cluster")
        self.timed("recovery", started)

    def wait_promoted(self, log: str) -> None:
        deadline = time.monotonic() + self.params["recovery_timeout"]
        query = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()"
        while True:
            proc = self.psql(self.scratch_port, query, "wait until recovery promoted")
            if proc.returncode == 0 and proc.stdout.startswith("f|"):
                self.result["replay_lsn"] = proc.stdout.strip().split("|")[1]
                break
            if not os.path.exists(os.path.join(self.restore_path, "postmaster.pid")) or time.monotonic() > deadline:
                raise pgbr.PgBackRestError(f"the restored cluster did not reach restore point {self.params['restore_point']} and promote: "
                                           f"{tail(log)}")
            time.sleep(0.3)
        timeline_row = self.psql(self.scratch_port, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)", "read the new timeline")
        timeline = int(timeline_row.stdout.strip(), 16)
        before = int(self.backup["archive"]["start"][:8], 16)
        stopped_line = f'recovery stopping at restore point "{self.params["restore_point"]}"'
        if stopped_line not in read(log) or timeline <= before:
            raise pgbr.PgBackRestError(f"recovery promoted without stopping at restore point {self.params['restore_point']} "
                                       f"(timeline {timeline}): {tail(log)}")
        if self.params["restore_point_lsn"] and pitr.lsn_value(self.result["replay_lsn"]) < pitr.lsn_value(self.params["restore_point_lsn"]):
            raise pgbr.PgBackRestError(f"recovery stopped at {self.result['replay_lsn']}, before the restore point's LSN {self.params['restore_point_lsn']}")
        self.result["timeline"] = timeline

    def psql(self, port: int, query: str, purpose: str) -> t.Any:
        argv = [self.tool("psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.params["pg_socket_path"], "-p", str(port),
                "-U", self.params["os_user"], "-d", "postgres", "-c", query]
        commands = self.runner.commands
        proc = self.runner.run(argv, check=False, record=purpose)
        # a wait polls: keep one entry per purpose, the last attempt's
        if len(commands) > 1 and commands[-2].get("purpose") == purpose:
            commands[-1]["attempts"] = commands[-2].get("attempts", 1) + 1
            del commands[-2]
        return proc

    # ---- the swap and the way back ------------------------------------------------------------------------------

    def pg_ctl_live(self, action: str) -> list[str]:
        base = [self.tool("pg_ctl"), "-D", self.pg_data, "-w", "-t", str(self.params["recovery_timeout"])]
        return [*base, "stop", "-m", "fast"] if action == "stop" else [*base, "-l", f"{self.pg_data}.log", "start"]

    def control(self, action: str) -> t.Any:
        given = self.params[f"{action}_command"]
        argv = given or self.pg_ctl_live(action)
        return pitr.run_detached(self.runner, argv, f"{action} the live cluster", as_os_user=not given)

    def wait_live(self) -> bool:
        deadline = time.monotonic() + self.params["recovery_timeout"]
        while True:
            proc = self.psql(self.params["pg_port"], "SELECT pg_is_in_recovery()", "wait for the live cluster's connections")
            if proc.returncode == 0 and proc.stdout.strip() == "f":
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)

    def swap(self) -> None:
        started = time.monotonic()
        if self.module.check_mode:
            for action in ("stop", "start"):
                argv = self.params[f"{action}_command"] or self.pg_ctl_live(action)
                self.runner.commands.append({"command": argv, "purpose": f"{action} the live cluster", "rc": None, "seconds": 0.0,
                                             "skipped": "check mode"})
            return
        stop = self.control("stop")
        if os.path.exists(os.path.join(self.pg_data, "postmaster.pid")):
            serving = self.wait_live() if stop.returncode != 0 else False
            raise pgbr.PgBackRestError(f"stop_command failed ({stop.returncode}): {stop.stdout.strip()[-500:]}; nothing was swapped, "
                                       f"the live cluster {'still serves' if serving else 'may be stopping: look at it now'}; "
                                       f"the restored cluster is in {self.restore_path}")
        moved = False
        try:
            os.rename(self.pg_data, self.keep_path)
            moved = True
            os.rename(self.restore_path, self.pg_data)
            self.settle()
            start = self.control("start")
            if start.returncode != 0:
                raise pgbr.PgBackRestError(f"start_command failed ({start.returncode}): {start.stdout.strip()[-500:]}")
            if not self.wait_live():
                raise pgbr.PgBackRestError(f"the restored cluster did not accept connections within {self.params['recovery_timeout']} s")
        except (OSError, pgbr.PgBackRestError) as exc:
            raise pgbr.PgBackRestError(f"{exc}; {self.put_back(moved)}") from exc
        self.result["downtime_seconds"] = round(time.monotonic() - started, 3)
        self.result.update(swapped=True, kept_path=self.keep_path)
        self.timed("swap", started)

    def settle(self) -> None:
        """The restored data directory as a live cluster: archive_mode back, the new timeline's history archived."""
        auto = os.path.join(self.pg_data, "postgresql.auto.conf")
        with open(auto, encoding="utf-8") as handle:
            text = handle.read()
        with open(auto, "w", encoding="utf-8") as handle:
            handle.write(pitr.without_restore_settings(text))
        # promoted with archive_mode off, its history file was never queued; a later restore needs it in the repository
        history = f"{self.result['timeline']:08X}.history"
        ready = os.path.join(self.pg_data, "pg_wal", "archive_status", f"{history}.ready")
        if os.path.exists(os.path.join(self.pg_data, "pg_wal", history)) and not os.path.exists(ready.replace(".ready", ".done")):
            with open(ready, "w", encoding="utf-8"):
                pass
            if os.geteuid() == 0:
                os.chown(ready, self.runner.account.pw_uid, self.runner.account.pw_gid)

    def put_back(self, moved: bool) -> str:
        """After a failure past the live stop: the original data directory back in place, started."""
        self.result["put_back"] = True
        if os.path.exists(os.path.join(self.pg_data, "postmaster.pid")):
            self.control("stop")
        if moved:
            failed = f"{self.restore_path}.failed"
            if os.path.lexists(self.pg_data):
                os.rename(self.pg_data, failed)
            os.rename(self.keep_path, self.pg_data)
            where = f"the restored one is kept in {failed}"
        else:
            where = f"the restored one is in {self.restore_path}"
        start = self.control("start")
        if start.returncode == 0 and self.wait_live():
            return f"the original data directory is back in {self.pg_data} and serves ({where})"
        return (f"the original data directory is back in {self.pg_data} but did NOT start ({start.stdout.strip()[-300:]}): "
                f"start PostgreSQL by hand now ({where})")

    # ---- after the swap -------------------------------------------------------------------------------------------

    def after(self) -> None:
        started = time.monotonic()
        self.runner.pgbackrest("check", record="check archiving of the swapped-in cluster", planned=True)
        self.timed("check", started)
        if self.params["backup_after"] == "full":
            started = time.monotonic()
            self.runner.pgbackrest("--type=full", "backup", record="take the new timeline's first full backup", planned=True)
            self.timed("backup", started)

    def run(self) -> None:
        started = time.monotonic()
        self.runner.sql("SELECT 1", record="reach the live cluster")
        if self.already_done():
            return
        self.workdir = tempfile.mkdtemp(prefix="pgbackrest-restore-")
        if os.geteuid() == 0:
            os.chown(self.workdir, self.runner.account.pw_uid, self.runner.account.pw_gid)
        try:
            self.check_stanza()
            self.check_wal()
            self.check_places()
            self.timed("checks", started)
            self.result["changed"] = True
            try:
                self.restore()
                self.recover()
            except pgbr.PgBackRestError as exc:
                shutil.rmtree(self.restore_path, ignore_errors=True)
                raise pgbr.PgBackRestError(f"{exc}; nothing was swapped, the live cluster still serves and {self.restore_path} was removed") from exc
            if self.params["swap"]:
                self.swap()
                self.after()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def tail(path: str) -> str:
    lines = [line for line in read(path).splitlines() if any(word in line for word in ("FATAL", "ERROR", "PANIC", "recovery"))]
    return " | ".join(lines[-4:]) or "no server log"


def input_problems(params: t.Mapping[str, t.Any]) -> list[str]:
    """This module's own options, refused before any command runs."""
    problems = []
    if not pgbr.RESTORE_POINT.match(params["restore_point"]):
        problems.append("restore_point must be 1 to 63 letters, digits, '.', '_', ':' or '-'")
    for name in ("pg_data", "pg_config_file", "restore_path", "keep_path"):
        if params[name] is not None and not pgbr.plain_path(params[name]):
            problems.append(f"{name} must be an absolute path without control characters")
    if pgbr.plain_path(params["pg_data"]) and not os.path.isdir(params["pg_data"]):
        problems.append(f"pg_data: {params['pg_data']} is not a directory")
    # pg_ctl hands the scratch cluster's options to a shell: these paths go into them quoted
    for name in ("pg_data", "pg_socket_path", "pg_config_file", "restore_path"):
        if params[name] and any(char in params[name] for char in "'\"\\$` "):
            problems.append(f"{name} must not contain quotes, backslashes, '$', '`' or spaces")
    data = params["pg_data"].rstrip("/")
    for name in ("restore_path", "keep_path"):
        value = (params[name] or "").rstrip("/")
        if value and (value == data or value.startswith(data + "/") or data.startswith(value + "/")):
            problems.append(f"{name} must be outside pg_data and not contain it")
    if params["restore_path"] and params["keep_path"] and params["restore_path"].rstrip("/") == params["keep_path"].rstrip("/"):
        problems.append("restore_path and keep_path must differ")
    if params["restore_point_lsn"] is not None and not pitr.LSN.match(params["restore_point_lsn"]):
        problems.append("restore_point_lsn must be an LSN such as 0/6000090")
    if params["wal_segment"] is not None and not pitr.SEGMENT.match(params["wal_segment"]):
        problems.append("wal_segment must be a WAL file name of 24 upper-case hexadecimal digits")
    if params["backup_set"] is not None and not pgbr.RESTORE_POINT.match(params["backup_set"]):
        problems.append("backup_set must be a backup label such as 20261128-173348F_20261128-180102I")
    scratch = params["scratch_port"]
    if scratch is not None and (not 1 <= scratch <= 65535 or scratch == params["pg_port"]):
        problems.append("scratch_port must be from 1 to 65535 and differ from pg_port")
    for name in ("stop_command", "start_command"):
        if params[name] is not None and (not params[name] or not params[name][0].strip()):
            problems.append(f"{name} must be a non-empty argv list")
    if not 1 <= params["recovery_timeout"] <= 86400:
        problems.append("recovery_timeout must be from 1 to 86400 seconds")
    return problems


def main() -> None:
    spec = pgbr.common_argument_spec()
    spec.update(pg_data={"type": "path", "required": True}, pg_config_file={"type": "path"}, restore_point={"type": "str", "required": True},
                restore_point_lsn={"type": "str"}, wal_segment={"type": "str"}, backup_set={"type": "str"}, restore_path={"type": "path"},
                keep_path={"type": "path"}, scratch_port={"type": "int"}, stop_command={"type": "list", "elements": "str"},
                start_command={"type": "list", "elements": "str"}, swap={"type": "bool", "default": True},
                recovery_timeout={"type": "int", "default": 600}, backup_after={"type": "str", "choices": ["full", "none"], "default": "full"})
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    result: dict[str, t.Any] = {"changed": False, "commands": [], "stanza": module.params["stanza"], "restore_point": module.params["restore_point"],
                                "wal_segment": None, "timeline": None, "kept_path": None, "swapped": False, "put_back": False,
                                "downtime_seconds": None, "timings": {}}
    pgbr.run_and_exit(module, result, lambda: Restore(module, result).run())


if __name__ == "__main__":
    main()
