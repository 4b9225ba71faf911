#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_migrate
short_description: Deploy or revert PostgreSQL migrations (deploy, verify and revert SQL per change) under an advisory lock
version_added: 0.1.0
description:
  - Reads a migration plan (C(plan.yml) or C(plan.json) in O(plan_dir), with C(deploy/NAME.sql), C(verify/NAME.sql) and
    C(revert/NAME.sql) per change; the format is in C(docs/migrations.md)) and brings a database to O(target).
  - Keeps a registry table (O(registry_schema).O(registry_table), created when missing) with each applied change's name, kind,
    checksum (sha256 of its three scripts), release, time and database user.
  - Before anything runs it compares the plan with the registry and fails, changing nothing, when an applied change's scripts
    were edited (naming both checksums), when the database has applied changes the plan does not know (a newer release
    migrated it), or when a change was inserted before applied ones.
  - With O(state=deployed) it applies the pending changes up to O(target) in plan order. Each change runs in its own transaction,
    in which deploy script, verify script and registry row commit together, so a failing verify script leaves nothing of the change.
    A change with C(transactional false) (for example C(CREATE INDEX CONCURRENTLY)) runs its deploy script statement by statement
    outside a transaction, then its verify script; when either fails its revert script runs to clean up and the module fails.
  - With O(state=reverted) it runs the revert scripts of the applied changes after O(target), newest first, each with the
    deletion of its registry row in one transaction, and (O(verify_reverts)) checks that the verify script now fails.
  - Changes run while the module's connection holds a PostgreSQL advisory lock derived from the registry name, taken by polling
    C(pg_try_advisory_lock) for up to O(advisory_lock_timeout) seconds. A concurrent run waits, then finds the work done; when the
    wait times out it fails naming the process that holds the lock. C(lock_timeout) and C(statement_timeout) are set for the
    whole connection, so for every change. Lock timeouts, serialization failures and deadlocks are retried O(retries) times.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.postgres
  - payments.deploy.postgres.action_group
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the plan and the registry (edited or unknown changes still fail) and lists in RV(pending) what would run; changes nothing.
  diff_mode:
    support: full
    details: The applied change names before and after.
  platform:
    platforms: posix
requirements:
  - psycopg >= 3.1 (C(psycopg[binary]) or C(psycopg) with libpq) on the target host
  - PyYAML on the target host when the plan is C(plan.yml); a C(plan.json) needs nothing else
