"""Unit tests of card_data_scan_info: what counts as a finding in one value, which columns and rows of a table are read,
the SQL built for odd names, and the options refused before anything is connected to.

The scan itself runs against a real PostgreSQL in tests/integration/card_data_scan.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import typing as t
from pathlib import Path
from urllib.parse import quote

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _card_data_scan as scan
from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg
from ansible_collections.payments.deploy.plugins.modules import card_data_scan_info

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.timezone.utc).timestamp()
# Stripe's published fixtures (MIT), the copy kept beside the Stripe emulator's tests.
STRIPE_FIXTURES = Path(__file__).resolve().parents[3] / "lab" / "stripe_emulator" / "stripe_openapi" / "fixtures3.json"
VALID = {"db": "payments", "schemas": ["public"], "exclude_tables": [], "secrets": {}, "max_rows_per_table": 10000,
         "order_columns": ["created_at", "created", "updated_at"], "statement_timeout": "30s", "scan_bytea": False}


@pytest.fixture(autouse=True)
def nothing_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise AssertionError("nothing may be connected to")

    monkeypatch.setattr(pg.psycopg, "connect", forbidden)


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any]) -> tuple[dict[str, t.Any], str]:
    with patch_module_args(args), pytest.raises(SystemExit):
        card_data_scan_info.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def kinds(text: str | bytes, secrets: dict[str, str] | None = None) -> list[str]:
    value = text.encode() if isinstance(text, str) else text
    return scan.kinds_in(value, scan.needles(secrets or {}), NOW)


# --- one value --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["card 4242424242424242", "4242 4242 4242 4242", "pan=4242-4242-4242-4242",
                                  '{"number": "4242424242424242"}', '{"number": 4242424242424242}', "{x,4242424242424242}"])
def test_card_numbers_in_every_printed_form_and_container(text: str) -> None:
    assert kinds(text) == ["card number ending 4242"]


def test_several_cards_in_one_value_are_each_one_kind() -> None:
    assert kinds("4242424242424242, 5555555555554444; 4242 4242 4242 4242 / 378282246310005") == [
        "card number ending 4242", "card number ending 4444", "card number ending 0005"]


def test_what_stripe_returns_is_not_a_card_number() -> None:
    """Every resource of Stripe's fixtures (ids, last4, fingerprints, epoch times, amounts, client secrets), as the jsonb
    text a stripe_events row holds; and an epoch time in ms that passes the Luhn check."""
    resources = json.loads(STRIPE_FIXTURES.read_text())["resources"]
    assert {"payment_intent", "charge", "card", "payment_method", "event"} <= set(resources)
    for name, resource in resources.items():
        assert kinds(json.dumps(resource)) == [], name
    stamp = int(NOW * 1000)
    while not scan.scan_lib.luhn(str(stamp).encode()):
        stamp += 1
    assert kinds(json.dumps({"received_ms": stamp, "idempotency_key": f"idem-{stamp}"})) == []
    assert kinds(f"settled at {stamp}") == []


def test_luhn_failures_and_uuids_are_not_card_numbers() -> None:
    assert kinds("4242424242424241 5555555555554440") == []
    assert kinds("id 42424242-4242-4242-4242-424242424242") == []


def test_secrets_as_they_are_percent_encoded_json_escaped_and_a_url_password() -> None:
    password = "p@ss/w\"rd-0123"
    url = f"postgresql://payments:{quote(password, safe='')}@db:5432/payments"
    secrets = {"DATABASE_URL": url, "STRIPE_SECRET_KEY": "sk_live_abcdefgh12345678"}
    assert kinds(f"dsn {url}", secrets) == ["DATABASE_URL", "DATABASE_URL password"]
    assert kinds(json.dumps({"pw": password}), secrets) == ["DATABASE_URL password"]
    assert kinds(quote(url, safe=""), secrets) == ["DATABASE_URL"]
    assert kinds("key=sk_live_abcdefgh12345678", secrets) == ["STRIPE_SECRET_KEY"]
    assert kinds("sk_live_abcdefgh1234567", secrets) == []


def test_needles_come_from_the_log_scan_and_add_the_json_form() -> None:
    found = scan.needles({"WEBHOOK": 'whsec_a"b\\c0123'})
    assert ("WEBHOOK", b'whsec_a"b\\c0123') in found and ("WEBHOOK", b'whsec_a\\"b\\\\c0123') in found
    assert all(label == "WEBHOOK" for label, dummy in found) and len(found) == len(set(found))
    assert scan.needles({}) == []


def test_bytes_of_every_value_type() -> None:
    assert scan.as_bytes(b"\xff\x00") == b"\xff\x00" and scan.as_bytes(memoryview(b"ab")) == b"ab"
    assert scan.as_bytes("é") == "é".encode()


def test_error_messages_never_carry_a_value() -> None:
    needles = scan.needles({"KEY": "sk_live_abcdefgh12345678"})
    assert scan.withheld("bad sk_live_abcdefgh12345678 here", needles, NOW) == "bad ******** here"
    assert scan.withheld('invalid input "4242424242424242"', needles, NOW) == "(the message is withheld: it holds a card number)"
    assert scan.withheld("canceling statement due to statement timeout", needles, NOW) == "canceling statement due to statement timeout"


# --- which tables, columns and rows ------------------------------------------------------------------------------


def column(table: str, attnum: int, name: str, type_name: str, is_array: bool = False, schema: str = "public",
           type_schema: str = "pg_catalog") -> tuple[t.Any, ...]:
    return (schema, table, attnum, name, type_schema, type_name, is_array)


CATALOG_TABLES = [("public", "events"), ("public", "files"), ("public", "ledger"), ("public", "payments")]
CATALOG_COLUMNS = [
    column("payments", 1, "id", "text"), column("payments", 2, "amount", "int8"), column("payments", 3, "currency", "bpchar"),
    column("payments", 4, "created_at", "timestamptz"), column("payments", 5, "updated_at", "timestamptz"),
    column("payments", 6, "note", "varchar"), column("payments", 7, "tags", "text", is_array=True),
    column("payments", 8, "email", "citext", type_schema="public"),
    column("events", 1, "id", "text"), column("events", 2, "created_at", "text"), column("events", 3, "created", "timestamp"),
    column("events", 4, "payload", "jsonb"), column("events", 5, "raw", "json"),
    column("files", 1, "pdf", "bytea"), column("files", 2, "parts", "bytea", is_array=True), column("files", 3, "day", "date"),
    column("ledger", 1, "amount", "numeric"),
]


def test_text_like_columns_and_the_preferred_timestamp_column() -> None:
    plans, used = scan.plan_tables(CATALOG_TABLES, CATALOG_COLUMNS, [], scan.DEFAULT_ORDER_COLUMNS, scan_bytea=False)
    assert used == set()
    assert [(p.name, [name for name, dummy in p.columns], p.order_column) for p in plans] == [
        ("public.events", ["id", "created_at", "payload", "raw"], "created"),  # a text created_at does not order
        ("public.files", [], None),
        ("public.ledger", [], None),
        ("public.payments", ["id", "currency", "note", "tags"], "created_at"),
    ]
    with_bytea, dummy = scan.plan_tables(CATALOG_TABLES, CATALOG_COLUMNS, [], ["day"], scan_bytea=True)
    assert with_bytea[1].columns == (("pdf", True),) and with_bytea[1].order_column == "day"
    assert with_bytea[3].order_column is None


def test_excluded_tables_by_name_or_schema_and_name() -> None:
    plans, used = scan.plan_tables(CATALOG_TABLES, CATALOG_COLUMNS, ["ledger", "public.files", "other.events", "nope"],
                                   scan.DEFAULT_ORDER_COLUMNS, scan_bytea=False)
    assert [p.name for p in plans] == ["public.events", "public.payments"]
    assert used == {"ledger", "public.files"}


def test_the_select_quotes_every_name() -> None:
    plan = scan.TablePlan('Billing Data', 'Odd "T". x', (("note; DROP TABLE payments; --", False), ("Pdf", True)), "Created At")
    assert scan.select_sql(plan).as_string(None) == (
        'SELECT "note; DROP TABLE payments; --"::text, "Pdf" FROM "Billing Data"."Odd ""T"". x" '
        'ORDER BY "Created At" DESC NULLS LAST LIMIT %s')
    unordered = plan._replace(order_column=None, columns=(("id", False),))
    assert scan.select_sql(unordered).as_string(None) == 'SELECT "id"::text FROM "Billing Data"."Odd ""T"". x" LIMIT %s'


class FakeRaw:
    """Just enough of a psycopg connection for Scanner: a transaction, a statement, a cursor that streams rows."""

    def __init__(self, rows: list[tuple[t.Any, ...]]) -> None:
        self.rows = rows
        self.statements: list[t.Any] = []

    @contextlib.contextmanager
    def transaction(self) -> t.Iterator[None]:
        self.statements.append("BEGIN")
        yield
        self.statements.append("COMMIT")

    def execute(self, statement: str) -> None:
        self.statements.append(statement)

    @contextlib.contextmanager
    def cursor(self) -> t.Iterator[FakeRaw]:
        yield self

    def stream(self, query: t.Any, params: tuple[int]) -> t.Iterator[tuple[t.Any, ...]]:
        self.statements.append((query.as_string(None), params))
        yield from self.rows[:params[0]]


class FakeSession:
    def __init__(self, rows: list[tuple[t.Any, ...]]) -> None:
        self.raw = FakeRaw(rows)
        self.queries: list[str] = []


def test_the_scanner_reads_one_row_past_the_bound_to_tell_truncation_and_counts_rows_per_kind() -> None:
    rows = [("card 4242424242424242", None), ("fine", {"n": "5555 5555 5555 4444"}), ("4242-4242-4242-4242 sk_live_abcdefgh12345678", "x"),
            ("beyond the bound 378282246310005", None)]
    plan = scan.TablePlan("public", "payments", (("note", False), ("meta", False)), "created_at")
    for max_rows, truncated in ((3, True), (4, False)):
        session = FakeSession(rows)
        scanner = scan.Scanner(session, max_rows, scan.needles({"KEY": "sk_live_abcdefgh12345678"}), str, now=NOW)
        scanner.scan(plan)
        assert session.raw.statements[:2] == ["BEGIN", "SET TRANSACTION READ ONLY"] and session.raw.statements[-1] == "COMMIT"
        assert session.raw.statements[2][1] == (max_rows + 1,)
        entry = scanner.tables[0]
        assert (entry["rows_scanned"], entry["truncated"], entry["columns"]) == (min(max_rows, 4), truncated, ["note", "meta"])
        # by column (in table order), then kind
        expected = [{"table": "public.payments", "column": "note", "rows": 1, "kind": "KEY"}]
        if not truncated:
            expected.append({"table": "public.payments", "column": "note", "rows": 1, "kind": "card number ending 0005"})
        expected.append({"table": "public.payments", "column": "note", "rows": 2, "kind": "card number ending 4242"})
        expected.append({"table": "public.payments", "column": "meta", "rows": 1, "kind": "card number ending 4444"})
        assert scanner.findings == expected and scanner.errors == [] and scanner.rows_scanned == min(max_rows, 4)


def test_a_table_without_text_columns_is_not_read() -> None:
    session = FakeSession([("4242424242424242",)])
    scanner = scan.Scanner(session, 10, [], str, now=NOW)
    scanner.scan(scan.TablePlan("public", "ledger", (), None))
    assert session.raw.statements == [] and scanner.tables[0]["rows_scanned"] == 0 and scanner.findings == []


# --- options ------------------------------------------------------------------------------------------------------


def test_valid_options_have_no_problem() -> None:
    assert scan.option_problems(VALID) == []
    assert scan.option_problems({**VALID, "exclude_tables": ["billing.audit_log"], "order_columns": [], "statement_timeout": "2min",
                                 "secrets": {"DATABASE_URL": "postgresql://u:p@h/d", "STRIPE_SECRET_KEY": "sk_live_x12345678"}}) == []


@pytest.mark.parametrize(("text", "milliseconds"), [("30s", 30000), ("500ms", 500), ("2min", 120000), ("1h", 3600000), (" 5 s ", 5000),
                                                    ("0s", 0), ("30", None), ("30 seconds", None), ("30s; RESET ALL", None), ("-1s", None)])
def test_statement_timeouts(text: str, milliseconds: int | None) -> None:
    assert scan.duration_ms(text) == milliseconds


def test_every_problem_is_reported_together() -> None:
    problems = scan.option_problems({**VALID, "db": "host=evil dbname=x", "schemas": [], "exclude_tables": ["a\nb"],
                                     "order_columns": [" "], "max_rows_per_table": 0, "statement_timeout": "30",
                                     "secrets": {"HASH_SALT": "abc", "PORT": 5432, "bad name!": "not-a-real-secret-0123"}})
    assert problems == [
        "db 'host=evil dbname=x' must be a database name, not a connection string or a line break",
        "schemas must name at least one",
        "exclude_tables holds a name that is empty or not printable: 'a\\nb'",
        "order_columns holds a name that is empty or not printable: ' '",
        "max_rows_per_table must be from 1 to 10000000",
        "statement_timeout '30' is not a PostgreSQL duration with its unit, such as 30s, 500ms or 2min",
        "secrets[HASH_SALT] is shorter than 8 characters (it would match by chance)",
        "secrets[PORT] must be a string, not int",
        "secrets holds a name that is not a variable name (letters, digits, '_', at most 64): 'bad name!'",
    ]
    assert "abc" not in " ".join(problems)


def test_refusals_before_connecting_never_show_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    result, out = run(capsys, {"url": "mysql://root:hunter2-secret@db/x", "statement_timeout": "0s", "max_rows_per_table": -1,
                               "secrets": {"STRIPE_SECRET_KEY": "sk_live_do-not-show-0123", "SHORT": "tiny"}})
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == ("db must not be empty (set db, or url with a database name); max_rows_per_table must be from 1 to 10000000; "
                             "statement_timeout must be more than 0: a scan of a production database must be bounded; "
                             "secrets[SHORT] is shorter than 8 characters (it would match by chance); "
                             "url must be a postgresql://user:password@host:port/db URL or a libpq connection string (its scheme is 'mysql')")
    assert "hunter2-secret" not in out and "sk_live_do-not-show" not in out and "tiny" not in out


@pytest.mark.parametrize(("args", "expected"), [
    ({"schemas": ["public"]}, "one of the following is required: url, db"),
    ({"db": "payments", "secrets": ["STRIPE_SECRET_KEY"]}, "secrets"),
    ({"db": "payments", "max_rows_per_table": "all"}, "max_rows_per_table"),
    ({"db": "payments", "scan_bytea": "sometimes"}, "scan_bytea"),
    ({"db": "payments", "ssl_mode": "none"}, "ssl_mode"),
    ({"db": "payments", "connect_timeout": 0}, "connect_timeout must be at least 1 second"),
    ({"db": "payments\nhost=evil"}, "must be a database name"),
    ({"url": "postgresql://u:pw@db/payments?service=elsewhere"}, "url must not set service"),
    ({"url": "postgresql://u:pw@db/"}, "db must not be empty"),
    ({"db": "payments", "statement_timeout": "{key:>99999}"}, "statement_timeout"),
])
def test_refused_arguments(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], expected: str) -> None:
    result, dummy = run(capsys, args)
    assert result["failed"] is True and expected in result["msg"], result["msg"]


def test_without_psycopg_the_module_says_what_to_install(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "HAS_PSYCOPG", False)
    result, dummy = run(capsys, {"db": "payments"})
    assert result["failed"] is True and "Failed to import the required Python library (psycopg)" in result["msg"]
