# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Scan the text-like columns of a PostgreSQL database for card numbers and secret values, reporting where and what
kind, never the value.

Private to the payments.deploy collection: the interface may change without notice.
Card numbers and secrets are recognised by ``_log_scan`` (``card_numbers``, ``secret_needles``), the same rules the log
scan applies. Each table is read by one bounded statement (``LIMIT``, the session's ``statement_timeout``), in a
read-only transaction of a read-only session, streamed row by row so that memory holds one row at a time.
"""

from __future__ import annotations

import datetime
import json
import re
import time
import typing as t

from ansible_collections.payments.deploy.plugins.module_utils import _log_scan as scan_lib
from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg

try:
    from psycopg import sql
except ImportError:
    sql = None  # the module reports the missing library before anything here runs

# The column types whose values are scanned as text (a domain over one, or an array of one, counts as that type).
TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "json", "jsonb"})
# Scanned as raw bytes, only when asked (scan_bytea): binary columns rarely hold text, and reading them costs more.
BYTEA = "bytea"
# The types a column named in order_columns must have to pick the most recent rows.
ORDER_TYPES = frozenset({"timestamptz", "timestamp", "date"})
DEFAULT_ORDER_COLUMNS = ("created_at", "created", "updated_at")
DEFAULT_MAX_ROWS = 10000
MAX_ROWS_LIMIT = 10_000_000
# A PostgreSQL duration with its unit: a bare number means milliseconds to PostgreSQL, which nobody means for a scan.
DURATION = re.compile(r"^(\d{1,9})\s*(ms|s|min|h|d)\Z")
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .-]{0,63}\Z")

# Ordinary tables (partitions included, so a partitioned table is read through its partitions once) and materialized
# views: what holds rows of its own. Temporary tables belong to another session.
TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'm') AND c.relpersistence <> 't'
ORDER BY 1, 2
"""

# Every column of those tables with the type it is made of: a domain is followed to its base type and an array to its
# element type, as far as they go; ``is_array`` tells whether an array was on the way.
COLUMNS_SQL = """
WITH RECURSIVE cols AS (
  SELECT n.nspname, c.relname, a.attnum, a.attname, a.atttypid
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'm') AND c.relpersistence <> 't'
), chain(nspname, relname, attnum, typid, is_array, depth) AS (
  SELECT nspname, relname, attnum, atttypid, false, 0 FROM cols
  UNION ALL
  SELECT ch.nspname, ch.relname, ch.attnum, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END,
         ch.is_array OR t.typtype <> 'd', ch.depth + 1
  FROM chain ch JOIN pg_type t ON t.oid = ch.typid
  WHERE (t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0)) AND ch.depth < 16
)
SELECT DISTINCT ON (ch.nspname, ch.relname, ch.attnum)
       ch.nspname, ch.relname, ch.attnum, cols.attname, tn.nspname, t.typname, ch.is_array
FROM chain ch
JOIN cols USING (nspname, relname, attnum)
JOIN pg_type t ON t.oid = ch.typid
JOIN pg_namespace tn ON tn.oid = t.typnamespace
ORDER BY ch.nspname, ch.relname, ch.attnum, ch.depth DESC
"""


class ScanFailed(Exception):
    """The scan cannot go on (a schema that does not exist, a session that is not read-only); the message says why."""


class Column(t.NamedTuple):
    name: str
    type_schema: str
    type_name: str
    is_array: bool


class TablePlan(t.NamedTuple):
    """What to read of one table: the scanned columns (name, whether read as raw bytes) and the ordering column."""

    schema: str
    table: str
    columns: tuple[tuple[str, bool], ...]
    order_column: str | None

    @property
    def name(self) -> str:
        return qualified(self.schema, self.table)


def qualified(schema: str, name: str) -> str:
    return f"{schema}.{name}"


def duration_ms(text: str) -> int | None:
    """Milliseconds of a PostgreSQL duration with a unit (``30s``, ``500ms``, ``2min``); None when it is not one."""
    match = DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    scale = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}[match.group(2)]
    return int(match.group(1)) * scale


def _names_problem(option: str, names: t.Any, required: bool = False, longest: int = 63) -> str | None:
    if required and not names:
        return f"{option} must name at least one"
    for name in names:
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            return f"{option} holds a name that is empty or not printable: {str(name)[:100]!r}"
        if len(name) > longest:
            return f"{option} holds a name longer than {longest} characters, which PostgreSQL's names cannot be: {name[:100]!r}"
    return None