options:
  # The connection options are those of the payments.deploy.postgres fragment, but db_migrate keeps its own precedence
  # (a URL wins over the separate options) and defaults (TLS verify-full), so it describes them itself.
  url:
    description:
      - The whole connection as a C(postgresql://) URL or a libpq connection string, for example the service's
        C(DATABASE_URL). libpq parses it, so a percent-encoded password (C(p%40ss)) is decoded and every parameter
        (C(?sslmode=verify-full&sslrootcert=...)) is kept. Never logged or returned.
      - When set, O(login_host), O(login_port), O(login_user), O(login_password) and O(db) are not used; O(ssl_mode),
        O(ca_cert) and O(connect_timeout) apply only when the URL does not set C(sslmode), C(sslrootcert) or
        C(connect_timeout) itself (unlike the other modules of the group, where each option set overrides the URL).
      - It must name a database. One of O(url) and O(db) is required.
    aliases: [database_url]
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server, or the directory of its Unix socket.
    default: localhost
  login_port:
    description:
      - TCP port of the PostgreSQL server.
    default: 5432
  login_user:
    description:
      - Database role to connect as. It must be allowed to change the schema and to create the registry.
    default: postgres
  login_password:
    description:
      - Password of O(login_user). Passed to the server through the connection only, never logged or returned.
      - When omitted, libpq's usual sources apply (C(PGPASSWORD), C(~/.pgpass)).
  db:
    description:
      - Name of the database to migrate. An empty name fails (libpq would use the login user's default database).
      - One of O(url) and O(db) is required.
  ssl_mode:
    description:
      - libpq C(sslmode) of the connection (when O(url) does not set one). The default, V(verify-full), needs the
        server's CA (O(ca_cert), or libpq's C(~/.postgresql/root.crt)); V(disable), V(allow) and V(prefer) let an
        attacker on the network path read or downgrade the connection.
      - This module's default is V(verify-full), not the V(prefer) of the other modules of the group, since it changes the schema.
    default: verify-full
  ca_cert:
    description:
      - CA certificate file (PEM) that the server's certificate must chain to (libpq C(sslrootcert)).
  connect_timeout:
    description:
      - Seconds to wait for the connection to the server.
    default: 10
  plan_dir:
    description:
      - Directory on the target host holding the plan file and the C(deploy), C(verify) and C(revert) directories,
        for example the C(migrations) directory of an unpacked release.
    type: path
    required: true
  target:
    description:
      - Name of the change to migrate to.
      - With O(state=deployed), this change and every change before it are applied; the default is the last change of the plan.
      - With O(state=reverted), every applied change after this one is reverted; V(@base) reverts all of them. Required then.
    type: str
  state:
    description:
      - V(deployed) applies pending changes up to O(target); V(reverted) reverts applied changes after O(target).
    type: str
    default: deployed
    choices: [deployed, reverted]
  lock_timeout:
    description:
      - PostgreSQL C(lock_timeout) for every statement of the run, for example V(5s) or V(500ms).
      - A change that waits longer for a table lock (for example behind a long transaction) fails instead of queueing every
        query of the service behind it; it is then retried (O(retries)).
    type: str
    default: 5s
  statement_timeout:
    description:
      - PostgreSQL C(statement_timeout) for every statement of the run. Raise it for changes that rewrite or index big tables.
    type: str
    default: 5min
  advisory_lock_timeout:
    description:
      - Seconds to wait for the migration advisory lock held by another run. V(0) tries once.
      - A finite number from V(0) to V(86400); anything else fails before anything is connected to.
    type: float
    default: 60
  retries:
    description:
      - How many more times a change is tried after it failed on a lock timeout, a serialization failure or a deadlock,
        with a growing pause (0.5s, 1s, 2s, ... at most 10s) in between. Other errors fail at once.
    type: int
    default: 3
  registry_schema:
    description:
      - Schema of the registry table; created when missing.
    type: str
    default: payments_deploy
  registry_table:
    description:
      - Name of the registry table; created when missing. It also names the advisory lock.
    type: str
    default: changes
  newer_schema:
    description:
      - What to do when the database has applied changes the plan does not know, because a newer release migrated it
        (for example when an older release is deployed again).
      - V(fail) stops, changing nothing.
      - V(allow_expand) goes on when every such change is an C(expand) change (the older release still works with them) and
        every change of the plan is applied; they are reported in RV(newer_applied) and nothing is run. A C(contract) change
        still fails.
    type: str
    choices: [fail, allow_expand]
    default: fail
  verify_reverts:
    description:
      - After a change's revert script ran, run its verify script and require it to fail (the change is gone).
        When it still passes, the revert is rolled back (transactional changes) and the module fails.
    type: bool
    default: true
notes:
  - Scripts must not contain C(BEGIN), C(COMMIT) or C(ROLLBACK); the module runs each change in a transaction it manages.
  - The revert script of a non-transactional change must be safe to run after a partial deploy (for example
    C(DROP INDEX CONCURRENTLY IF EXISTS)), because it also cleans up a failed deploy.
seealso:
  - name: Migration plans
    description: The plan format, the registry and how rollbacks use RV(contract_applied) (C(docs/migrations.md)).
    link: https://github.com/payments-platform/payments.deploy/blob/main/docs/migrations.md
  - name: PostgreSQL advisory locks
    description: Advisory locks held by a connection until it unlocks them, and C(pg_try_advisory_lock).
    link: https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS
"""

EXAMPLES = r"""
- name: Apply the release's migrations
  payments.deploy.db_migrate:
    login_host: db.internal
    login_user: payments_migrator
    login_password: "{{ vault_payments_migrator_password }}"
    db: payments
    ssl_mode: verify-full
    ca_cert: /etc/ssl/certs/payments-db-ca.pem
    plan_dir: /srv/payment-service/releases/1.1.0/migrations
  register: migration

- name: See what would run, changing nothing
  payments.deploy.db_migrate:
    login_host: db.internal
    login_password: "{{ vault_payments_migrator_password }}"
    db: payments
    plan_dir: /srv/payment-service/releases/1.1.0/migrations
  check_mode: true

- name: Roll the schema back to what release 1.0.0 shipped (revert scripts of the newer changes)
  payments.deploy.db_migrate:
    login_host: db.internal
    login_password: "{{ vault_payments_migrator_password }}"
    db: payments
    plan_dir: /srv/payment-service/releases/1.1.0/migrations
    state: reverted
    target: "{{ journal.migration_heads.before }}"
  when: not journal.contract_applied
"""

RETURN = r"""
newer_applied:
  description: Applied changes this plan does not know, accepted because O(newer_schema=allow_expand) and all are expand changes.
  returned: always
  type: list
  elements: str
  sample: ["0005_payments_currency_index"]
heads:
  description: The last applied change before and after the run (in check mode, after it would run); V(null) for none.
  returned: always
  type: dict
  sample: {"before": "0002_payments_and_events", "after": "0004_payments_created_at_index"}
applied:
  description: The changes applied by this run, in order, with how long each took and how many attempts it needed.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "0003_payments_description", "kind": "expand", "transactional": true, "release": "1.1.0",
            "duration": 0.012, "attempts": 1}]
