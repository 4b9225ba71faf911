"""Unit tests of db_migrate and its plan/registry helpers (no database: see tests/integration/migrations for those)."""

from __future__ import annotations

import json
import shutil
import socket
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _migrations
from ansible_collections.payments.deploy.plugins.module_utils._migrations import (
    AppliedChange,
    PlanError,
    RegistrySQL,
    advisory_lock_key,
    checksum,
    head,
    load_plan,
    lock_holder_params,
    registry_problems,
    semver_key,
    split_sql,
    to_deploy,
    to_revert,
)
from ansible_collections.payments.deploy.plugins.modules import db_migrate

COLLECTION_ROOT = Path(__file__).resolve().parents[4]
SERVICE_PLAN = COLLECTION_ROOT / "lab" / "payment_service" / "migrations"
SERVICE_CHANGES = ["0001_customers", "0002_payments_and_events", "0003_payments_description", "0004_payments_created_at_index"]


def write_plan(directory: Path, changes: list[dict[str, t.Any]], scripts: dict[str, str] | None = None,
               plan_name: str = "plan.json") -> Path:
    """A plan directory with ``changes`` and a script per change and role (``scripts`` maps 'deploy/NAME' to SQL)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / plan_name).write_text(json.dumps({"changes": changes}))
    for change in changes:
        for role in ("deploy", "verify", "revert"):
            (directory / role).mkdir(exist_ok=True)
            sql = (scripts or {}).get(f"{role}/{change['name']}", f"SELECT '{role} {change['name']}';\n")
            (directory / role / f"{change['name']}.sql").write_text(sql)
    return directory


def change(name: str, release: str = "1.0.0", **extra: t.Any) -> dict[str, t.Any]:
    return {"name": name, "kind": "expand", "release": release, **extra}


def applied_row(plan: _migrations.Plan, name: str, digest: str | None = None) -> AppliedChange:
    found = next((c for c in plan.changes if c.name == name), None)
    return AppliedChange(name, "expand", digest or (found.checksum if found else "0" * 64), "1.0.0", "2026-01-01T00:00:00Z", "postgres")


# --- plan files -----------------------------------------------------------------------------------------


def test_the_service_plan_loads_in_order_with_its_files() -> None:
    plan = load_plan(str(SERVICE_PLAN))
    assert plan.names == SERVICE_CHANGES
    assert [c.release for c in plan.changes] == ["1.0.0", "1.0.0", "1.1.0", "1.1.0"]
    assert [c.transactional for c in plan.changes] == [True, True, True, False]
    assert {c.kind for c in plan.changes} == {"expand"}
    last = plan.changes[-1]
    assert last.paths["deploy"] == str(SERVICE_PLAN / "deploy" / f"{last.name}.sql")
    assert "CONCURRENTLY" in last.sql["deploy"]
    files = [(SERVICE_PLAN / role / f"{last.name}.sql").read_bytes() for role in ("deploy", "verify", "revert")]
    assert last.checksum == checksum(*files)


def test_the_service_plan_creates_what_bootstrap_sql_creates() -> None:
    # The lab's bootstrap.sql creates the tables too: 0001 and 0002 must adopt them as they are (IF NOT EXISTS, same definitions).
    def statements(path: Path) -> list[str]:
        return [" ".join(statement.split()) for statement in split_sql(path.read_text())]

    bootstrap = statements(SERVICE_PLAN.parent / "bootstrap.sql")
    plan = [s for name in SERVICE_CHANGES[:2] for s in statements(SERVICE_PLAN / "deploy" / f"{name}.sql")]
    assert bootstrap and all(statement.startswith(("CREATE TABLE IF NOT EXISTS", "CREATE INDEX IF NOT EXISTS")) for statement in plan)
    assert [statement for statement in bootstrap if statement not in plan] == []


def test_checksum_covers_every_script_and_their_boundaries() -> None:
    base = checksum(b"a", b"b", b"c")
    assert len(base) == 64 and base == checksum(b"a", b"b", b"c")
    assert len({base, checksum(b"a ", b"b", b"c"), checksum(b"a", b"bb", b"c"), checksum(b"a", b"b", b"c\n"),
                checksum(b"ab", b"", b"c"), checksum(b"b", b"a", b"c")}) == 6


def test_a_yaml_and_a_json_plan_give_the_same_changes(tmp_path: Path) -> None:
    changes = [change("0001_a"), change("0002_b", "1.1.0", transactional=False, requires=["0001_a"], note="n")]
    as_json = load_plan(str(write_plan(tmp_path / "j", changes)))
    write_plan(tmp_path / "y", changes, plan_name="plan.yml")
    (tmp_path / "y" / "plan.yml").write_text(
        "changes:\n  - {name: 0001_a, kind: expand, release: 1.0.0}\n"
        "  - {name: 0002_b, kind: expand, release: '1.1.0', transactional: false, requires: [0001_a], note: n}\n")
    as_yaml = load_plan(str(tmp_path / "y"))
    assert [(c.name, c.transactional, c.requires, c.note, c.checksum) for c in as_json.changes] == \
        [(c.name, c.transactional, c.requires, c.note, c.checksum) for c in as_yaml.changes]
    assert as_json.changes[0].transactional is True and as_json.changes[1].requires == ("0001_a",)


def test_every_plan_problem_is_reported_at_once(tmp_path: Path) -> None:
    plan_dir = write_plan(tmp_path, [
        change("0001_a"),
        change("0001_a"),
        {"name": "0002_b", "kind": "shrink", "release": "1.0", "transactional": "no", "extra": 1},
        change("0003_c", "0.9.0", requires=["0009_z"]),
        change("0004_d"),
    ], scripts={"deploy/0004_d": "BEGIN;\nCREATE TABLE d (id int);\nCOMMIT;\n", "verify/0001_a": "-- nothing here\n"})
    (plan_dir / "revert" / "0003_c.sql").unlink()
    with pytest.raises(PlanError) as caught:
        load_plan(str(plan_dir))
    text = "\n".join(caught.value.problems)
    for expected in ("change 0001_a: verify script", "holds no SQL statement", "change 0001_a: the name is used twice",
                     "kind 'shrink'", "release '1.0'", "transactional must be true or false", "unknown keys extra",
                     "requires 0009_z", "revert script", "0003_c.sql is missing", "contains BEGIN, COMMIT"):
        assert expected in text, expected


def test_releases_out_of_order_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="0002_b: release 1.0.0 is older"):
        load_plan(str(write_plan(tmp_path, [change("0001_a", "1.2.0"), change("0002_b", "1.0.0")])))


@pytest.mark.parametrize("content, expected", [
    ("[]", "must be a mapping with one key, 'changes'"),
    ("{\"changes\": []}", "non-empty list"),
    ("{\"changes\": [1]}", "change #1 must be a mapping"),
    ("{\"changes\": [{\"name\": \"bad name\"}]}", "name 'bad name'"),
    ("{\"changes\": [{\"name\": \"@base\"}]}", "name '@base'"),
    ("{not json", "is not valid JSON"),
])
def test_malformed_plans_are_rejected(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "plan.json").write_text(content)
    with pytest.raises(PlanError, match=expected):
        load_plan(str(tmp_path))


def test_plan_directory_problems(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="is not a directory"):
        load_plan(str(tmp_path / "absent"))
    with pytest.raises(PlanError, match="holds no plan file"):
        load_plan(str(tmp_path))
    (tmp_path / "plan.yml").write_text("changes: [")
    with pytest.raises(PlanError, match="is not valid YAML"):
        load_plan(str(tmp_path))
    (tmp_path / "plan.json").write_text("{}")
    with pytest.raises(PlanError, match="more than one plan file"):
        load_plan(str(tmp_path))


# --- SQL splitting (non-transactional changes run statement by statement) --------------------------------


def test_split_sql_ignores_semicolons_in_strings_identifiers_dollar_quotes_and_comments() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE INDEX CONCURRENTLY i ON "odd;table" (a);
    /* block; /* nested; */ still comment; */
    INSERT INTO t VALUES ('it''s; fine', E'back\\'slash; too', $$dollar; body$$, $tag$ $$ ; $tag$);
    DO $body$ BEGIN PERFORM 1; END $body$;
    SELECT $1;;
    """
    statements = split_sql(sql)
    assert statements == [
        'CREATE INDEX CONCURRENTLY i ON "odd;table" (a)',
        "INSERT INTO t VALUES ('it''s; fine', E'back\\'slash; too', $$dollar; body$$, $tag$ $$ ; $tag$)",
        "DO $body$ BEGIN PERFORM 1; END $body$",
        "SELECT $1",
    ]
    assert not split_sql("-- only a comment\n/* and another */\n")


