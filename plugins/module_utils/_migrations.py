# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Migration plans (plan file plus deploy/verify/revert SQL per change), their checksums and the registry SQL.

Private to the payments.deploy collection: the interface may change without notice.
Only the standard library is needed, plus PyYAML for a plan written in YAML (plan.json needs nothing).
The plan format is documented in docs/migrations.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import typing as t
from dataclasses import dataclass, field

YAML_IMPORT_ERROR: str | None
try:
    import yaml
except ImportError:
    import traceback

    YAML_IMPORT_ERROR = traceback.format_exc()
else:
    YAML_IMPORT_ERROR = None

KINDS = ("expand", "contract")
SCRIPTS = ("deploy", "verify", "revert")
PLAN_FILES = ("plan.yml", "plan.yaml", "plan.json")
BASE = "@base"
CHANGE_KEYS = frozenset({"name", "kind", "transactional", "release", "requires", "note"})
# The patterns below are matched in full (fullmatch): a trailing newline is not accepted.
# Change names become file names and appear in messages: one safe word.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# Registry schema and table are quoted identifiers: lower case keeps them usable unquoted too.
IDENTIFIER_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SEMVER_PATTERN = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
# A PostgreSQL duration as SET accepts it: a number with an optional unit (no unit: milliseconds).
DURATION_PATTERN = re.compile(r"\d+(\.\d+)?[ \t]*(us|ms|s|min|h|d)?")
# Statements that would end the transaction the module runs a change in (or the savepoint a verify script runs in).
TRANSACTION_CONTROL = frozenset({"begin", "commit", "rollback", "end", "abort", "start", "savepoint", "release"})
# SQLSTATEs worth another attempt: the same change may pass once the competing lock or transaction is gone.
RETRYABLE_SQLSTATES = {"55P03": "lock_not_available", "40001": "serialization_failure", "40P01": "deadlock_detected"}


class PlanError(Exception):
    """The plan cannot be used; ``problems`` lists every reason at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Change:
    """One change of a plan with its SQL read from disk."""

    name: str
    kind: str
    transactional: bool
    release: str
    requires: tuple[str, ...]
    note: str
    paths: dict[str, str]
    sql: dict[str, str] = field(repr=False)
    checksum: str

    def summary(self) -> dict[str, t.Any]:
        """The fields a result reports about the change."""
        return {"name": self.name, "kind": self.kind, "transactional": self.transactional, "release": self.release}


@dataclass(frozen=True)
class Plan:
    """An ordered list of changes, read from ``path``."""

    path: str
    changes: tuple[Change, ...]

    @property
    def names(self) -> list[str]:
        return [change.name for change in self.changes]

    def index(self, name: str) -> int:
        """Position of a change; -1 for @base (before the first change)."""
        return -1 if name == BASE else self.names.index(name)


@dataclass(frozen=True)
class AppliedChange:
    """A row of the registry."""

    name: str
    kind: str
    checksum: str
    release: str
    applied_at: str
    applied_by: str


def checksum(deploy: bytes, verify: bytes, revert: bytes) -> str:
    """sha256 over the three scripts, each preceded by its role and length so that no two inputs collide."""
    digest = hashlib.sha256()
    for role, data in zip(SCRIPTS, (deploy, verify, revert)):
        digest.update(f"{role} {len(data)}\n".encode("ascii"))
        digest.update(data)
    return digest.hexdigest()


def semver_key(version: str) -> tuple[int, int, int]:
    """X.Y.Z as a tuple that sorts like the versions do."""
    match = SEMVER_PATTERN.fullmatch(version)
    if not match:
        raise ValueError(f"{version!r} is not a semantic version X.Y.Z")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def split_sql(text: str) -> list[str]:
    """Split SQL into statements on top-level semicolons; top-level comments are dropped.

    Knows quoted strings ('', E'' with backslash escapes), quoted identifiers, dollar quoting ($tag$...$tag$),
    line comments and nested block comments, so semicolons inside any of them do not split.
    """
    statements: list[str] = []
    current: list[str] = []
    i, size = 0, len(text)
    while i < size:
        char = text[i]
        nxt = text[i + 1] if i + 1 < size else ""
        if char == "-" and nxt == "-":
            end = text.find("\n", i)
            i = size if end < 0 else end
            current.append(" ")
            continue
        if char == "/" and nxt == "*":
            i = _block_comment_end(text, i)
            current.append(" ")
            continue
        if char == ";":
            _flush(statements, current)
            current = []
            i += 1
            continue
        if char == "'":
            escapes = i > 0 and text[i - 1] in "eE" and (i < 2 or not _word_char(text[i - 2]))
            end = _quote_end(text, i, "'", escapes)
        elif char == '"':
            end = _quote_end(text, i, '"', False)
        elif char == "$" and not (i > 0 and _word_char(text[i - 1])):
            end = _dollar_end(text, i)
        else:
            end = i + 1
        current.append(text[i:end])
        i = end
    _flush(statements, current)
    return statements


def _word_char(char: str) -> bool:
    """A character that continues an identifier for PostgreSQL's lexer: ASCII letters, digits, _ and $, and every
    character from 0x80 up (so ``x€$$`` is one identifier, not ``x€`` then a dollar quote)."""
    return (char.isascii() and char.isalnum()) or char in "_$" or ord(char) >= 0x80


def _flush(statements: list[str], current: list[str]) -> None:
    statement = "".join(current).strip()
    if statement:
        statements.append(statement)


def _block_comment_end(text: str, start: int) -> int:
    depth, i = 0, start
    while i < len(text):
        pair = text[i:i + 2]
        if pair == "/*":
            depth, i = depth + 1, i + 2
        elif pair == "*/":
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(text)


def _quote_end(text: str, start: int, quote: str, backslash_escapes: bool) -> int:
    i = start + 1
    while i < len(text):
        char = text[i]
        if backslash_escapes and char == "\\":
            i += 2
            continue
        if char == quote:
            if text[i + 1:i + 2] == quote:  # doubled quote inside the literal
                i += 2
                continue
            return i + 1
        i += 1
    return len(text)


# A dollar quote's tag, as PostgreSQL's lexer reads it (characters from 0x80 up are letters to it).
_DOLLAR_TAG = re.compile("\\$([A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\\$")


def _dollar_end(text: str, start: int) -> int:
    match = _DOLLAR_TAG.match(text, start)
    if not match:  # a positional parameter such as $1
        return start + 1
    tag = match.group(0)
    end = text.find(tag, match.end())
    return len(text) if end < 0 else end + len(tag)


PREPARE_TRANSACTION = re.compile(r"\s*prepare\s+transaction\b", re.IGNORECASE)


def first_word(statement: str) -> str:
    """The first keyword of a statement, lower case."""
    match = re.match(r"\s*([A-Za-z]+)", statement)
    return match.group(1).lower() if match else ""


def duration_problem(option: str, value: str) -> str | None:
    """Why ``value`` is not a duration PostgreSQL's SET accepts, or None."""
    # surrounding blanks are fine, a line break or another control character is not (it would split the SET)
    if value.isprintable() and DURATION_PATTERN.fullmatch(value.strip()):
        return None
    return f"{option} {value!r} is not a duration such as '5s', '500ms' or '5min' (a number, optionally followed by us, ms, s, min, h or d)"