reverted:
  description: The changes reverted by this run, newest first, like RV(applied).
  returned: always
  type: list
  elements: dict
  sample: []
pending:
  description:
    - The changes that were to run when the run started (in check mode, what would run), in the order they run, with the
      action and the script files involved.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "0004_payments_created_at_index", "kind": "expand", "transactional": false, "release": "1.1.0",
            "action": "deploy", "files": ["/srv/app/migrations/deploy/0004_payments_created_at_index.sql",
                                          "/srv/app/migrations/verify/0004_payments_created_at_index.sql"]}]
schema_changed:
  description: Whether this run applied or reverted any change.
  returned: always
  type: bool
  sample: true
contract_applied:
  description:
    - Whether this run applied a C(contract) change, after which the previous release may no longer work with the schema.
      A rollback reverts expand-only migrations but restores the backup when a contract change was applied.
  returned: always
  type: bool
  sample: false
statements:
  description: The SQL files executed, in order (a retried change appears once per attempt). Their contents are not returned.
  returned: always
  type: list
  elements: str
  sample: ["/srv/app/migrations/deploy/0003_payments_description.sql", "/srv/app/migrations/verify/0003_payments_description.sql"]
registry:
  description: The registry table, as C(schema.table).
  returned: always
  type: str
  sample: payments_deploy.changes
registry_created:
  description: Whether this run created the registry table.
  returned: always
  type: bool
  sample: false
advisory_lock_key:
  description: The key of the migration advisory lock (C(pg_locks) shows it as classid high and objid low 32 bits).
  returned: always
  type: int
  sample: -4321987654321987654
lock_wait_seconds:
  description: Seconds spent waiting for the advisory lock held by another run.
  returned: always
  type: float
  sample: 0.0
plan_file:
  description: The plan file read.
  returned: always
  type: str
  sample: /srv/app/migrations/plan.yml
target:
  description: The change migrated (or reverted) to.
  returned: always
  type: str
  sample: 0004_payments_created_at_index
timings:
  description: Seconds spent connecting, reading the registry, waiting for the lock, running changes, and in total.
  returned: always
  type: dict
  sample: {"connect": 0.01, "registry": 0.002, "lock_wait": 0.0, "changes": 0.2, "total": 0.25}
failed_change:
  description: The change that failed, with the failing script, SQLSTATE and the error of each attempt.
  returned: failure
  type: dict
  sample: {"name": "0003_payments_description", "script": "/srv/app/migrations/deploy/0003_payments_description.sql",
           "sqlstate": "55P03", "attempts": 4, "errors": ["55P03 canceling statement due to lock timeout"]}
