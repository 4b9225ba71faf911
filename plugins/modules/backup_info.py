#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_info
short_description: The newest verified backups of the payment database and the last disaster-recovery drill
version_added: 0.4.0
description:
  - Reads, and changes nothing. Answers the checklist's "verify backup completion" with evidence, and reports how recent
    the last disaster-recovery drill was.
  - With O(database) and a store (O(src_dir) and/or O(s3_bucket)), returns the newest B(verified) logical backup made by
    M(payments.deploy.pg_backup) in RV(backup). Verified means its manifest authenticates with O(encryption_key) (its HMAC)
    and its object has the size (and, with O(verify_checksum), the sha256) the manifest records. Newer backups that fail
    this are listed in RV(unverified) with the reason and never chosen.
  - With O(stanza), returns the newest pgBackRest backup of the stanza (C(pgbackrest info --output=json)) in RV(pgbackrest).
  - With O(journal_dir), returns the last drill recorded by the C(payments.deploy.dr_drill) role for O(environment) in
    RV(drill).
  - With O(max_age), a newest backup older than it, or none, fails the module (unless O(fail_on_stale=false)), with a
    message naming the age and the limit; O(drill_max_age) does the same for the last drill.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.s3
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
requirements:
  - cryptography on the target host (to authenticate manifests)
  - pgBackRest on the target host when O(stanza) is set
options:
  database:
    description:
      - The database whose logical backups are looked at (the C(<database>-...) backup ids of M(payments.deploy.pg_backup)).
      - Needs O(src_dir) or O(s3_bucket), and O(encryption_key).
    type: str
  src_dir:
    description: Local directory of the backups (the C(dest_dir) of M(payments.deploy.pg_backup)).
    type: path
  encryption_key:
    description:
      - The key the backups were made with (64 hexadecimal characters); authenticates their manifests. Falls back to the
        C(ENCRYPTION_KEY) environment variable. Never logged or returned.
    type: str
  verify_checksum:
    description:
      - Read the newest backup's object completely and compare its sha256 with the manifest's. With V(false) only its size
        is compared (for a store too large or too far away to read on every check).
    type: bool
    default: true
  stanza:
    description: A pgBackRest stanza whose newest backup is reported.
    type: str
  config:
    description: The pgBackRest configuration file.
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  config_include_path:
    description: A directory of further pgBackRest configuration files; pgBackRest's default when omitted.
    type: path
  cipher_pass:
    description: Passphrase of the pgBackRest repository's encryption; taken from the configuration when omitted. Never logged.
    type: str
  os_user:
    description: The cluster's OS user; C(pgbackrest info) runs as it.
    type: str
    default: postgres
  pg_port:
    description: Port of the cluster (checked, not used to connect).
    type: int
    default: 5432
  pg_socket_path:
    description: Directory of the cluster's Unix socket.
    type: path
    default: /var/run/postgresql
  pg_bin_dir:
    description: Directory of the PostgreSQL programs.
    type: path
    default: /usr/lib/postgresql/15/bin
  pgbackrest_bin:
    description: The C(pgbackrest) executable.
    type: path
    default: /usr/bin/pgbackrest
  command_timeout:
    description: Seconds C(pgbackrest info) may take.
    type: int
    default: 3600
  journal_dir:
    description: The deploy journal's directory (C(deploy_journal_dir)); the drill is read from C(<journal_dir>/<environment>/history.jsonl).
    type: path
  environment:
    description: The environment whose last drill is read.
    type: str
    default: production
  max_age:
    description:
      - How old the newest backup may be, in seconds or with a unit (C(s), C(m), C(h), C(d), C(w)), for example C(26h).
        Applies to the logical backup and, with O(stanza), to the pgBackRest backup.
    type: str
  drill_max_age:
    description: How old the last drill may be (same form as O(max_age)), for example C(35d) for a monthly drill.
    type: str
  fail_on_stale:
    description:
      - Fail when a limit of O(max_age) or O(drill_max_age) is exceeded. With V(false) the reasons are only returned in
        RV(stale).
    type: bool
    default: true
seealso:
  - module: payments.deploy.pg_backup
  - module: payments.deploy.pgbackrest_backup
