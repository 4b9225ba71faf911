#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbackrest_stanza
short_description: Set up WAL archiving and a pgBackRest stanza, check it and take its first full backup
version_added: 0.1.0
description:
  - Makes a PostgreSQL cluster archive its WAL into an encrypted pgBackRest repository, in this order, each step
    only when needed, every command run reported in RV(commands) with its exit status and time.
  - Sets C(archive_mode=on) and C(archive_command) (C(pgbackrest ... archive-push %p) with the same configuration)
    through C(ALTER SYSTEM), reloads, and when C(archive_mode) changed restarts PostgreSQL with O(restart_command).
  - Runs C(stanza-create) when the stanza does not exist in the repository, then C(check) (which switches the WAL and
    waits until the segment is archived), then a full backup when the repository holds none (O(initial_backup)).
  - The repository must be encrypted (C(repo1-cipher-type=aes-256-cbc) in O(config)); the cipher pass comes from
    O(cipher_pass) (handed to pgBackRest in its environment, never on a command line) or from a C(repo1-cipher-pass)
    line of an include file. Without either, or with an unencrypted configuration, the module fails before it changes
    anything. An option pgBackRest does not know in O(config) fails it as well.
  - pgBackRest and C(psql) run as O(os_user) (root's privileges are dropped); C(psql) connects over the Unix socket
    with peer authentication.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.pgbackrest
attributes:
  check_mode:
    support: full
    details:
      - Reads the settings and the repository, and reports the commands that would change something in RV(commands)
        (marked C(skipped)) without running them.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - pgBackRest 2.45 or later and the PostgreSQL client C(psql) on the database host
options:
  archive:
    description: Set C(archive_mode) and C(archive_command); V(false) leaves the cluster's settings alone.
    type: bool
    default: true
  restart_command:
    description:
      - The command that restarts PostgreSQL (for example C([systemctl, restart, postgresql@15-main])), run as the
        module's own user when C(archive_mode) has to change. Without it, the module fails saying a restart is needed.
    type: list
    elements: str
  initial_backup:
    description: The backup to take when the repository holds none (V(none) takes none).
    type: str
    choices: [full, none]
    default: full
seealso:
  - module: payments.deploy.pgbackrest_backup
  - name: pgBackRest user guide
    description: Stanzas, WAL archiving, repository encryption and point-in-time recovery.
    link: https://pgbackrest.org/user-guide.html
"""

EXAMPLES = r"""
- name: Archive the WAL into the encrypted repository and take the first full backup
  payments.deploy.pgbackrest_stanza:
    stanza: payments
    config_include_path: /etc/pgbackrest/conf.d
    restart_command: [systemctl, restart, postgresql@15-main]
  become: true
  register: stanza

- name: Report
  ansible.builtin.debug:
    msg: "{{ stanza.commands | map(attribute='purpose') | list }}"
"""

RETURN = r"""
commands:
  description: Every command run (or, in check mode, that would run), with its purpose, exit status and seconds.
  returned: always
  type: list
  elements: dict
  sample: [{"command": ["/usr/bin/pgbackrest", "--config=/etc/pgbackrest/pgbackrest.conf", "--stanza=payments", "check"],
            "purpose": "check archiving and the repository", "rc": 0, "seconds": 1.21}]
archive_command:
  description: The C(archive_command) the cluster is given.
  returned: always
  type: str
  sample: pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=payments archive-push %p
settings_changed:
  description: The settings changed through C(ALTER SYSTEM).
  returned: always
  type: list
  elements: str
restarted:
  description: Whether PostgreSQL was restarted (C(archive_mode) changed).
  returned: always
  type: bool
stanza_created:
  description: Whether C(stanza-create) ran.
  returned: always
  type: bool
backup:
  description: The initial backup taken (C(label), C(type)), or null.
  returned: always
  type: dict
  sample: {"label": "20261128-173348F", "type": "full"}
backups:
  description: Labels of the backups in the repository afterwards.
  returned: always
  type: list
  elements: str
seconds:
  description: Seconds the whole run took.
  returned: always
  type: float
"""

import shlex
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils import _pgbackrest as pgbr


def archive_command(params: t.Mapping[str, t.Any]) -> str:
    words = [params["pgbackrest_bin"], f"--config={params['config']}", f"--stanza={params['stanza']}"]
    if params.get("config_include_path"):
        words.append(f"--config-include-path={params['config_include_path']}")
    return " ".join(shlex.quote(word) for word in words) + " archive-push %p"


def configure_archiving(module: AnsibleModule, runner: pgbr.Runner, result: dict[str, t.Any]) -> None:
    wanted = {"archive_mode": "on", "archive_command": result["archive_command"]}
    current = dict((row[0], "|".join(row[1:])) for row in runner.sql(
        "SELECT name, setting FROM pg_settings WHERE name IN ('archive_mode', 'archive_command')", record="read the archive settings"))
    for name, value in wanted.items():
        if current.get(name) != value:
            literal = "'" + value.replace("'", "''") + "'"
            runner.sql(f"ALTER SYSTEM SET {name} = {literal}", record=f"set {name}", planned=True)
            result["settings_changed"].append(name)
    if not result["settings_changed"]:
        return
    runner.sql("SELECT pg_reload_conf()", record="reload the configuration", planned=True)
    if "archive_mode" in result["settings_changed"]:
        if not module.params["restart_command"]:
            raise pgbr.PgBackRestError("archive_mode must change and takes effect only after a restart of PostgreSQL: "
                                       "set restart_command, or restart it and run again")
        runner.run(module.params["restart_command"], record="restart PostgreSQL for archive_mode", planned=True, as_os_user=False)
        result["restarted"] = not module.check_mode


def run(module: AnsibleModule, result: dict[str, t.Any]) -> None:
    command = module.params["restart_command"]
    problems = []
    if command is not None and (not command or not command[0].startswith("/") and "/" in command[0]
                                or any(not part or "\x00" in part or "\n" in part for part in command)):
        problems.append("restart_command must be a non-empty list of non-empty arguments on one line each")
    runner = pgbr.Runner(module.params, module.check_mode, problems)
    result["commands"] = runner.commands
    pgbr.ensure_cipher(module.params, runner)
    # before anything changes: the cluster answers and the repository (when there is one) can be read
    runner.sql("SELECT 1", record="reach the cluster")
    stanza = runner.info()
    pgbr.require_readable(stanza)
    if module.params["archive"]:
        configure_archiving(module, runner, result)
    code = pgbr.stanza_status(stanza)[0]
    if code == 1:
        runner.pgbackrest("stanza-create", record="create the stanza", planned=True)
        result["stanza_created"] = True
    if module.check_mode and (result["stanza_created"] or result["settings_changed"]):
        runner.pgbackrest("check", record="check archiving and the repository", planned=True)
    else:
        runner.pgbackrest("check", record="check archiving and the repository")
    if module.params["initial_backup"] == "full" and not stanza.get("backup"):
        runner.pgbackrest("--type=full", "backup", record="take the first full backup", planned=True)
        if not module.check_mode:
            stanza = runner.info()
            newest = stanza["backup"][-1]
            result["backup"] = {"label": newest["label"], "type": newest["type"]}
        else:
            result["backup"] = {"label": None, "type": "full"}
    result["backups"] = [b["label"] for b in stanza.get("backup", [])]
    result["changed"] = bool(result["settings_changed"] or result["stanza_created"] or result["backup"])


def main() -> None:
    spec = pgbr.common_argument_spec()
    spec.update(archive={"type": "bool", "default": True}, restart_command={"type": "list", "elements": "str"},
                initial_backup={"type": "str", "choices": ["full", "none"], "default": "full"})
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    result: dict[str, t.Any] = {"changed": False, "commands": [], "archive_command": archive_command(module.params),
                                "settings_changed": [], "restarted": False, "stanza_created": False, "backup": None, "backups": []}
    pgbr.run_and_exit(module, result, lambda: run(module, result), timing=("seconds",))


if __name__ == "__main__":
    main()