"""

import time
import typing as t

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils._migrations import (
    BASE,
    LOCK_HOLDER_SQL,
    RETRYABLE_SQLSTATES,
    YAML_IMPORT_ERROR,
    AppliedChange,
    Change,
    Plan,
    PlanError,
    RegistrySQL,
    duration_problem,
    find_plan_file,
    head,
    identifier_problem,
    load_plan,
    lock_holder_params,
    registry_problems,
    split_sql,
    to_deploy,
    to_revert,
)
from ansible_collections.payments.deploy.plugins.module_utils._conninfo import (
    ConninfoError,
    parse_database_url,
)
from ansible_collections.payments.deploy.plugins.module_utils._conninfo import where as conninfo_where
from ansible_collections.payments.deploy.plugins.module_utils._numbers import number_problem
from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg

PSYCOPG_IMPORT_ERROR: str | None
try:
    import psycopg
    from psycopg.pq import TransactionStatus
except ImportError:
    import traceback

    PSYCOPG_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None

APPLICATION_NAME = "payments.deploy.db_migrate"
LOCK_POLL_SECONDS = 0.2
MAX_RETRIES = 20
MAX_ADVISORY_LOCK_TIMEOUT = 86400.0


def backoff(attempt: int) -> float:
    """Pause before attempt ``attempt + 1``: 0.5s, 1s, 2s, ... at most 10s."""
    return float(min(0.5 * 2 ** (attempt - 1), 10.0))


def describe(exc: Exception) -> str:
    """One line about a database error: SQLSTATE, message, detail, hint, where."""
    diag = getattr(exc, "diag", None)
    primary = (getattr(diag, "message_primary", None) or str(exc)).strip()
    sqlstate = getattr(exc, "sqlstate", None)
    parts = [f"{sqlstate} {primary}" if sqlstate else primary]
    for label, attr in (("detail", "message_detail"), ("hint", "message_hint"), ("where", "context")):
        value = getattr(diag, attr, None)
        if value:
            parts.append(f"{label}: {' '.join(value.split())}")
    return "; ".join(parts)


class StepFailed(Exception):
    """A script (or the registry write) of a change failed."""

    def __init__(self, change: Change, script: str, exc: Exception) -> None:
        self.change = change
        self.script = script
        self.cause = exc
        self.sqlstate: str | None = getattr(exc, "sqlstate", None)
        self.error = describe(exc)
        self.cleanup = ""
        super().__init__(self.error)

    @property
    def retryable(self) -> bool:
        return self.sqlstate in RETRYABLE_SQLSTATES

    @property
    def path(self) -> str:
        return self.change.paths.get(self.script, self.script)


class TransactionControl(Exception):
    """A script ended or began a transaction the module manages."""

    sqlstate = None


class StillInPlace(Exception):
    """The verify script of a change still passes after its revert script ran."""


class Migration:
    """One run of the module: validate, read the plan and registry, lock, apply or revert, report."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.started = time.monotonic()
        self.registry = RegistrySQL(self.params["registry_schema"], self.params["registry_table"])
        self.conn: t.Any = None
        self.plan: Plan | None = None
        self.target = ""
        self.statements: list[str] = []
        self.applied: list[dict[str, t.Any]] = []
        self.reverted: list[dict[str, t.Any]] = []
        self.pending: list[dict[str, t.Any]] = []
        self.newer_applied: list[str] = []
        self.applied_names: list[str] = []
        self.heads: dict[str, str | None] = {"before": None, "after": None}
        self.registry_created = False
        self.changes_started: float | None = None
        self.timings: dict[str, float] = {"connect": 0.0, "registry": 0.0, "lock_wait": 0.0, "changes": 0.0, "total": 0.0}
        self.conninfo: dict[str, str] | None = None

    # --- results ----------------------------------------------------------------------------------------

    def report(self) -> dict[str, t.Any]:
        if self.changes_started is not None:
            self.timings["changes"] = self._since(self.changes_started)
        self.timings["total"] = self._since(self.started)
        return {
            "changed": bool(self.applied or self.reverted), "heads": dict(self.heads), "applied": self.applied,
            "reverted": self.reverted, "pending": self.pending, "schema_changed": bool(self.applied or self.reverted),
            "contract_applied": any(item["kind"] == "contract" for item in self.applied), "statements": self.statements,
            "registry": self.registry.name, "registry_created": self.registry_created, "advisory_lock_key": self.registry.lock_key,
            "lock_wait_seconds": self.timings["lock_wait"], "plan_file": self.plan.path if self.plan else None,
            "target": self.target or None, "timings": self.timings, "newer_applied": self.newer_applied,
        }

    def fail(self, msg: str, **extra: t.Any) -> t.NoReturn:
        if self.plan is not None:
            self.heads["after"] = head(self.plan, self.applied_names)
        self.module.fail_json(msg=msg, **self.report(), **extra)

    def _since(self, started: float) -> float:
        return round(time.monotonic() - started, 3)

    # --- inputs -----------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Every option problem at once, before anything is read or changed."""
        params = self.params
        problems = [
            duration_problem("lock_timeout", params["lock_timeout"]),
            duration_problem("statement_timeout", params["statement_timeout"]),
            identifier_problem("registry_schema", params["registry_schema"]),
            identifier_problem("registry_table", params["registry_table"]),
        ]
        problems.append(number_problem("advisory_lock_timeout", params["advisory_lock_timeout"],
                                       maximum=MAX_ADVISORY_LOCK_TIMEOUT, allow_minimum=True))
        if params["url"] is not None:
            try:
                self.conninfo = parse_database_url(params["url"], "url")
            except ConninfoError as exc:
                problems.append(str(exc))
        elif not (params["db"] or "").strip():
            problems.append("db must name the database to migrate (an empty name would make libpq use the login "
                            "user's default database)")
        elif "=" in params["db"] or "://" in params["db"] or not params["db"].isprintable():
            problems.append(f"db {params['db'][:100]!r} must be a database name, not a connection string or a line "
                            "break (a connection string goes in url)")
        if not 0 <= params["retries"] <= MAX_RETRIES:
            problems.append(f"retries must be between 0 and {MAX_RETRIES}")
        if params["connect_timeout"] < 1:
            problems.append("connect_timeout must be at least 1 second")
        if params["state"] == "deployed" and params["target"] == BASE:
            problems.append(f"target {BASE} only makes sense with state=reverted")
        found = [problem for problem in problems if problem]
        if found:
            self.module.fail_json(msg="; ".join(found), **self.report())

    def read_plan(self) -> Plan:
        try:
            plan_file = find_plan_file(self.params["plan_dir"])
            if not plan_file.endswith(".json") and YAML_IMPORT_ERROR is not None:
                self.module.fail_json(msg=missing_required_lib("PyYAML") + f" (to read {plan_file}; or ship plan.json)",
                                      exception=YAML_IMPORT_ERROR)
            plan = load_plan(self.params["plan_dir"])
        except PlanError as exc:
            self.fail(f"the migration plan cannot be used, nothing changed: {'; '.join(exc.problems)}")
        target = self.params["target"] or plan.names[-1]
        if target != BASE and target not in plan.names:
            self.fail(f"target {target!r} is not a change of plan {plan.path} (changes: {', '.join(plan.names)}"
                      + (f", or {BASE}" if self.params["state"] == "reverted" else "") + "); nothing changed")
        self.plan, self.target = plan, target
        return plan

    # --- database ---------------------------------------------------------------------------------------

    def connect(self) -> None:
        params = self.params
        defaults = {"sslmode": params["ssl_mode"], "sslrootcert": params["ca_cert"],
                    "connect_timeout": params["connect_timeout"], "application_name": APPLICATION_NAME}
        if self.conninfo is not None:
            # the URL as libpq parses it, every parameter kept; the options only fill in what it does not set
            conninfo = params["url"].strip()
            options = {key: value for key, value in defaults.items() if key not in self.conninfo}
            where = conninfo_where(self.conninfo)
        else:
            conninfo = ""
            options = dict(defaults, host=params["login_host"], port=params["login_port"], user=params["login_user"],
                           password=params["login_password"], dbname=params["db"])
            where = f"{params['login_user']}@{params['login_host']}:{params['login_port']}/{params['db']}"
        started = time.monotonic()
        try:
            self.conn = psycopg.connect(conninfo, autocommit=True,
                                        **{key: value for key, value in options.items() if value is not None})
        except psycopg.Error as exc:
            self.fail(f"cannot connect to PostgreSQL as {where}: {describe(exc)}; nothing changed")
        self.timings["connect"] = self._since(started)
        try:
            self.conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                              (params["lock_timeout"].strip(), params["statement_timeout"].strip()))
        except psycopg.Error as exc:
            self.fail(f"PostgreSQL rejected lock_timeout {params['lock_timeout']!r} or statement_timeout "
                      f"{params['statement_timeout']!r}: {describe(exc)}; nothing changed")

    def read_registry(self) -> tuple[bool, list[AppliedChange]]:
        started = time.monotonic()
        try:
            exists = bool(self.conn.execute(self.registry.exists, self.registry.exists_params).fetchone()[0])
            rows = self.conn.execute(self.registry.select).fetchall() if exists else []
        except psycopg.Error as exc:
            self.fail(f"cannot read the registry {self.registry.name}: {describe(exc)}; nothing changed")
        self.timings["registry"] = round(self.timings["registry"] + self._since(started), 3)
        return exists, [AppliedChange(*row) for row in rows]

    def plan_actions(self, applied: list[AppliedChange], warn: bool = True) -> list[Change]:
        """Check the registry against the plan (fail on any problem) and return the changes to run."""
        plan = t.cast(Plan, self.plan)
        self.applied_names = [name for name in plan.names if name in {row.name for row in applied}]
        self.heads["before"] = head(plan, self.applied_names)
        allow_newer = self.params["newer_schema"] == "allow_expand" and self.params["state"] == "deployed"
        self.newer_applied = [row.name for row in applied if row.name not in plan.names]
        problems = registry_problems(plan, applied, allow_newer_expand=allow_newer)
        if problems:
            self.fail(f"the database and plan {plan.path} disagree, nothing changed: {' '.join(problems)}")
        deploy = self.params["state"] == "deployed"
        actions = to_deploy(plan, self.applied_names, self.target) if deploy else to_revert(plan, self.applied_names, self.target)
        if warn and deploy and self.target in self.applied_names and self.heads["before"] != self.target:
            self.module.warn(f"changes after target {self.target} are applied ({self.heads['before']} is the head); "
                             "state=deployed never reverts them, use state=reverted for that")
        self.pending = [{**change.summary(), "action": "deploy" if deploy else "revert",
                         "files": [change.paths["deploy" if deploy else "revert"], change.paths["verify"]]} for change in actions]
        return actions

    def take_lock(self) -> None:
        """Poll pg_try_advisory_lock until this connection holds the migration lock, or fail naming its holder."""
        started = time.monotonic()
        deadline = started + self.params["advisory_lock_timeout"]
        try:
            while not self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.registry.lock_key,)).fetchone()[0]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    holder = self.conn.execute(LOCK_HOLDER_SQL, lock_holder_params(self.registry.lock_key)).fetchone()
                    self.timings["lock_wait"] = self._since(started)
                    self.fail(f"another migration holds the lock of registry {self.registry.name} (advisory lock "
                              f"{self.registry.lock_key}): {self._holder(holder)}; gave up after waiting "
                              f"{self.params['advisory_lock_timeout']}s (advisory_lock_timeout), nothing changed",
                              lock_holder_pid=holder[0] if holder else None)
                time.sleep(min(LOCK_POLL_SECONDS, remaining))
        except psycopg.Error as exc:
            self.fail(f"cannot take the migration advisory lock: {describe(exc)}; nothing changed")
        self.timings["lock_wait"] = self._since(started)

    @staticmethod
    def _holder(row: tuple[t.Any, ...] | None) -> str:
        if row is None:
            return "its holder is gone already (it released the lock just now)"
        pid, user, application, client, since, state = row
        return (f"pid {pid} (user {user}, application {application or '-'}, client {client or 'local socket'}, "
                f"connected since {since}, {state})")

    def release_lock(self) -> None:
        try:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.registry.lock_key,))
        except psycopg.Error:
            pass  # closing the connection releases it too

    def create_registry(self) -> None:
        """Create the registry schema and table in their own transaction."""
        try:
            with self.conn.transaction():
                for statement in self.registry.create:
                    self.conn.execute(statement)
        except psycopg.Error as exc:
            self.fail(f"cannot create the registry {self.registry.name}: {describe(exc)}; nothing changed")
        self.registry_created = True

    # --- running scripts --------------------------------------------------------------------------------

    def execute(self, change: Change, script: str, statement_by_statement: bool = False) -> None:
        """Run one script of a change, recording its path; wrap a database error in StepFailed.

        The script must leave the connection's transaction as it found it: one that ended (or began) a transaction
        fails the change, since what it committed is beyond the module's rollback."""
        self.statements.append(change.paths[script])
        expected = self.conn.info.transaction_status
        try:
            if statement_by_statement:
                for statement in split_sql(change.sql[script]):
                    self.conn.execute(statement)
                    self._check_transaction(change, script, expected)
            else:
                self.conn.execute(change.sql[script])
                self._check_transaction(change, script, expected)
        except psycopg.Error as exc:
            raise StepFailed(change, script, exc) from exc

    def _check_transaction(self, change: Change, script: str, expected: t.Any) -> None:
        status = self.conn.info.transaction_status
        if status != expected and status != TransactionStatus.INERROR:
            what = "ended the transaction it ran in" if expected == TransactionStatus.INTRANS else "began a transaction"
            raise StepFailed(change, script, TransactionControl(
                f"the script {what} (transaction status {status.name}, expected {expected.name}): scripts must not "
                "begin or end transactions; whatever it committed is not rolled back"))

    def verify_fails(self, change: Change) -> bool:
        """Run the verify script in a savepoint (or its own transaction) and say whether it failed, as it must after a revert."""
        try:
            with self.conn.transaction(force_rollback=True):
                self.execute(change, "verify")
        except StepFailed as failure:
            if isinstance(failure.cause, TransactionControl):
                raise
            return True
        except psycopg.Error:
            return True
        return False

    def deploy(self, change: Change) -> None:
        if change.transactional:
            with self.conn.transaction():
                self.execute(change, "deploy")
                self.execute(change, "verify")
                self._registry_write(change, self.registry.insert, self.registry.insert_params(change))
            return
        try:
            self.execute(change, "deploy", statement_by_statement=True)
            with self.conn.transaction():
                self.execute(change, "verify")
                self._registry_write(change, self.registry.insert, self.registry.insert_params(change))
        except StepFailed as failure:
            try:
                self.execute(change, "revert", statement_by_statement=True)
                failure.cleanup = f"its revert script {change.paths['revert']} ran to clean up"
            except StepFailed as cleanup:
                failure.cleanup = (f"its revert script {change.paths['revert']} FAILED too ({cleanup.error}): "
                                   "the database may hold part of the change, clean it up by hand")
            raise failure

    def revert(self, change: Change) -> None:
        verify = self.params["verify_reverts"]
        if change.transactional:
            with self.conn.transaction():
                self.execute(change, "revert")
                if verify and not self.verify_fails(change):
                    raise StillInPlace(f"its revert script {change.paths['revert']} was rolled back; the change stays applied")
                self._registry_write(change, self.registry.delete, (change.name,))
            return
        self.execute(change, "revert", statement_by_statement=True)
        if verify and not self.verify_fails(change):
            raise StillInPlace(f"its revert script {change.paths['revert']} ran outside a transaction; the registry still lists it")
        with self.conn.transaction():
            self._registry_write(change, self.registry.delete, (change.name,))

    def _registry_write(self, change: Change, sql: str, params: tuple[t.Any, ...]) -> None:
        try:
            self.conn.execute(sql, params)
        except psycopg.Error as exc:
            raise StepFailed(change, f"registry {self.registry.name}", exc) from exc

    def run_change(self, change: Change, action: str) -> dict[str, t.Any]:
        """Run one change with bounded retries on lock timeouts, serialization failures and deadlocks."""
        started = time.monotonic()
        errors: list[str] = []
        attempts = self.params["retries"] + 1
        for attempt in range(1, attempts + 1):
            try:
                (self.deploy if action == "deploy" else self.revert)(change)
            except StepFailed as failure:
                errors.append(failure.error)
                if failure.retryable and attempt < attempts:
                    time.sleep(backoff(attempt))
                    continue
                self.fail(self._failure_message(change, action, failure, attempt),
                          failed_change={"name": change.name, "script": failure.path, "sqlstate": failure.sqlstate,
                                         "attempts": attempt, "errors": errors})
            except StillInPlace as exc:
                self.fail(f"change {change.name}: its verify script {change.paths['verify']} still passes after the revert script "
                          f"ran, so the change is still in place; {exc} (set verify_reverts=false if the verify script cannot tell)",
                          failed_change={"name": change.name, "script": change.paths["verify"], "sqlstate": None,
                                         "attempts": attempt, "errors": errors})
            except psycopg.Error as exc:  # the connection itself failed (commit, rollback, lost server)
                self.fail(f"change {change.name}: {action} failed: {describe(exc)}",
                          failed_change={"name": change.name, "script": None, "sqlstate": getattr(exc, "sqlstate", None),
                                         "attempts": attempt, "errors": errors + [describe(exc)]})
            return {**change.summary(), "duration": self._since(started), "attempts": attempt}
        raise AssertionError("unreachable")

    def _failure_message(self, change: Change, action: str, failure: StepFailed, attempt: int) -> str:
        params = self.params
        what = f"{failure.script} script {failure.path}" if failure.script in change.paths else failure.script
        message = f"change {change.name}: {what} failed: {failure.error}"
        if failure.sqlstate == "55P03":
            message += (f" (lock_timeout {params['lock_timeout']}: another connection holds a conflicting lock on a table the change "
                        "touches, see pg_locks)")
        elif failure.sqlstate == "57014":
            message += f" (statement_timeout {params['statement_timeout']})"
        elif failure.sqlstate == "25001" and change.transactional:
            message += " (the statement cannot run in a transaction: mark the change transactional: false in the plan)"
        if failure.retryable:
            message += f"; gave up after {attempt} attempts (retries={params['retries']})"
        if failure.script == "verify" and action == "deploy":
            message += "; the change is not in place after its deploy script ran"
        if isinstance(failure.cause, TransactionControl):
            message += (". What the script ran before it ended the transaction is committed and stays: check the "
                        "database by hand; the registry does not list the change as " + action + "ed")
        elif change.transactional:
            state = "nothing of it is applied" if action == "deploy" else "it is still applied"
            message += f". The change's transaction was rolled back: {state} and the registry is unchanged"
        elif action == "deploy":
            message += f". It is not transactional: {failure.cleanup}; the registry is unchanged"
        else:
            message += (". It is not transactional: part of its revert script may have run; the registry still lists the change, "
                        "and running again runs the whole revert script again")
        done = self.applied or self.reverted
        if done:
            message += f". Before it, this run {action}ed {', '.join(item['name'] for item in done)}"
        return message

    # --- the run ----------------------------------------------------------------------------------------

    def run(self) -> t.NoReturn:
        self.validate()
        plan = self.read_plan()
        self.connect()
        try:
            self.migrate(plan)
        finally:
            self.conn.close()

    def migrate(self, plan: Plan) -> t.NoReturn:
        exists, applied = self.read_registry()
        actions = self.plan_actions(applied)
        before = list(self.applied_names)
        deploy = self.params["state"] == "deployed"
        if self.module.check_mode or not actions:
            moved = {change.name for change in actions}
            after = [name for name in plan.names if (name in before or name in moved) and not (name in moved and not deploy)]
            self.heads["after"] = head(plan, after)
            self.exit(bool(actions), before, after)
        self.take_lock()
        try:
            if not exists and deploy:
                self.create_registry()
            # another run may have migrated while this one waited: decide again under the lock
            actions = self.plan_actions(self.read_registry()[1], warn=False)
            before = list(self.applied_names)
            self.changes_started = time.monotonic()
            for change in actions:
                if deploy:
                    self.applied.append(self.run_change(change, "deploy"))
                    self.applied_names.append(change.name)
                else:
                    self.reverted.append(self.run_change(change, "revert"))
                    self.applied_names.remove(change.name)
        finally:
            self.release_lock()
        self.heads["after"] = head(plan, self.applied_names)
        self.exit(bool(actions), before, self.applied_names)

    def exit(self, changed: bool, before: list[str], after: list[str]) -> t.NoReturn:
        result = self.report()
        result["changed"] = changed
        if changed and self.module._diff:
            header = f"{self.registry.name} (applied changes)"
            result["diff"] = {"before": "".join(f"{name}\n" for name in before), "after": "".join(f"{name}\n" for name in after),
                              "before_header": header, "after_header": header}
        self.module.exit_json(**result)