def option_problems(params: t.Mapping[str, t.Any]) -> list[str]:
    """Every problem of the scan's own options at once (the connection's are ``pg.Connection.problems``); never a value
    of ``secrets``."""
    problems = []
    db = params.get("db")
    if db is not None:
        if not db.strip():
            problems.append("db must not be empty (set db, or url with a database name)")
        elif "=" in db or "://" in db or not db.isprintable():
            # libpq reads such a name as connection parameters in some places (and it names no real database)
            problems.append(f"db {db[:100]!r} must be a database name, not a connection string or a line break")
    # an exclude_tables entry may be schema.table: two names of at most 63 characters and a dot
    for option, required, longest in (("schemas", True, 63), ("exclude_tables", False, 127), ("order_columns", False, 63)):
        problem = _names_problem(option, params[option], required, longest)
        if problem:
            problems.append(problem)
    max_rows = params["max_rows_per_table"]
    if not 1 <= max_rows <= MAX_ROWS_LIMIT:
        problems.append(f"max_rows_per_table must be from 1 to {MAX_ROWS_LIMIT}")
    timeout = params["statement_timeout"]
    milliseconds = duration_ms(timeout)
    if milliseconds is None:
        problems.append(f"statement_timeout {timeout[:100]!r} is not a PostgreSQL duration with its unit, such as 30s, 500ms or 2min")
    elif milliseconds == 0:
        problems.append("statement_timeout must be more than 0: a scan of a production database must be bounded")
    elif milliseconds > 2_147_483_647:
        problems.append("statement_timeout must be at most 24 days (PostgreSQL's limit)")
    for name, value in (params["secrets"] or {}).items():
        if not isinstance(name, str) or not SECRET_NAME.match(name):
            problems.append(f"secrets holds a name that is not a variable name (letters, digits, '_', at most 64): {str(name)[:100]!r}")
        elif not isinstance(value, str):
            problems.append(f"secrets[{name}] must be a string, not {type(value).__name__}")
        elif len(value) < scan_lib.MIN_SECRET_LENGTH:
            problems.append(f"secrets[{name}] is shorter than {scan_lib.MIN_SECRET_LENGTH} characters (it would match by chance)")
    return problems


def needles(secrets: t.Mapping[str, str]) -> list[tuple[str, bytes]]:
    """What to look for, as ``(kind, bytes)``: each secret as ``secret_needles`` gives it, and each of those as it reads
    inside a JSON string or an array's text (``"`` and ``\\`` escaped), which is how a json, jsonb or array column
    shows it."""
    found: list[tuple[str, bytes]] = []
    for name in sorted(secrets):
        for label, needle in scan_lib.secret_needles(name, secrets[name]):
            text = needle.decode("utf-8")
            escaped = json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8")
            for candidate in (needle, escaped):
                if (label, candidate) not in found:
                    found.append((label, candidate))
    return found


def kinds_in(value: bytes, secret_needles: t.Sequence[tuple[str, bytes]], now: float) -> list[str]:
    """The kinds of finding one value holds, each once: a secret's name (or ``NAME password``), or
    ``card number ending NNNN``."""
    kinds: list[str] = []
    for label, needle in secret_needles:
        if label not in kinds and needle in value:
            kinds.append(label)
    for digits in scan_lib.card_numbers(value, now):
        kind = f"card number ending {digits[-4:].decode()}"
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def as_bytes(value: t.Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


def excluded(schema: str, table: str, exclude: t.Iterable[str]) -> str | None:
    """The entry of ``exclude`` that names the table (``table`` in any scanned schema, or ``schema.table``), if any."""
    for entry in exclude:
        if entry in (table, qualified(schema, table)):
            return entry
    return None


def plan_tables(tables: t.Iterable[tuple[str, str]], columns: t.Iterable[tuple[t.Any, ...]], exclude: t.Sequence[str],
                order_columns: t.Sequence[str], scan_bytea: bool) -> tuple[list[TablePlan], set[str]]:
    """The tables to read (those ``exclude`` does not name) with their scanned columns and ordering column, from the
    rows of TABLES_SQL and COLUMNS_SQL; and the entries of ``exclude`` that named a table."""
    by_table: dict[tuple[str, str], list[Column]] = {}
    for schema, table, _attnum, name, type_schema, type_name, is_array in columns:
        by_table.setdefault((schema, table), []).append(Column(name, type_schema, type_name, bool(is_array)))
    plans, used = [], set()
    for schema, table in tables:
        entry = excluded(schema, table, exclude)
        if entry is not None:
            used.add(entry)
            continue
        cols = by_table.get((schema, table), [])
        scanned = []
        for col in cols:
            if col.type_schema != "pg_catalog":
                continue
            if col.type_name in TEXT_TYPES:
                scanned.append((col.name, False))
            elif scan_bytea and col.type_name == BYTEA and not col.is_array:
                scanned.append((col.name, True))
        orderable = {col.name for col in cols if col.type_schema == "pg_catalog" and col.type_name in ORDER_TYPES and not col.is_array}
        order = next((name for name in order_columns if name in orderable), None)
        plans.append(TablePlan(schema, table, tuple(scanned), order))
    return plans, used


def select_sql(plan: TablePlan) -> t.Any:
    """``SELECT <columns> FROM <schema>.<table> [ORDER BY <order> DESC NULLS LAST] LIMIT %s``, every name an Identifier;
    text-like columns as text, bytea columns as they are."""
    exprs = [sql.Identifier(name) if raw else sql.SQL("{}::text").format(sql.Identifier(name)) for name, raw in plan.columns]
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs), sql.Identifier(plan.schema, plan.table))
    if plan.order_column is not None:
        query += sql.SQL(" ORDER BY {} DESC NULLS LAST").format(sql.Identifier(plan.order_column))
    return query + sql.SQL(" LIMIT %s")