def identifier_problem(option: str, value: str) -> str | None:
    """Why ``value`` cannot name the registry schema or table, or None."""
    if IDENTIFIER_PATTERN.fullmatch(value):
        return None
    return f"{option} {value!r} must be a lower-case identifier (letters, digits and '_', not starting with a digit, at most 63 characters)"


# --- plan files ---------------------------------------------------------------------------------------


def find_plan_file(plan_dir: str) -> str:
    """The plan file in ``plan_dir``: exactly one of plan.yml, plan.yaml, plan.json."""
    if not os.path.isdir(plan_dir):
        raise PlanError([f"plan_dir {plan_dir} is not a directory on the target host"])
    found = [os.path.join(plan_dir, name) for name in PLAN_FILES if os.path.isfile(os.path.join(plan_dir, name))]
    if not found:
        raise PlanError([f"plan_dir {plan_dir} holds no plan file (one of {', '.join(PLAN_FILES)})"])
    if len(found) > 1:
        raise PlanError([f"plan_dir {plan_dir} holds more than one plan file ({', '.join(os.path.basename(p) for p in found)}): keep one"])
    return found[0]


def read_plan_data(path: str) -> t.Any:
    """The parsed plan file (YAML or JSON)."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError([f"cannot read plan file {path}: {exc}"]) from exc
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise PlanError([f"plan file {path} is not valid JSON: {exc}"]) from exc
    if YAML_IMPORT_ERROR is not None:
        raise PlanError([f"plan file {path} is YAML but PyYAML is not installed on the target host (or use plan.json)"])
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanError([f"plan file {path} is not valid YAML: {exc}"]) from exc


def load_plan(plan_dir: str) -> Plan:
    """Read and validate a plan directory; every problem is reported at once in a PlanError."""
    path = find_plan_file(plan_dir)
    return parse_plan(read_plan_data(path), path)


def parse_plan(data: t.Any, path: str) -> Plan:
    """Validate parsed plan data whose scripts live next to ``path``."""
    plan_dir = os.path.dirname(path)
    if not isinstance(data, dict) or set(data) != {"changes"} or not isinstance(data["changes"], list) or not data["changes"]:
        raise PlanError([f"plan file {path} must be a mapping with one key, 'changes', holding a non-empty list of changes"])
    problems: list[str] = []
    changes: list[Change] = []
    seen: set[str] = set()
    previous_release: tuple[int, int, int] | None = None
    for position, entry in enumerate(data["changes"], start=1):
        change = _parse_change(entry, position, plan_dir, seen, problems)
        if change is None:
            continue
        key = semver_key(change.release)
        if previous_release is not None and key < previous_release:
            problems.append(f"change {change.name}: release {change.release} is older than the release of a change before it; "
                            "the plan must be ordered by release so that each release ships a prefix of it")
        previous_release = max(key, previous_release or key)
        changes.append(change)
    if problems:
        raise PlanError(problems)
    return Plan(path=path, changes=tuple(changes))


def _parse_change(entry: t.Any, position: int, plan_dir: str, seen: set[str], problems: list[str]) -> Change | None:
    if not isinstance(entry, dict):
        problems.append(f"change #{position} must be a mapping with name, kind, release (and optionally transactional, requires, note)")
        return None
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        problems.append(f"change #{position}: name {name!r} must be a string of letters, digits, '_', '.', '-' (for example 0002_payments)")
        return None
    label = f"change {name}"
    before = len(problems)
    unknown = sorted(str(key) for key in entry if key not in CHANGE_KEYS)
    if unknown:
        problems.append(f"{label}: unknown keys {', '.join(unknown)} (allowed: {', '.join(sorted(CHANGE_KEYS))})")
    if name in seen:
        problems.append(f"{label}: the name is used twice in the plan")
    kind = entry.get("kind")
    if kind not in KINDS:
        problems.append(f"{label}: kind {kind!r} must be one of {', '.join(KINDS)}")
    transactional = entry.get("transactional", True)
    if not isinstance(transactional, bool):
        problems.append(f"{label}: transactional must be true or false, not {transactional!r}")
    release = entry.get("release")
    if not isinstance(release, str) or not SEMVER_PATTERN.fullmatch(release):
        problems.append(f"{label}: release {release!r} must be the semantic version X.Y.Z that introduced it (quote it in YAML)")
    requires = entry.get("requires", [])
    if not isinstance(requires, list) or not all(isinstance(item, str) for item in requires):
        problems.append(f"{label}: requires must be a list of change names")
        requires = []
    missing = [item for item in requires if item not in seen]
    if missing:
        problems.append(f"{label}: requires {', '.join(missing)}, which must be changes listed before it in the plan")
    seen.add(name)
    note = entry.get("note", "")
    if not isinstance(note, str):
        problems.append(f"{label}: note must be a string")
    paths = {script: os.path.join(plan_dir, script, f"{name}.sql") for script in SCRIPTS}
    raw = {script: _read_script(label, script, path, problems) for script, path in paths.items()}
    if len(problems) > before or None in raw.values():
        return None
    data = t.cast("dict[str, bytes]", raw)
    sql = {script: content.decode("utf-8") for script, content in data.items()}
    return Change(name=name, kind=t.cast(str, kind), transactional=t.cast(bool, transactional), release=t.cast(str, release),
                  requires=tuple(requires), note=t.cast(str, note), paths=paths, sql=sql,
                  checksum=checksum(data["deploy"], data["verify"], data["revert"]))


def _read_script(label: str, script: str, path: str, problems: list[str]) -> bytes | None:
    try:
        with open(path, "rb") as stream:
            data = stream.read()
        text = data.decode("utf-8")
    except FileNotFoundError:
        problems.append(f"{label}: {script} script {path} is missing")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{label}: cannot read {script} script {path}: {exc}")
        return None
    if "\0" in text:
        # libpq sends a script as a C string: it would end at the NUL while the checksum covers the whole file
        problems.append(f"{label}: {script} script {path} contains a NUL byte (at byte {data.index(0)}): PostgreSQL "
                        "cannot run it as written")
        return None
    statements = split_sql(text)
    if not statements:
        problems.append(f"{label}: {script} script {path} holds no SQL statement")
        return None
    control = sorted({first_word(s).upper() for s in statements if first_word(s) in TRANSACTION_CONTROL}
                     | {"PREPARE TRANSACTION" for s in statements if PREPARE_TRANSACTION.match(s)})
    if control:
        problems.append(f"{label}: {script} script {path} contains {', '.join(control)}: each change runs in a transaction the "
                        "module manages, so scripts must not begin or end transactions")
        return None
    return data


# --- comparing a plan with the registry ---------------------------------------------------------------


def registry_problems(plan: Plan, applied: list[AppliedChange], allow_newer_expand: bool = False) -> list[str]:
    """Why the plan cannot be used against a database with these applied changes (empty when it can).

    With ``allow_newer_expand``, changes a newer release applied are accepted when all are expand changes and the
    whole plan is applied (an older release deployed again runs on the newer, compatible schema)."""
    problems: list[str] = []
    by_name = {change.name: change for change in plan.changes}
    unknown = [row for row in applied if row.name not in by_name]
    applied_names = {row.name for row in applied}
    if unknown and allow_newer_expand:
        contract = [row.name for row in unknown if row.kind != "expand"]
        missing = [name for name in plan.names if name not in applied_names]
        if contract:
            problems.append(f"a newer release applied the contract change(s) {', '.join(contract)}: this release cannot run on that schema")
        if missing:
            problems.append(f"a newer release migrated the database, but changes {', '.join(missing)} of this plan are not applied")
        unknown = []
    if unknown:
        listed = ", ".join(f"{row.name} (release {row.release}, applied {row.applied_at} by {row.applied_by})" for row in unknown)
        problems.append(f"the database has applied changes that are not in plan {plan.path}: {listed}. It was migrated by a newer "
                        "release (or by another plan); use that release's plan, which knows how to revert them")
    for row in applied:
        change = by_name.get(row.name)
        if change is not None and change.checksum != row.checksum:
            problems.append(f"applied change {row.name} was edited after it was deployed: the registry holds checksum {row.checksum}, "
                            f"the plan's files give {change.checksum} ({', '.join(change.paths.values())}). "
                            "Put the files back as they were deployed and add a new change instead")
    later = [name for name in reversed(plan.names) if name in applied_names]
    if later:
        last = plan.index(later[0])
        gaps = [name for name in plan.names[:last] if name not in applied_names]
        if gaps:
            problems.append(f"changes {', '.join(gaps)} are not applied but the later change {later[0]} is: new changes must be "
                            "added at the end of the plan, never before applied ones")
    return problems


def head(plan: Plan, applied_names: t.Collection[str]) -> str | None:
    """The last change of the plan that is applied, or None."""
    return next((name for name in reversed(plan.names) if name in applied_names), None)


def to_deploy(plan: Plan, applied_names: t.Collection[str], target: str) -> list[Change]:
    """Changes to apply, in plan order, so that ``target`` and everything before it is applied."""
    return [change for change in plan.changes[:plan.index(target) + 1] if change.name not in applied_names]


def to_revert(plan: Plan, applied_names: t.Collection[str], target: str) -> list[Change]:
    """Applied changes after ``target`` (all of them for @base), newest first."""
    return [change for change in reversed(plan.changes[plan.index(target) + 1:]) if change.name in applied_names]


# --- the registry -------------------------------------------------------------------------------------


def quote_identifier(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def advisory_lock_key(schema: str, table: str) -> int:
    """The signed 64-bit key of the migration advisory lock: the first 8 bytes of sha256('payments.deploy:SCHEMA.TABLE')."""
    digest = hashlib.sha256(f"payments.deploy:{schema}.{table}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class RegistrySQL:
    """The SQL that reads and writes the registry table SCHEMA.TABLE (names validated by identifier_problem)."""

    def __init__(self, schema: str, table: str) -> None:
        self.name = f"{schema}.{table}"
        self.qualified = f"{quote_identifier(schema)}.{quote_identifier(table)}"
        self.lock_key = advisory_lock_key(schema, table)
        self.exists = "SELECT to_regclass(%s) IS NOT NULL"
        self.exists_params = (self.qualified,)
        self.create = (
            f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}",
            f"""CREATE TABLE IF NOT EXISTS {self.qualified} (
    name          text        PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('expand', 'contract')),
    checksum      text        NOT NULL,
    release       text        NOT NULL,
    transactional boolean     NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    applied_by    text        NOT NULL DEFAULT session_user
)""",
            f"COMMENT ON TABLE {self.qualified} IS 'Migration changes applied by payments.deploy.db_migrate (docs/migrations.md)'",
        )
        self.select = (f"SELECT name, kind, checksum, release, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                       f"applied_by FROM {self.qualified} ORDER BY applied_at, name")
        self.insert = (f"INSERT INTO {self.qualified} (name, kind, checksum, release, transactional, applied_at, applied_by) "
                       "VALUES (%s, %s, %s, %s, %s, clock_timestamp(), session_user)")
        self.delete = f"DELETE FROM {self.qualified} WHERE name = %s"

    def insert_params(self, change: Change) -> tuple[t.Any, ...]:
        return change.name, change.kind, change.checksum, change.release, change.transactional


# Who holds the migration advisory lock (held by a connection, on one bigint key: classid = high, objid = low 32 bits).
LOCK_HOLDER_SQL = """SELECT l.pid, a.usename, a.application_name, a.client_addr::text,
       to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), a.state
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %s AND l.objid::bigint = %s"""


def lock_holder_params(key: int) -> tuple[int, int]:
    """classid and objid under which pg_locks shows the advisory lock ``key``."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF
