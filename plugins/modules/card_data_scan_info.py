#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: card_data_scan_info
short_description: Look for card numbers and secret values stored in the text columns of a PostgreSQL database
version_added: 0.5.0
description:
  - Connects to the service's database and reads the text-like columns (C(text), C(varchar), C(char), C(json), C(jsonb),
    domains over them and arrays of them; C(bytea) with O(scan_bytea=true)) of every table and materialized view of
    O(schemas), and reports each column that holds a card number (PAN) or one of O(secrets). This is evidence for the
    PCI checklist lines "Sensitive data is not stored" and "Card data is tokenized".
  - A card number is recognised as in M(payments.deploy.log_secret_scan_info) (the same code), as 13 to 19 digits, in one
    run or in the groupings cards are printed in (with spaces or dashes), starting with 1 to 6, passing the Luhn check;
    a plain run that reads as an epoch time in milliseconds, microseconds or nanoseconds near the scan, and parts of
    UUIDs, are not card numbers. What Stripe returns and the service may keep (object ids such as C(pi_...) and
    C(ch_...), C(last4), card C(fingerprint)s, epoch C(created) times, amounts) is not a card number.
  - A secret is found as it is, percent-encoded, as it reads inside a JSON string, and for a URL (C(DATABASE_URL)) by its
    password alone.
  - Findings name the table, the column, how many of the rows read hold it, and the kind (C(card number ending 4242), or
    the secret's name); never a value. The module does not fail on findings (RV(passed) is false); it fails when the
    database cannot be reached, a schema does not exist, or a table could not be read (for example within
    O(statement_timeout)); findings of the tables that were read are returned then too.
  - The scan is bounded for a production database. At most O(max_rows_per_table) rows are read from each table, the most
    recent ones when the table has a timestamp column named in O(order_columns), and each table is read by one statement
    that PostgreSQL cancels after O(statement_timeout). Rows are streamed one at a time, so memory holds one row.
  - The session is read-only (C(default_transaction_read_only), checked with C(SHOW transaction_read_only) before
    anything is read) and each table is read in its own C(READ ONLY) transaction, so the scan cannot write. Each
    C(SELECT) takes the C(ACCESS SHARE) lock every query takes; only an C(ACCESS EXCLUSIVE) lock (some C(ALTER TABLE)s)
    makes it wait, at most O(statement_timeout).
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.postgres
  - payments.deploy.postgres.action_group
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  # The connection options come from the payments.deploy.postgres fragment, as pg_amcheck takes them; those below
  # say what they mean here.
  url:
    description:
      - The whole connection as a C(postgresql://) URL or a libpq connection string, for example the service's
        C(DATABASE_URL). libpq parses it (psycopg's C(conninfo_to_dict)), so a percent-encoded password (C(p%40ss)) is
        decoded and every parameter (C(sslmode), C(sslrootcert), C(sslcert), C(sslkey), C(options),
        C(target_session_attrs), ...) is kept and used.
      - Each connection option that is set overrides the same part of the URL; the defaults apply to what neither sets.
        A URL that cannot be used (libpq cannot parse it, another scheme, a port that is not a number, an unknown
        C(sslmode), C(service) or C(passfile) set) fails before anything is connected to. Never logged or returned.
    type: str
  login_user:
    description:
      - Database role the scan reads as; the service's own role, which may read its tables, is enough.
      - Overrides the user of O(url). C(postgres) when neither sets one.
    type: str
  login_password:
    description:
      - Password of O(login_user); overrides the password of O(url); never logged or returned.
      - When neither sets one, libpq's usual sources apply (C(PGPASSWORD) in the module's environment, C(~/.pgpass)).
    type: str
  db:
    description:
      - Name of the database to scan; overrides the database of O(url).
      - One of O(db) and O(url) (with a database) is required.
    type: str
  schemas:
    description:
      - The schemas whose tables (partitions included; partitioned parents are read through their partitions) and
        materialized views are scanned. A schema that does not exist fails the module before anything is read.
    type: list
    elements: str
    default: [public]
  exclude_tables:
    description:
      - Tables not to read, each as C(table) (in any of O(schemas)) or C(schema.table), exactly as named in the database
        (no quoting). An entry that names no table is reported with a warning.
    type: list
    elements: str
    default: []
  secrets:
    description:
      - The values that must never be stored, as a name (what a finding reports, for example C(STRIPE_SECRET_KEY)) and
        the value. Values shorter than 8 characters are refused (they would match by chance). Never logged or returned.
    type: dict
    default: {}
  max_rows_per_table:
    description:
      - The most rows read from each table (from 1 to 10000000). A table with more rows is reported with
        C(truncated=true), and what it holds beyond them is not seen.
    type: int
    default: 10000
  order_columns:
    description:
      - Candidate columns, in order of preference, of type C(timestamptz), C(timestamp) or C(date), by which the most recent
        rows of a table are read first (C(ORDER BY column DESC NULLS LAST)). The first one a table has is used; a table
        with none of them is read in whatever order PostgreSQL finds cheapest.
      - Ordering a large table costs a sort of the whole table unless the column is indexed (the service's
        C(payments.created_at) is).
    type: list
    elements: str
    default: [created_at, created, updated_at]
  statement_timeout:
    description:
      - PostgreSQL C(statement_timeout) of the session, with its unit (V(30s), V(500ms), V(2min)). Each table is read by
        one statement, which PostgreSQL cancels after this long. A table cancelled is named in RV(errors) and fails the
        module. V(0) (no limit) and a number without a unit are refused.
    type: str
    default: 30s
  scan_bytea:
    description:
      - Also read C(bytea) columns, as raw bytes. Off by default, as binary columns seldom hold text and are often large.
    type: bool
    default: false
notes:
  - The role connecting must be allowed to C(SELECT) from the tables (the service's own role is); a table it may not read
    fails the module, named in RV(errors).
  - Values stored in numeric columns (C(bigint), C(numeric)) are not scanned; a card number there is not found.
  - A row that holds a secret in a URL holds both the value and its password, and is reported under both kinds.
seealso:
  - module: payments.deploy.log_secret_scan_info
  - module: payments.deploy.pg_amcheck
  - name: PCI DSS requirement 3
    description: Protect stored account data; the PAN must be rendered unreadable wherever it is stored.
    link: https://www.pcisecuritystandards.org/document_library/
"""

EXAMPLES = r"""
- name: Scan the payment database for card numbers and the environment's secrets
  payments.deploy.card_data_scan_info:
    url: "{{ payments_env.DATABASE_URL }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/certs/db-ca.pem
    secrets:
      STRIPE_SECRET_KEY: "{{ payments_env.STRIPE_SECRET_KEY }}"
      STRIPE_WEBHOOK_SECRET: "{{ payments_env.STRIPE_WEBHOOK_SECRET }}"
      DATABASE_URL: "{{ payments_env.DATABASE_URL }}"
  register: card_data

- name: Fail naming every finding (table, column, rows and kind; never a value)
  ansible.builtin.assert:
    that: card_data.passed
    fail_msg: "{{ card_data.findings | map('to_json') | join('; ') }}"

- name: A larger sample of two schemas, without the audit table
  payments.deploy.card_data_scan_info:
    login_host: db.internal
    login_user: payments
    login_password: "{{ vault_payments_db_password }}"
    db: payments
    schemas: [public, billing]
    exclude_tables: [billing.audit_log]
    max_rows_per_table: 100000
    statement_timeout: 2min
"""

RETURN = r"""
passed:
  description: Whether every table was read and no card number and no secret was found in what was read.
  returned: always
  type: bool
findings:
  description:
    - One entry per table, column and kind found, with the number of rows read that hold it. C(kind) is
      C(card number ending NNNN), a secret's name, or C(NAME password) for the password of a URL. Never a value.
  returned: always
  type: list
  elements: dict
  sample: [{"table": "public.payments", "column": "description", "rows": 2, "kind": "card number ending 4242"},
           {"table": "public.stripe_events", "column": "payload", "rows": 1, "kind": "STRIPE_SECRET_KEY"}]
tables:
  description:
    - Each table read, as C(schema.table), with the columns scanned (empty when it has no text-like column, and then
      it is not read), the rows read, whether it has more rows than were read (C(truncated)), the column that ordered
      them (V(null) for any order) and the seconds its read took.
  returned: always
  type: list
  elements: dict
  sample: [{"table": "public.payments", "columns": ["id", "stripe_payment_intent_id", "currency", "status", "description"],
            "rows_scanned": 10000, "truncated": true, "order_column": "created_at", "seconds": 0.412}]
errors:
  description: The tables that could not be read (entirely), with PostgreSQL's message and SQLSTATE; the module then fails.
  returned: always
  type: list
  elements: dict
  sample: [{"table": "public.ledger", "sqlstate": "57014", "message": "canceling statement due to statement timeout"}]
rows_scanned:
  description: The rows read from all tables.
  returned: always
  type: int
  sample: 31002
seconds:
  description: Seconds the whole run took (connection, catalog queries and reads).
  returned: always
  type: float
  sample: 1.27
database:
  description: The database scanned.
  returned: always
  type: str
  sample: payments
schemas:
  description: The schemas scanned.
  returned: always
  type: list
  elements: str
  sample: [public]
connection:
  description: The connection settings used (never the password).
  returned: always
  type: dict
  sample: {"host": "db.internal", "port": 5432, "user": "payments", "ssl_mode": "verify-full", "ca_cert": null}
"""

import time
import typing as t

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils import _card_data_scan as scan
from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg


class CardDataScan:
    """One run of the module."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.started = time.monotonic()
        self.conn = pg.Connection(self.params)
        self.db: str = self.conn.dbname or ""
        self.schemas: list[str] = list(dict.fromkeys(self.params["schemas"] or []))
        self.result: dict[str, t.Any] = {
            "changed": False, "passed": False, "findings": [], "tables": [], "errors": [], "rows_scanned": 0, "seconds": 0.0,
            "database": self.db, "schemas": self.schemas, "connection": self.conn.describe(),
        }
        self.validate()
        self.needles = scan.needles(self.params["secrets"] or {})

    def validate(self) -> None:
        """Every input problem at once, before anything is connected to."""
        problems = scan.option_problems({**self.params, "db": self.db})
        problems += self.conn.problems
        if problems:
            self.module.fail_json(msg="; ".join(problems), changed=False)

    def finish(self, scanner: scan.Scanner | None, msg: str | None = None) -> t.NoReturn:
        if scanner is not None:
            self.result.update(findings=scanner.findings, tables=scanner.tables, errors=scanner.errors,
                               rows_scanned=scanner.rows_scanned)
        self.result["passed"] = msg is None and not self.result["findings"]
        self.result["seconds"] = round(time.monotonic() - self.started, 3)
        if msg is not None:
            self.module.fail_json(msg=self.conn.scrub(msg), **self.result)
        self.module.exit_json(**self.result)

    def run(self) -> t.NoReturn:
        session = None
        scanner = None
        try:
            session = scan.open_session(self.conn, self.db, self.params["statement_timeout"], [])
            missing = scan.missing_schemas(session, self.schemas)
            if missing:
                raise scan.ScanFailed(f"schema(s) {', '.join(repr(name) for name in missing)} do not exist in database {self.db!r}")
            tables, columns = scan.catalog(session, self.schemas)
            plans, used = scan.plan_tables(tables, columns, self.params["exclude_tables"], self.params["order_columns"],
                                           self.params["scan_bytea"])
            for entry in self.params["exclude_tables"]:
                if entry not in used:
                    self.module.warn(f"exclude_tables entry {entry!r} names no table of schema(s) {', '.join(self.schemas)}")
            if not plans:
                self.module.warn(f"schema(s) {', '.join(self.schemas)} of database {self.db!r} have no table to scan")
            scanner = scan.Scanner(session, self.params["max_rows_per_table"], self.needles, self.conn.scrub)
            for plan in plans:
                scanner.scan(plan)
        except (pg.PostgresError, scan.ScanFailed) as exc:
            self.finish(scanner, str(exc))
        finally:
            if session is not None:
                session.close()
        if scanner.errors:
            listing = "; ".join(f"table {e['table']}: {e['message']} [{e['sqlstate']}]" for e in scanner.errors)
            self.finish(scanner, f"could not read every table of database {self.db!r} (what was read is reported): {listing}")
        self.finish(scanner)


def main() -> None:
    argument_spec = pg.postgres_argument_spec(client_programs=False)  # no client program runs
    argument_spec.update(
        schemas={"type": "list", "elements": "str", "default": ["public"]},
        exclude_tables={"type": "list", "elements": "str", "default": []},
        secrets={"type": "dict", "default": {}, "no_log": True},
        max_rows_per_table={"type": "int", "default": 10000},
        order_columns={"type": "list", "elements": "str", "default": ["created_at", "created", "updated_at"]},
        statement_timeout={"type": "str", "default": "30s"},
        scan_bytea={"type": "bool", "default": False},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, required_one_of=[("url", "db")])
    if not pg.HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=pg.PSYCOPG_IMPORT_ERROR)
    CardDataScan(module).run()


if __name__ == "__main__":
    main()
