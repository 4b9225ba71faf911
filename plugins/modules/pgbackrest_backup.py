#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbackrest_backup
short_description: Take the backup a deploy needs with pgBackRest and mark the deploy with a named restore point
version_added: 0.1.0
description:
  - The backup phase of a deploy for a cluster archiving its WAL into a pgBackRest stanza (see
    M(payments.deploy.pgbackrest_stanza)). Its cost depends on what changed since the last backup, not on the size
    of the database.
  - Reads the repository and takes a full backup when the newest one is older than O(full_max_age), else a
    differential one when the newest full or differential is older than O(diff_max_age), else an incremental one when
    the newest backup is older than O(incr_max_age) (V(0), the default, takes one at every deploy).
  - Then creates the named restore point O(restore_point) (C(pg_create_restore_point)), switches the WAL
    (C(pg_switch_wal)) and waits until the segment holding the restore point can be fetched back from the repository
    with C(archive-get) (which also proves it decrypts), at most O(archive_timeout) seconds.
  - A point-in-time restore to the deploy is then C(pgbackrest restore --type=name --target=RESTORE_POINT).
  - Fails before it changes anything when the cluster cannot be reached, the repository cannot be read (a wrong
    cipher pass), no cipher pass reaches pgBackRest, the repository is not encrypted or the stanza does not exist.
  - pgBackRest and C(psql) run as O(os_user) (root's privileges are dropped).
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.pgbackrest
attributes:
  check_mode:
    support: full
    details:
      - Reads the repository and reports the backup it would take and the commands it would run (marked C(skipped)).
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - pgBackRest 2.45 or later and the PostgreSQL client C(psql) on the database host
options:
  full_max_age:
    description: Age (seconds, or with a unit C(s), C(m), C(h), C(d), C(w)) after which a new full backup is taken.
    type: str
    default: 7d
  diff_max_age:
    description: Age after which the newest full or differential backup is followed by a differential one.
    type: str
    default: 1d
  incr_max_age:
    description: Age after which the newest backup is followed by an incremental one; V(0) takes one every run.
    type: str
    default: "0"
  restore_point:
    description:
      - Name of the restore point to create, for example C(deploy-RUN_ID). Omitted, no restore point is created and
        no WAL is checked.
      - At most 63 bytes. PostgreSQL allows two restore points of the same name; recovery stops at the first.
    type: str
  archive_timeout:
    description: Seconds to wait until the restore point's WAL segment is in the repository.
    type: int
    default: 60
seealso:
  - module: payments.deploy.pgbackrest_stanza
"""

EXAMPLES = r"""
- name: Back up before the deploy and mark it
  payments.deploy.pgbackrest_backup:
    stanza: payments
    config_include_path: /etc/pgbackrest/conf.d
    full_max_age: 7d
    diff_max_age: 1d
    restore_point: "deploy-{{ deploy_run_id }}"
  become: true
  register: pitr

- name: Report
  ansible.builtin.debug:
    msg: "{{ pitr.backup.type }} {{ pitr.backup.label }}; restore point {{ pitr.restore_point.name }} at {{ pitr.restore_point.lsn }}"
"""

RETURN = r"""
backup:
  description:
    - The backup decided on (C(type) V(full), V(diff), V(incr) or null, C(reason)), whether it was taken (C(taken)),
      its C(label) (the newest backup's when none was taken), C(seconds), and the repository's sizes of it.
  returned: always
  type: dict
  sample: {"type": "incr", "taken": true, "label": "20261128-173348F_20261128-180102I", "reason": "...", "seconds": 2.3,
           "size": 22992373, "delta": 8458, "repo_delta": 512}
restore_point:
  description:
    - The restore point (C(name), C(lsn), C(time) of the database server, C(wal_segment)) and whether that segment was
      found in the repository (C(archived)) after C(archive_wait_seconds); null without O(restore_point).
  returned: always
  type: dict
  sample: {"name": "deploy-production-1.4.2-20261128T180100Z", "lsn": "0/6000090", "time": "2026-11-28 18:01:05.12+00",
           "wal_segment": "000000010000000000000006", "archived": true, "archive_wait_seconds": 0.4}
timings:
  description: Seconds of each step (C(backup), C(restore_point), C(archive_check)) and the whole run (C(total)).
  returned: always
  type: dict
commands:
  description: Every command run (or, in check mode, that would run), with its purpose, exit status and seconds.
  returned: always
  type: list
  elements: dict
stanza:
  description: The stanza.
  returned: always
  type: str
"""

import os
import tempfile
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils import _pgbackrest as pgbr


def take_backup(module: AnsibleModule, runner: pgbr.Runner, stanza: dict[str, t.Any], result: dict[str, t.Any]) -> None:
    params = module.params
    ages = {kind: pgbr.parse_age(params[f"{kind}_max_age"], f"{kind}_max_age") for kind in pgbr.BACKUP_TYPES}
    backups = stanza.get("backup", [])
    kind, reason = pgbr.choose_backup_type(backups, time.time(), ages)
    backup = result["backup"]
    backup.update(type=kind, reason=reason, taken=False, label=backups[-1]["label"] if backups else None)
    if kind is None:
        return
    started = time.monotonic()
    runner.pgbackrest(f"--type={kind}", "backup", record=f"take a {kind} backup", planned=True)
    backup["seconds"] = result["timings"]["backup"] = round(time.monotonic() - started, 3)
    if module.check_mode:
        return
    newest = runner.info()["backup"][-1]
    backup.update(taken=True, label=newest["label"], size=newest["info"]["size"], delta=newest["info"]["delta"],
                  repo_delta=newest["info"]["repository"]["delta"])


def wait_archived(module: AnsibleModule, runner: pgbr.Runner, segment: str) -> tuple[bool, float]:
    """Fetch the segment back from the repository until it is there (archive-get exits 1 while it is missing)."""
    started = time.monotonic()
    deadline = started + module.params["archive_timeout"]
    scratch = tempfile.mkdtemp(prefix="pgbackrest-wal-")
    if os.geteuid() == 0:
        os.chown(scratch, runner.account.pw_uid, runner.account.pw_gid)
    target = os.path.join(scratch, segment)
    try:
        while True:
            proc = runner.pgbackrest("archive-get", segment, target, check=False, record="fetch the restore point's WAL back")
            if proc.returncode == 0 and os.path.getsize(target) > 0:
                return True, round(time.monotonic() - started, 3)
            if proc.returncode not in (0, 1):
                raise pgbr.PgBackRestError(f"archive-get {segment} failed with exit status {proc.returncode}: {proc.stderr.strip()[-1000:]}")
            if time.monotonic() >= deadline:
                return False, round(time.monotonic() - started, 3)
            time.sleep(0.5)
    finally:
        for name in os.listdir(scratch):
            os.unlink(os.path.join(scratch, name))
        os.rmdir(scratch)


def mark_deploy(module: AnsibleModule, runner: pgbr.Runner, result: dict[str, t.Any]) -> None:
    name = module.params["restore_point"]
    started = time.monotonic()
    literal = "'" + name.replace("'", "''") + "'"
    rows = runner.sql(f"SELECT lsn, pg_walfile_name(lsn), now() FROM pg_create_restore_point({literal}) AS lsn",
                      record="create the restore point", planned=True)
    if module.check_mode:
        runner.sql("SELECT pg_switch_wal()", record="close the restore point's WAL segment", planned=True)
        result["restore_point"] = {"name": name, "lsn": None, "time": None, "wal_segment": None, "archived": None}
        return
    lsn, segment, created = rows[0]
    runner.sql("SELECT pg_switch_wal()", record="close the restore point's WAL segment")
    result["timings"]["restore_point"] = round(time.monotonic() - started, 3)
    archived, waited = wait_archived(module, runner, segment)
    result["timings"]["archive_check"] = waited
    result["restore_point"] = {"name": name, "lsn": lsn, "time": created, "wal_segment": segment, "archived": archived,
                               "archive_wait_seconds": waited}
    if not archived:
        raise pgbr.PgBackRestError(f"WAL segment {segment} of restore point {name} is not in the repository after "
                                   f"{module.params['archive_timeout']} s: {archiver_state(runner)}")


def archiver_state(runner: pgbr.Runner) -> str:
    """What PostgreSQL's archiver says about its failures, for the message of a segment that never arrived."""
    rows = runner.sql("SELECT failed_count, coalesce(last_failed_wal, ''), coalesce(last_failed_time::text, ''), "
                      "coalesce(last_archived_wal, ''), current_setting('archive_command') FROM pg_stat_archiver",
                      record="read why the WAL is not archived")
    failed, failed_wal, failed_at, archived_wal, *rest = rows[0]
    command = "|".join(rest)  # last: the only column that may hold a |
    if int(failed or 0) > 0 and failed_wal:
        return (f"PostgreSQL's archiver has failed {failed} time(s), last on {failed_wal} at {failed_at} (last archived: "
                f"{archived_wal or 'none'}); its archive_command is {command!r}. Fix archive_command (see the server log) "
                "before deploying: nothing after the backup phase ran")
    return (f"PostgreSQL's archiver reports no failure (last archived: {archived_wal or 'none'}); check archive_command "
            f"({command!r}) and pg_stat_archiver")


def input_problems(params: t.Mapping[str, t.Any]) -> list[str]:
    """This module's own options: the ages, the restore point's name and the archive wait."""
    problems = []
    for kind in pgbr.BACKUP_TYPES:
        try:
            pgbr.parse_age(params[f"{kind}_max_age"], f"{kind}_max_age")
        except pgbr.PgBackRestError as exc:
            problems.append(str(exc) if len(str(params[f"{kind}_max_age"])) <= 64 else f"{kind}_max_age is not an age")
    point = params["restore_point"]
    if point is not None and not pgbr.RESTORE_POINT.match(point):
        problems.append("restore_point must be 1 to 63 letters, digits, '.', '_', ':' or '-' (PostgreSQL's limit is 63 bytes)")
    if not 1 <= params["archive_timeout"] <= 3600:
        problems.append("archive_timeout must be from 1 to 3600 seconds")
    return problems


def run(module: AnsibleModule, result: dict[str, t.Any]) -> None:
    runner = pgbr.Runner(module.params, module.check_mode, input_problems(module.params))
    result["commands"] = runner.commands
    pgbr.ensure_cipher(module.params, runner)
    # before anything changes: the cluster answers, archives, and the stanza's repository can be read
    mode = runner.sql("SHOW archive_mode", record="reach the cluster")
    if mode[0][0] not in ("on", "always"):
        raise pgbr.PgBackRestError("archive_mode is off: set up the stanza and WAL archiving first (payments.deploy.pgbackrest_stanza)")
    stanza = runner.info()
    pgbr.require_readable(stanza)
    if pgbr.stanza_status(stanza)[0] == 1:
        raise pgbr.PgBackRestError(f"stanza {module.params['stanza']!r} does not exist in the repository: create it first")
    take_backup(module, runner, stanza, result)
    result["changed"] = bool(result["backup"].get("taken")) or (module.check_mode and result["backup"]["type"] is not None)
    if module.params["restore_point"]:
        mark_deploy(module, runner, result)
        result["changed"] = True


def main() -> None:
    spec = pgbr.common_argument_spec()
    spec.update(full_max_age={"type": "str", "default": "7d"}, diff_max_age={"type": "str", "default": "1d"},
                incr_max_age={"type": "str", "default": "0"}, restore_point={"type": "str"},
                archive_timeout={"type": "int", "default": 60})
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    result: dict[str, t.Any] = {"changed": False, "commands": [], "backup": {}, "restore_point": None, "timings": {},
                                "stanza": module.params["stanza"]}
    pgbr.run_and_exit(module, result, lambda: run(module, result))


if __name__ == "__main__":
    main()