def test_semver_key_orders_like_versions() -> None:
    assert semver_key("1.10.0") > semver_key("1.9.3") > semver_key("1.0.0")
    with pytest.raises(ValueError):
        semver_key("1.0")


# --- plan against registry --------------------------------------------------------------------------------


def test_pending_changes_heads_and_revert_order() -> None:
    plan = load_plan(str(SERVICE_PLAN))
    applied = SERVICE_CHANGES[:2]
    assert [c.name for c in to_deploy(plan, applied, SERVICE_CHANGES[-1])] == SERVICE_CHANGES[2:]
    assert [c.name for c in to_deploy(plan, applied, SERVICE_CHANGES[2])] == SERVICE_CHANGES[2:3]
    assert not to_deploy(plan, applied, SERVICE_CHANGES[0])
    assert [c.name for c in to_revert(plan, SERVICE_CHANGES, SERVICE_CHANGES[1])] == SERVICE_CHANGES[3:1:-1]
    assert [c.name for c in to_revert(plan, SERVICE_CHANGES, "@base")] == SERVICE_CHANGES[::-1]
    assert head(plan, applied) == SERVICE_CHANGES[1] and head(plan, []) is None


def test_registry_problems_name_edited_unknown_and_skipped_changes() -> None:
    plan = load_plan(str(SERVICE_PLAN))
    assert not registry_problems(plan, [applied_row(plan, name) for name in SERVICE_CHANGES[:2]])
    edited = registry_problems(plan, [applied_row(plan, "0001_customers", "f" * 64)])
    assert len(edited) == 1 and "applied change 0001_customers was edited" in edited[0]
    assert "f" * 64 in edited[0] and plan.changes[0].checksum in edited[0]
    unknown = registry_problems(plan, [applied_row(plan, n) for n in SERVICE_CHANGES] + [applied_row(plan, "0005_future")])
    assert len(unknown) == 1 and "0005_future (release 1.0.0" in unknown[0] and "newer release" in unknown[0]
    gap = registry_problems(plan, [applied_row(plan, "0001_customers"), applied_row(plan, "0003_payments_description")])
    assert len(gap) == 1 and "0002_payments_and_events are not applied but the later change 0003_payments_description is" in gap[0]