def open_session(conn: pg.Connection, dbname: str, statement_timeout: str, queries: list[str]) -> pg.Session:
    """A session on ``dbname`` that cannot write (``default_transaction_read_only``) and whose every statement ends
    after ``statement_timeout``; fails unless the server confirms that its transactions are read-only."""
    session = pg.Session(conn, dbname, queries)
    try:
        session.execute("SET default_transaction_read_only = on")
        session.execute("SELECT set_config('statement_timeout', %s, false)", (statement_timeout.strip(),))
        if session.value("SHOW transaction_read_only") != "on":
            raise ScanFailed(f"the session on database {dbname!r} is not read-only after SET default_transaction_read_only: "
                             "nothing was scanned")
    except BaseException:
        session.close()
        raise
    return session


def withheld(text: str, secret_needles: t.Sequence[tuple[str, bytes]], now: float) -> str:
    """An error message safe to return: each secret masked; withheld entirely when it holds a card number."""
    for dummy, needle in secret_needles:
        text = text.replace(needle.decode("utf-8", "replace"), pg.MASK)
    if scan_lib.card_numbers(text.encode("utf-8", "surrogateescape"), now):
        return "(the message is withheld: it holds a card number)"
    return text


class Scanner:
    """Reads each planned table in its own read-only transaction and counts, per column, the rows holding each kind."""

    def __init__(self, session: pg.Session, max_rows: int, secret_needles: list[tuple[str, bytes]],
                 scrub: t.Callable[[str], str], now: float | None = None) -> None:
        self.session = session
        self.max_rows = max_rows
        self.needles = secret_needles
        self.scrub = scrub
        self.now = datetime.datetime.now(datetime.timezone.utc).timestamp() if now is None else now
        self.tables: list[dict[str, t.Any]] = []
        self.findings: list[dict[str, t.Any]] = []
        self.errors: list[dict[str, t.Any]] = []

    @property
    def rows_scanned(self) -> int:
        return sum(entry["rows_scanned"] for entry in self.tables)

    def scan(self, plan: TablePlan) -> None:
        entry = {"table": plan.name, "columns": [name for name, dummy in plan.columns], "rows_scanned": 0, "truncated": False,
                 "order_column": plan.order_column, "seconds": 0.0}
        self.tables.append(entry)
        if not plan.columns:
            return
        started = time.monotonic()
        counts: dict[tuple[str, str], int] = {}
        try:
            self._read(plan, entry, counts)
        except pg.psycopg.Error as exc:
            message = exc.diag.message_primary or str(exc).strip()
            self.errors.append({"table": plan.name, "sqlstate": exc.sqlstate,
                                "message": withheld(self.scrub(message), self.needles, self.now)})
        entry["seconds"] = round(time.monotonic() - started, 4)
        names = [name for name, dummy in plan.columns]
        for (column, kind), rows in sorted(counts.items(), key=lambda item: (names.index(item[0][0]), item[0][1])):
            self.findings.append({"table": plan.name, "column": column, "rows": rows, "kind": kind})

    def _read(self, plan: TablePlan, entry: dict[str, t.Any], counts: dict[tuple[str, str], int]) -> None:
        names = [name for name, dummy in plan.columns]
        raw = self.session.raw
        self.session.queries.append(f"SELECT {len(names)} column(s) FROM {plan.name} LIMIT {self.max_rows + 1}")
        with raw.transaction():
            raw.execute("SET TRANSACTION READ ONLY")
            with raw.cursor() as cursor:
                # one row at a time (libpq's single-row mode): memory holds a row, not the table's LIMIT
                for row in cursor.stream(select_sql(plan), (self.max_rows + 1,)):
                    if entry["rows_scanned"] == self.max_rows:
                        entry["truncated"] = True  # the one row past the bound: there are more rows than were read
                        continue
                    entry["rows_scanned"] += 1
                    for column, value in zip(names, row):
                        if value is None:
                            continue
                        for kind in kinds_in(as_bytes(value), self.needles, self.now):
                            counts[(column, kind)] = counts.get((column, kind), 0) + 1


def missing_schemas(session: pg.Session, schemas: t.Sequence[str]) -> list[str]:
    found = {name for (name,) in session.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(schemas),)).fetchall()}
    return [name for name in schemas if name not in found]


def catalog(session: pg.Session, schemas: t.Sequence[str]) -> tuple[list[tuple[str, str]], list[tuple[t.Any, ...]]]:
    """The rows of TABLES_SQL and COLUMNS_SQL for ``schemas``."""
    tables = [(row[0], row[1]) for row in session.execute(TABLES_SQL, (list(schemas),)).fetchall()]
    columns = session.execute(COLUMNS_SQL, (list(schemas),)).fetchall()
    return tables, columns
