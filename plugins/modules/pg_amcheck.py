#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_amcheck
short_description: Check every btree index of a PostgreSQL schema for corruption with amcheck
version_added: 0.1.0
description:
  - Runs PostgreSQL's C(amcheck) function C(bt_index_check) on every btree index of the tables of O(schema) in O(db)
    (their TOAST tables' indexes included), one index at a time, and fails naming each corrupt index with PostgreSQL's
    message. This is the production checklist's rollback trigger "database corruption detected".
  - C(bt_index_check) takes only an C(ACCESS SHARE) lock on each index and its table, so it runs beside the service's
    traffic; it is blocked only by C(ACCESS EXCLUSIVE) locks (some C(ALTER TABLE)s), which O(lock_timeout) bounds.
    With O(heapallindexed=true) it also checks that every row of the table has its index entry (it reads the whole table).
  - The session is read-only (C(default_transaction_read_only)); nothing in the database is changed by the checks.
  - Before checking, the C(amcheck) extension must be installed in O(db) and O(login_user) must be allowed to execute
    C(bt_index_check(regclass, boolean)) (the extension revokes it from C(PUBLIC)). When either is missing the module
    fails saying what to run, unless O(admin_url) names a role that may fix it (a superuser), and the module then runs
    C(CREATE EXTENSION IF NOT EXISTS amcheck) and C(GRANT EXECUTE ON FUNCTION bt_index_check(regclass, boolean)) to
    O(login_user) in O(db) through that role, and reports C(changed).
  - An index that cannot be checked for another reason (a lock timeout, a permission) fails the module as well, named
    separately from corruption. An C(INVALID) index (left by a failed C(CREATE INDEX CONCURRENTLY)) is skipped with a warning.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.postgres
  - payments.deploy.postgres.action_group
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - The checks are read-only, so check mode runs exactly the same checks and reports the same result.
      - It never creates the extension nor grants anything; when that would be needed first, it reports C(changed)
        with a warning and checks nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - psycopg >= 3.1 (C(psycopg[binary]) or C(psycopg) with libpq) on the target host
  - the C(amcheck) extension's files on the database server (PostgreSQL's contrib, part of the Debian and PGDG server packages)