"""

EXAMPLES = r"""
- name: Fail when production's newest verified backup is older than 26 hours
  payments.deploy.backup_info:
    database: payments
    s3_bucket: payments-backups
    s3_prefix: production/postgres
    encryption_key: "{{ vault_encryption_key }}"
    max_age: 26h
  register: backups

- name: Report the last disaster-recovery drill, failing when it is older than a month and a few days
  payments.deploy.backup_info:
    journal_dir: /var/lib/payments/journal
    environment: production
    drill_max_age: 35d
  register: drill
"""

RETURN = r"""
backup:
  description: The newest verified logical backup; V(null) when there is none (or O(database) was not given).
  returned: always
  type: dict
  sample: {"backup_id": "payments-20260101T020000Z-3f9a1c", "database": "payments", "created_at": "2026-01-01T02:00:00.120000Z",
           "created_epoch": 1767232800.12, "age_seconds": 3600.5, "size": 192531967, "sha256": "6b86b273ff34...",
           "location": "s3://payments-backups/production/postgres/payments-20260101T020000Z-3f9a1c.dump.zst.enc",
           "migration_head": "0004_refunds", "row_counts": {"public.payments": 1200}}
unverified:
  description: Backups newer than RV(backup) that were not verified, each with its id, store and reason.
  returned: always
  type: list
  elements: dict
manifests_found:
  description: How many well-formed manifests of O(database) the stores hold.
  returned: always
  type: int
pgbackrest:
  description: The newest pgBackRest backup of O(stanza) without an error; V(null) when there is none or no stanza was given.
  returned: always
  type: dict
  sample: {"label": "20261128-173348F", "type": "full", "stop_time": "2026-11-28T17:34:02Z", "stop_epoch": 1795887242,
           "age_seconds": 620.4, "size": 31457280, "repo_size": 4194304, "repo": 1, "archive_stop": "000000010000000000000005"}
drill:
  description: The last drill recorded in the journal, with its C(age_seconds); V(null) when none was recorded.
  returned: always
  type: dict
  sample: {"kind": "drill", "environment": "production", "passed": true, "rto_seconds": 41.2, "rpo_seconds": 310.0,
           "backup_id": "payments-20260101T020000Z-3f9a1c", "recorded_at": "2026-01-01T03:00:00Z", "age_seconds": 86400.0}
commands:
  description: The pgBackRest commands run, with their exit status and seconds (never the cipher pass).
  returned: always
  type: list
  elements: dict
stale:
  description: Why a limit was exceeded, one sentence each (empty when every limit holds).
  returned: always
  type: list
  elements: str