def test_registry_sql_quotes_names_and_derives_a_stable_lock_key() -> None:
    registry = RegistrySQL("payments_deploy", "changes")
    assert registry.qualified == '"payments_deploy"."changes"' and registry.name == "payments_deploy.changes"
    assert all('"payments_deploy"."changes"' in sql for sql in (registry.select, registry.insert, registry.delete))
    assert registry.lock_key == advisory_lock_key("payments_deploy", "changes") != advisory_lock_key("payments_deploy", "other")
    assert -(2 ** 63) <= registry.lock_key < 2 ** 63
    high, low = lock_holder_params(-1)
    assert (high, low) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert lock_holder_params(registry.lock_key) == ((registry.lock_key & 0xFFFFFFFFFFFFFFFF) >> 32, registry.lock_key & 0xFFFFFFFF)


def test_backoff_grows_and_is_bounded() -> None:
    assert [db_migrate.backoff(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


# --- the module: bad input fails before any connection ------------------------------------------------------


class NoConnection:
    """Stands in for psycopg.connect and records every attempt."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        self.calls += 1
        raise AssertionError("the module connected although its input was bad")


@pytest.fixture
def no_connection(monkeypatch: pytest.MonkeyPatch) -> NoConnection:
    fake = NoConnection()
    monkeypatch.setattr(db_migrate.psycopg, "connect", fake)
    return fake


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], check: bool = False) -> dict[str, t.Any]:
    args = {"db": "payments", "login_password": "Pa55-not-shown-9f3c", **args}
    if check:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        db_migrate.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("args, expected", [
    ({"lock_timeout": "5 seconds"}, "lock_timeout '5 seconds' is not a duration"),
    ({"statement_timeout": "soon"}, "statement_timeout 'soon' is not a duration"),
    ({"registry_schema": "Payments-Deploy"}, "registry_schema 'Payments-Deploy' must be a lower-case identifier"),
    ({"registry_table": "1changes"}, "registry_table '1changes' must be a lower-case identifier"),
    ({"retries": -1}, "retries must be between 0 and 20"),
    ({"advisory_lock_timeout": -1}, "advisory_lock_timeout must be at least 0"),
    ({"advisory_lock_timeout": "nan"}, "advisory_lock_timeout must be at least 0"),
    ({"advisory_lock_timeout": "inf"}, "advisory_lock_timeout must be at least 0"),
    ({"db": ""}, "db must name the database to migrate"),
    ({"db": "  "}, "db must name the database to migrate"),
    ({"url": "postgresql://u:p@127.0.0.1:5432"}, "url names no database"),
    ({"url": "postgresql://u:p@127.0.0.1:5432/payments?sslmode=sometimes"}, "sslmode='sometimes'"),
    ({"url": "postgresql://u:p%zz@127.0.0.1/payments"}, "url is not a valid postgresql:// URL"),
    ({"registry_table": "changes\n"}, "registry_table 'changes\\n' must be a lower-case identifier"),
    ({"target": "@base"}, "target @base only makes sense with state=reverted"),
    ({"target": "0009_nope"}, "target '0009_nope' is not a change of plan"),
    ({"state": "reverted"}, "state is reverted but all of the following are missing: target"),
])
def test_bad_options_fail_before_connecting(capsys: pytest.CaptureFixture[str], no_connection: NoConnection,
                                            args: dict[str, t.Any], expected: str) -> None:
    result = run(capsys, {"plan_dir": str(SERVICE_PLAN), **args})
    assert result["failed"] is True and expected in result["msg"]
    assert no_connection.calls == 0


def test_several_bad_options_are_reported_together(capsys: pytest.CaptureFixture[str], no_connection: NoConnection) -> None:
    result = run(capsys, {"plan_dir": str(SERVICE_PLAN), "lock_timeout": "x", "retries": 99, "registry_table": "A"})
    assert all(text in result["msg"] for text in ("lock_timeout 'x'", "retries must be", "registry_table 'A'"))
    assert no_connection.calls == 0


def test_a_broken_plan_fails_before_connecting(capsys: pytest.CaptureFixture[str], no_connection: NoConnection,
                                               tmp_path: Path) -> None:
    plan_dir = tmp_path / "migrations"
    shutil.copytree(SERVICE_PLAN, plan_dir)
    (plan_dir / "verify" / "0003_payments_description.sql").unlink()
    result = run(capsys, {"plan_dir": str(plan_dir)}, check=True)
    assert result["failed"] is True and no_connection.calls == 0
    assert "the migration plan cannot be used, nothing changed" in result["msg"]
    assert "0003_payments_description.sql is missing" in result["msg"]
    assert result["applied"] == [] and result["statements"] == []


def test_missing_psycopg_is_reported_with_missing_required_lib(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_migrate, "PSYCOPG_IMPORT_ERROR", "Traceback: No module named 'psycopg'")
    result = run(capsys, {"plan_dir": str(SERVICE_PLAN)})
    assert result["failed"] is True and "Failed to import the required Python library (psycopg)" in result["msg"]


def test_missing_pyyaml_is_reported_for_a_yaml_plan(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                    no_connection: NoConnection) -> None:
    monkeypatch.setattr(db_migrate, "YAML_IMPORT_ERROR", "Traceback: No module named 'yaml'")
    result = run(capsys, {"plan_dir": str(SERVICE_PLAN)})
    assert result["failed"] is True and "(PyYAML)" in result["msg"] and "plan.json" in result["msg"]
    assert no_connection.calls == 0


def test_an_unreachable_server_fails_clearly_without_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(capsys, {"plan_dir": str(SERVICE_PLAN), "login_host": "127.0.0.1", "login_port": port, "connect_timeout": 2})
    assert result["failed"] is True
    assert result["msg"].startswith(f"cannot connect to PostgreSQL as postgres@127.0.0.1:{port}/payments")
    assert result["msg"].endswith("nothing changed")
    assert "Pa55-not-shown-9f3c" not in json.dumps(result)


# --- the splitter reads SQL as PostgreSQL's lexer does; scripts that end transactions or hold NUL are refused ------


def test_characters_from_0x80_up_continue_an_identifier_not_start_a_dollar_quote() -> None:
    hidden = "CREATE TABLE leftover (id int);\nSELECT 1 AS x\u20ac$$;\nCOMMIT;\nSELECT 1 AS y\u20ac$$;\n"
    assert split_sql(hidden) == ["CREATE TABLE leftover (id int)", "SELECT 1 AS x\u20ac$$", "COMMIT", "SELECT 1 AS y\u20ac$$"]
    # a tag may hold them too, and a dollar quote after an operator or space still hides its semicolons
    assert split_sql("DO $\u00e9$ BEGIN PERFORM 1; END $\u00e9$; SELECT $$a;b$$") == [
        "DO $\u00e9$ BEGIN PERFORM 1; END $\u00e9$", "SELECT $$a;b$$"]


def test_a_commit_hidden_behind_a_non_ascii_dollar_is_found(tmp_path: Path) -> None:
    hidden = "CREATE TABLE leftover (id int);\nSELECT 1 AS x\u20ac$$;\nCOMMIT;\nSELECT 1 AS y\u20ac$$;\n"
    plan_dir = write_plan(tmp_path, [change("0001_a")], scripts={"deploy/0001_a": hidden})
    with pytest.raises(PlanError, match="contains COMMIT"):
        load_plan(str(plan_dir))


@pytest.mark.parametrize("sql, word", [("SAVEPOINT s;", "SAVEPOINT"), ("RELEASE SAVEPOINT s;", "RELEASE"),
                                       ("PREPARE TRANSACTION 'x';", "PREPARE TRANSACTION")])
def test_savepoints_and_prepared_transactions_are_transaction_control(tmp_path: Path, sql: str, word: str) -> None:
    plan_dir = write_plan(tmp_path, [change("0001_a")], scripts={"verify/0001_a": f"SELECT 1;\n{sql}\n"})
    with pytest.raises(PlanError, match=f"contains {word}"):
        load_plan(str(plan_dir))


def test_a_script_with_a_nul_byte_is_refused(tmp_path: Path) -> None:
    plan_dir = write_plan(tmp_path, [change("0001_a")], scripts={"deploy/0001_a": "CREATE TABLE a (id int);\0DROP TABLE x;\n"})
    with pytest.raises(PlanError, match="contains a NUL byte"):
        load_plan(str(plan_dir))


def test_plan_names_and_releases_with_a_trailing_newline_are_refused(tmp_path: Path) -> None:
    plan_dir = write_plan(tmp_path, [{"name": "0001_a\n", "kind": "expand", "release": "1.0.0"},
                                     {"name": "0002_b", "kind": "expand", "release": "1.0.0\n"}])
    with pytest.raises(PlanError) as caught:
        load_plan(str(plan_dir))
    assert "name '0001_a\\n'" in str(caught.value) and "release '1.0.0\\n'" in str(caught.value)