options:
  # The connection options come from the payments.deploy.postgres fragment; those below say what they mean here.
  url:
    description:
      - The whole connection as a C(postgresql://) URL or a libpq connection string, for example the service's
        C(DATABASE_URL). libpq parses it (psycopg's C(conninfo_to_dict)), so a percent-encoded password (C(p%40ss)) is
        decoded and every parameter (C(sslmode), C(sslrootcert), C(sslcert), C(sslkey), C(options),
        C(target_session_attrs), ...) is kept and used.
      - Each connection option below that is set overrides the same part of the URL; the defaults apply to what
        neither sets. A URL that cannot be used (libpq cannot parse it, another scheme, a port that is not a number, an
        unknown C(sslmode), C(service) or C(passfile) set) fails before anything is connected to. Never logged or
        returned.
    type: str
  login_user:
    description:
      - Database role the checks run as (the service's own role is enough once it may execute C(bt_index_check)).
      - Overrides the user of O(url). C(postgres) when neither sets one.
    type: str
  login_password:
    description:
      - Password of O(login_user); overrides the password of O(url); never logged or returned.
      - When neither sets one, libpq's usual sources apply (C(PGPASSWORD) in the module's environment, C(~/.pgpass)).
    type: str
  db:
    description:
      - Name of the database to check; overrides the database of O(url).
      - One of O(db) and O(url) (with a database) is required.
    type: str
  schema:
    description:
      - The schema whose tables' indexes are checked. A schema that does not exist fails the module.
    type: str
    default: public
  heapallindexed:
    description:
      - Also verify that every row of each table has a matching entry in the index (C(bt_index_check)'s second argument).
        Finds lost index entries that the structure checks alone do not; reads every table once per index, so it takes
        longer on large tables.
    type: bool
    default: false
  admin_url:
    description:
      - A privileged role, as C(postgresql://user:password@host:port/db) or a libpq connection string, used only when
        the C(amcheck) extension is missing from O(db) or O(login_user) may not execute C(bt_index_check); the module
        connects with it to O(db) (the URL's own database is ignored, the extension belongs in O(db)), creates the
        extension and grants the function.
      - libpq parses it and every parameter is kept. Host, port, C(sslmode), C(sslrootcert) and C(connect_timeout)
        default to those of the checked connection when the URL sets none. A malformed URL or one without a user fails
        before anything is connected to; the URL is never logged or returned.
    type: str
  lock_timeout:
    description:
      - PostgreSQL C(lock_timeout) of the checks, so that an index whose table is locked exclusively fails its check
        instead of waiting; V(0) waits as long as it takes.
    type: str
    default: 10s
seealso:
  - module: payments.deploy.pg_backup
  - name: amcheck
    description: The PostgreSQL extension and what C(bt_index_check) verifies.
    link: https://www.postgresql.org/docs/15/amcheck.html
"""

EXAMPLES = r"""
- name: Check the payment database's indexes for corruption
  payments.deploy.pg_amcheck:
    login_host: db.internal
    login_user: payments
    login_password: "{{ vault_payments_db_password }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/certs/db-ca.pem
    db: payments
  register: amcheck

- name: Also check that every row is indexed; create the extension with a superuser when it is missing
  payments.deploy.pg_amcheck:
    login_host: db.internal
    login_user: payments
    login_password: "{{ vault_payments_db_password }}"
    db: payments
    schema: billing
    heapallindexed: true
    admin_url: "{{ vault_postgres_admin_url }}"

- name: Report
  ansible.builtin.debug:
    msg: "{{ amcheck.indexes | length }} indexes of {{ amcheck.tables | length }} tables intact in {{ amcheck.duration }} s"
"""

RETURN = r"""
indexes:
  description: The indexes checked and found intact or corrupt, as C(schema.index), in the order they were checked.
  returned: always
  type: list
  elements: str
  sample: ["public.customers_pkey", "public.customers_email_hash_idx", "pg_toast.pg_toast_16390_index"]
tables:
  description: The tables of O(schema) (whose indexes were checked), as C(schema.table).
  returned: always
  type: list
  elements: str
  sample: ["public.customers", "public.payments"]
checks:
  description: One entry per index checked, with its table, size in pages and the seconds its check took.
  returned: always
  type: list
  elements: dict
  sample: [{"index": "public.payments_pkey", "table": "public.payments", "pages": 552, "seconds": 0.004, "ok": true}]
corrupt:
  description: The corrupt indexes with PostgreSQL's message (C(message), C(detail), C(sqlstate) C(XX001) or C(XX002)).
  returned: always
  type: list
  elements: dict
  sample: [{"index": "public.payments_pkey", "table": "public.payments", "sqlstate": "XX002",
            "message": "item order invariant violated for index \"payments_pkey\"",
            "detail": "Lower index tid=(1,42) (points to heap tid=(3,17)) higher index tid=(1,43) ..."}]
errors:
  description: Indexes that could not be checked for another reason (for example a lock timeout), with the error.
  returned: always
  type: list
  elements: dict
invalid_indexes:
  description: C(INVALID) indexes, which C(bt_index_check) cannot check, with the reason.
  returned: always
  type: list
  elements: dict
duration:
  description: Seconds the whole run took (connections, catalog queries and checks).
  returned: always
  type: float
  sample: 0.41
heapallindexed:
  description: Whether the checks also verified that every row is indexed.
  returned: always
  type: bool
extension:
  description:
    - The C(amcheck) extension in O(db) (C(schema), C(version)), whether the module created it or granted
      C(bt_index_check) to O(login_user) (C(created), C(granted); in check mode, would have).
  returned: always
  type: dict
  sample: {"schema": "public", "version": "1.3", "created": false, "granted": false}
database:
  description: The database checked.
  returned: always
  type: str
schema:
  description: The schema whose tables were checked.
  returned: always
  type: str
connection:
  description: The connection settings used (never the password).
  returned: always
  type: dict
  sample: {"host": "db.internal", "port": 5432, "user": "payments", "ssl_mode": "verify-full", "ca_cert": null}
"""

import re
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils import _amcheck as amcheck
from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg

LOCK_TIMEOUT = re.compile(r"^\d+\s*(ms|s|min|h|d)?\Z")


class AmcheckFailed(Exception):
    """Checking could not go on (a connection, the schema, the extension); the message says why."""


class Amcheck:
    """One run of the module."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.started = time.monotonic()
        self.conn = pg.Connection(self.params)
        self.db: str = self.conn.dbname or ""
        self.schema: str = self.params["schema"]
        self.admin = self._validate()
        self.queries: list[str] = []
        self.result: dict[str, t.Any] = {
            "changed": False, "indexes": [], "tables": [], "checks": [], "corrupt": [], "errors": [], "invalid_indexes": [],
            "heapallindexed": self.params["heapallindexed"], "database": self.db, "schema": self.schema,
            "extension": {"schema": None, "version": None, "created": False, "granted": False},
            "connection": self.conn.describe(),
        }

    def _validate(self) -> pg.Connection | None:
        """Every input problem at once, before anything is connected to; returns the admin_url connection, if any."""
        problems = []
        admin = None
        if self.params["admin_url"]:
            try:
                url = amcheck.parse_admin_url(self.params["admin_url"])
            except ValueError as exc:
                problems.append(str(exc))
            else:
                # the URL's own keywords win; where, how and how long to connect default to the checked connection's
                fallback = {"login_host": self.conn.host, "login_port": self.conn.port, "ssl_mode": self.conn.ssl_mode,
                            "ca_cert": self.conn.ca_cert, "connect_timeout": self.conn.connect_timeout}
                admin = pg.Connection({"url": self.params["admin_url"], **{
                    option: value for option, value in fallback.items() if pg.OPTION_KEYWORDS[option] not in url}})
        if not self.db.strip():
            problems.append("db must not be empty (set db, or url with a database name)")
        elif "=" in self.db or "://" in self.db or not self.db.isprintable():
            # libpq reads such a name as connection parameters in some places (and it names no real database)
            problems.append(f"db {self.db[:100]!r} must be a database name, not a connection string or a line break")
        if not self.schema.strip():
            problems.append("schema must not be empty")
        if not LOCK_TIMEOUT.match(self.params["lock_timeout"].strip()):
            problems.append(f"lock_timeout {self.params['lock_timeout']!r} is not a PostgreSQL duration such as 10s, 500ms or 0")
        problems += self.conn.problems
        if problems:
            self.module.fail_json(msg="; ".join(problems), changed=False)
        return admin

    def scrub(self, text: str) -> str:
        text = self.conn.scrub(text)
        return self.admin.scrub(text) if self.admin else text

    def finish(self, msg: str | None = None) -> t.NoReturn:
        self.result["duration"] = round(time.monotonic() - self.started, 3)
        if msg is not None:
            self.module.fail_json(msg=self.scrub(msg), **self.result)
        self.module.exit_json(**self.result)

    # --- the extension ----------------------------------------------------------------------------------

    @staticmethod
    def extension(session: pg.Session) -> tuple[str, str] | None:
        row = session.execute("SELECT n.nspname, e.extversion FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                              "WHERE e.extname = 'amcheck'").fetchone()
        return None if row is None else (row[0], row[1])

    def may_execute(self, session: pg.Session, ext_schema: str) -> bool:
        function = f"{pg.quote_ident(ext_schema)}.{amcheck.CHECK_FUNCTION}"
        return bool(session.value("SELECT has_function_privilege(current_user, %s, 'EXECUTE')", (function,)))

    def ensure_extension(self, session: pg.Session) -> str | None:
        """The schema of the usable extension; None in check mode when it would first have to be created or granted."""
        found = self.extension(session)
        missing = found is None
        if not missing and self.may_execute(session, found[0]):
            self.result["extension"].update(schema=found[0], version=found[1])
            return found[0]
        user = self.conn.user
        if missing and not session.value("SELECT count(*) FROM pg_available_extensions WHERE name = 'amcheck'"):
            raise AmcheckFailed(f"the amcheck extension is not installed in database {self.db!r} and the server does not have "
                                "it: install PostgreSQL's contrib package on the database server")
        function = amcheck.CHECK_FUNCTION if missing else f"{pg.quote_ident(found[0])}.{amcheck.CHECK_FUNCTION}"
        fix = ("CREATE EXTENSION amcheck; " if missing else "") + f"GRANT EXECUTE ON FUNCTION {function} TO {pg.quote_ident(user)};"
        what = (f"the amcheck extension is not installed in database {self.db!r}" if missing
                else f"role {user!r} may not execute {found[0]}.bt_index_check in database {self.db!r}")
        if self.admin is None:
            raise AmcheckFailed(f"{what}, and role {user!r} cannot create it or grant itself the function (that needs a "
                                f"superuser): run as one, in {self.db!r}: {fix} or set admin_url to such a role")
        self.result["changed"] = True
        self.result["extension"].update(created=missing, granted=True)
        if self.module.check_mode:
            self.module.warn(f"{what}: it would be fixed through admin_url ({fix}); nothing was checked in check mode")
            return None
        admin = pg.Session(self.admin, self.db, self.queries)
        try:
            admin.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
            ext_schema = str(admin.value("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                                         "WHERE e.extname = 'amcheck'"))
            admin.execute(f"GRANT EXECUTE ON FUNCTION {pg.quote_ident(ext_schema)}.{amcheck.CHECK_FUNCTION} TO {pg.quote_ident(user)}")
        except pg.PostgresError as exc:
            raise AmcheckFailed(f"{what}, and the admin_url role {self.admin.user!r} could not fix it: {exc}") from None
        finally:
            admin.close()
        found = self.extension(session)
        if found is None or not self.may_execute(session, found[0]):
            raise AmcheckFailed(f"{what}, and role {user!r} still cannot use it after the admin_url role ran: {fix}")
        self.result["extension"].update(schema=found[0], version=found[1])
        return found[0]

    # --- the checks ---------------------------------------------------------------------------------------

    def check_indexes(self, session: pg.Session, ext_schema: str) -> None:
        schema_oid = session.value("SELECT oid::int8 FROM pg_namespace WHERE nspname = %s", (self.schema,))
        self.result["tables"] = [amcheck.qualified(self.schema, name)
                                 for (name,) in session.execute(amcheck.TABLES_SQL, (schema_oid,)).fetchall()]
        function = f"{pg.quote_ident(ext_schema)}.bt_index_check"
        for oid, ns, name, table_ns, table, valid, pages in session.execute(amcheck.INDEXES_SQL, (schema_oid,)).fetchall():
            index, table = amcheck.qualified(ns, name), amcheck.qualified(table_ns, table)
            if not valid:
                self.result["invalid_indexes"].append({"index": index, "table": table, "reason": "INVALID (a failed concurrent build)"})
                self.module.warn(f"index {index} is INVALID and was not checked: drop it or rebuild it (REINDEX INDEX CONCURRENTLY)")
                continue
            since = time.monotonic()
            error = self.check_one(session, function, oid)
            self.result["indexes"].append(index)
            self.result["checks"].append({"index": index, "table": table, "pages": pages,
                                          "seconds": round(time.monotonic() - since, 4), "ok": error is None})
            if error is None:
                continue
            entry = {"index": index, "table": table, **error}
            self.result["corrupt" if error["sqlstate"] in amcheck.CORRUPTION_SQLSTATES else "errors"].append(entry)
        if not self.result["tables"]:
            self.module.warn(f"schema {self.schema!r} of database {self.db!r} has no tables: nothing to check")

    def check_one(self, session: pg.Session, function: str, oid: int) -> dict[str, t.Any] | None:
        """None when the index is intact, else PostgreSQL's error. Autocommit: a failed check does not affect the next."""
        try:
            session.raw.execute(f"SELECT {function}(%s::oid::regclass, %s)", (oid, self.params["heapallindexed"]))
        except pg.psycopg.Error as exc:
            diag = exc.diag
            return {"sqlstate": exc.sqlstate, "message": self.scrub(diag.message_primary or str(exc).strip()),
                    "detail": self.scrub(diag.message_detail or "") or None}
        return None

    def failure_message(self) -> str | None:
        def listing(entries: list[dict[str, t.Any]]) -> str:
            return "; ".join(f"index {e['index']} (table {e['table']}): {e['message']}"
                             + (f" ({e['detail']})" if e.get("detail") else "") + f" [{e['sqlstate']}]" for e in entries)

        parts = []
        if self.result["corrupt"]:
            parts.append(f"amcheck found corruption in database {self.db!r}: {listing(self.result['corrupt'])}")
        if self.result["errors"]:
            parts.append(f"amcheck could not check every index of database {self.db!r}: {listing(self.result['errors'])}")
        return ". ".join(parts) or None

    # --- the run -------------------------------------------------------------------------------------------

    def run(self) -> t.NoReturn:
        session = None
        try:
            session = pg.Session(self.conn, self.db, self.queries)
            session.execute("SET default_transaction_read_only = on")
            session.execute("SELECT set_config('lock_timeout', %s, false)", (self.params["lock_timeout"].strip(),))
            if session.value("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (self.schema,)) == 0:
                raise AmcheckFailed(f"schema {self.schema!r} does not exist in database {self.db!r}")
            ext_schema = self.ensure_extension(session)
            if ext_schema is not None:
                self.check_indexes(session, ext_schema)
        except (pg.PostgresError, AmcheckFailed) as exc:
            self.finish(str(exc))
        finally:
            if session is not None:
                session.close()
        self.finish(self.failure_message())


def main() -> None:
    argument_spec = pg.postgres_argument_spec(client_programs=False)  # no client program runs
    argument_spec.update(
        schema={"type": "str", "default": "public"},
        heapallindexed={"type": "bool", "default": False},
        admin_url={"type": "str", "no_log": True},
        lock_timeout={"type": "str", "default": "10s"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, required_one_of=[("url", "db")])
    if not pg.HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=pg.PSYCOPG_IMPORT_ERROR)
    Amcheck(module).run()


if __name__ == "__main__":
    main()