"""

import time
import traceback
import typing as t

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils import _backup_health as health
from ansible_collections.payments.deploy.plugins.module_utils import _backup_store as store_lib
from ansible_collections.payments.deploy.plugins.module_utils import _crypto as crypto
from ansible_collections.payments.deploy.plugins.module_utils import _journal as journal_lib
from ansible_collections.payments.deploy.plugins.module_utils import _pgbackrest as pgbr

ENVIRONMENT_NAME = "letters, digits, '_' or '-'"


def argument_spec() -> dict[str, dict[str, t.Any]]:
    spec = store_lib.s3_argument_spec()
    spec.update(pgbr.common_argument_spec())
    spec["stanza"] = {"type": "str"}
    spec.update(
        database={"type": "str"},
        src_dir={"type": "path"},
        encryption_key={"type": "str", "no_log": True, "fallback": (env_fallback, ["ENCRYPTION_KEY"])},
        verify_checksum={"type": "bool", "default": True},
        journal_dir={"type": "path"},
        environment={"type": "str", "default": "production"},
        max_age={"type": "str"},
        drill_max_age={"type": "str"},
        fail_on_stale={"type": "bool", "default": True},
    )
    return spec


def input_problems(params: t.Mapping[str, t.Any]) -> tuple[list[str], dict[str, float]]:
    """Every problem with the options at once, and the limits in seconds."""
    problems: list[str] = []
    limits: dict[str, float] = {}
    for name in ("max_age", "drill_max_age"):
        if params[name] is not None:
            try:
                limits[name] = health.parse_duration(params[name], name)
            except ValueError as exc:
                problems.append(str(exc))
    if params["database"] is not None:
        problem = store_lib.plain_name_problem("database", params["database"])
        if problem:
            problems.append(problem)
        if not params["src_dir"] and not params["s3_bucket"]:
            problems.append("database needs a store: set src_dir and/or s3_bucket")
        try:
            crypto.parse_key(params["encryption_key"])
        except ValueError as exc:
            problems.append(str(exc))
    elif params["src_dir"] or params["s3_bucket"]:
        problems.append("a store (src_dir or s3_bucket) needs database: the database whose backups are looked at")
    if params["src_dir"] is not None and not pgbr.plain_path(params["src_dir"]):
        problems.append("src_dir must be an absolute path without control characters")
    if params["journal_dir"] is not None and not pgbr.plain_path(params["journal_dir"]):
        problems.append("journal_dir must be an absolute path without control characters")
    environment = params["environment"]
    if not environment or not all(c.isalnum() or c in "_-" for c in environment) or len(environment) > 64:
        problems.append(f"environment must be 1 to 64 {ENVIRONMENT_NAME}")
    if "drill_max_age" in limits and not params["journal_dir"]:
        problems.append("drill_max_age needs journal_dir (where the drill is recorded)")
    if not (params["database"] or params["stanza"] is not None or params["journal_dir"]):
        problems.append("nothing to look at: set database (with a store), stanza and/or journal_dir")
    if params["stanza"] is not None:
        problems.extend(pgbr.input_problems(params))
    return problems, limits


def logical(module: AnsibleModule, result: dict[str, t.Any], now: float) -> None:
    params = module.params
    if params["s3_bucket"] and not store_lib.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=store_lib.BOTO3_IMPORT_ERROR, **result)
    stores: list[store_lib.Store] = []
    if params["src_dir"]:
        stores.append(store_lib.LocalStore(params["src_dir"]))
    if params["s3_bucket"]:
        stores.append(store_lib.S3Store(params))
    key = crypto.parse_key(params["encryption_key"])
    found, unverified, count = health.newest_logical(stores, params["database"], key, params["verify_checksum"], now)
    result.update(backup=found, unverified=unverified, manifests_found=count)


def run(module: AnsibleModule, result: dict[str, t.Any], limits: dict[str, float]) -> None:
    params = module.params
    now = time.time()
    if params["database"]:
        logical(module, result, now)
    if params["stanza"] is not None:
        runner = pgbr.Runner(params, check_mode=module.check_mode)
        try:
            stanza = runner.info()
            pgbr.require_readable(stanza)
        finally:
            result["commands"] = runner.commands
        result["pgbackrest"] = health.newest_pgbackrest(stanza, now)
    if params["journal_dir"]:
        result["drill"] = health.last_drill(params["journal_dir"], params["environment"], now)
    if "max_age" in limits:
        text = params["max_age"].strip()
        if params["database"]:
            result["stale"].append(health.stale_message(f"verified backup of {params['database']}", result["backup"], limits["max_age"], text))
        if params["stanza"] is not None:
            result["stale"].append(health.stale_message(f"pgBackRest backup of stanza {params['stanza']}", result["pgbackrest"],
                                                        limits["max_age"], text))
    if "drill_max_age" in limits:
        result["stale"].append(health.stale_message(f"disaster-recovery drill of {params['environment']}", result["drill"],
                                                    limits["drill_max_age"], params["drill_max_age"].strip()))
    result["stale"] = [message for message in result["stale"] if message]


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not crypto.HAS_CRYPTOGRAPHY and module.params["database"]:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=crypto.CRYPTOGRAPHY_IMPORT_ERROR)
    result: dict[str, t.Any] = {"changed": False, "backup": None, "unverified": [], "manifests_found": 0, "pgbackrest": None,
                                "drill": None, "stale": [], "commands": []}
    problems, limits = input_problems(module.params)
    if problems:
        module.fail_json(msg="; ".join(problems), **result)
    try:
        run(module, result, limits)
    except (store_lib.StoreError, pgbr.PgBackRestError, journal_lib.JournalError) as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # pylint: disable=broad-exception-caught  # an S3 client error names no secret
        module.fail_json(msg=f"reading the backups failed: {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)
    if result["stale"] and module.params["fail_on_stale"]:
        module.fail_json(msg="; ".join(result["stale"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