def connection_argument_spec() -> dict[str, dict[str, t.Any]]:
    """The shared connection options with this module's own defaults, unchanged since it was written: TLS verify-full,
    and the separate options filled in (a URL, when given, wins over them; see connect)."""
    spec = pg.postgres_argument_spec(client_programs=False, login_host="localhost", login_port=5432, login_user="postgres",
                                     ssl_mode="verify-full", connect_timeout=10)
    spec["url"]["aliases"] = ["database_url"]
    return spec


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **connection_argument_spec(),
            "plan_dir": {"type": "path", "required": True},
            "target": {"type": "str"},
            "state": {"type": "str", "default": "deployed", "choices": ["deployed", "reverted"]},
            "lock_timeout": {"type": "str", "default": "5s"},
            "statement_timeout": {"type": "str", "default": "5min"},
            "advisory_lock_timeout": {"type": "float", "default": 60.0},
            "retries": {"type": "int", "default": 3},
            "registry_schema": {"type": "str", "default": "payments_deploy"},
            "registry_table": {"type": "str", "default": "changes"},
            "verify_reverts": {"type": "bool", "default": True},
            "newer_schema": {"type": "str", "default": "fail", "choices": ["fail", "allow_expand"]},
        },
        required_if=[("state", "reverted", ("target",))],
        required_one_of=[("url", "db")],
        supports_check_mode=True,
    )
    if PSYCOPG_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    Migration(module).run()


if __name__ == "__main__":
    main()
