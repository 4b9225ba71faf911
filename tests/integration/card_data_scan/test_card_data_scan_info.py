"""card_data_scan_info against a real PostgreSQL 15: what the service legitimately stores (Stripe's objects) passes; card
numbers and secrets are found in text and jsonb columns, reported by table, column, rows and kind and never by value;
the scan is bounded (max_rows_per_table, statement_timeout) and its session cannot write."""

from __future__ import annotations

import datetime
import importlib
import json
import sys
import threading
import typing as t
from pathlib import Path

import psycopg
import pytest

SERVICE_ROLE = "svc"
# Stripe's documented test card numbers, as a careless service might store them (one run, spaces, dashes, Amex).
VISA, VISA_DEBIT, MASTERCARD, AMEX = "4242424242424242", "4000056655665556", "5555555555554444", "378282246310005"


@pytest.fixture(scope="module")
def libs(collections_dir: Path) -> t.Any:
    """The collection's module_utils, imported in this process (for the session test and the Luhn check)."""
    if str(collections_dir) not in sys.path:
        sys.path.insert(0, str(collections_dir))

    class Libs:
        scan = importlib.import_module("ansible_collections.payments.deploy.plugins.module_utils._card_data_scan")
        pg = importlib.import_module("ansible_collections.payments.deploy.plugins.module_utils._postgres")
        log_scan = importlib.import_module("ansible_collections.payments.deploy.plugins.module_utils._log_scan")

    return Libs


def no_value_shown(result: dict[str, t.Any], values: list[str]) -> None:
    """None of ``values`` (nor a card number's digits in any grouping) is in the module's output, and nothing had to be
    masked by Ansible's no_log either (a masked value would have been a value the module tried to return)."""
    out = result["stdout"]
    for value in values:
        digits = value.replace(" ", "").replace("-", "")
        assert value not in out and digits not in out, "a value reached the output"
    assert "********" not in out


def epoch_ms_passing_luhn(libs: t.Any) -> str:
    """An epoch time in milliseconds near now that passes the Luhn check (a card number would)."""
    value = int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)
    while not libs.log_scan.luhn(str(value).encode()):
        value += 1
    return str(value)


def test_what_the_service_stores_passes(scan: t.Any, cluster: t.Any, service_db: str, libs: t.Any) -> None:
    stamp = epoch_ms_passing_luhn(libs)
    cluster.as_service(service_db, f"UPDATE payments SET description = 'settled at {stamp}', idempotency_key = 'idem-{stamp}' "
                                   "WHERE id = 'pay_40'")
    cluster.as_service(service_db, "UPDATE stripe_events SET payload = jsonb_set(payload, '{data,object,metadata}', %s) "
                                   "WHERE type = 'charge.succeeded'", (json.dumps({"received_ms": int(stamp)}),))
    # the payloads really hold what must not count: last4, fingerprints, Stripe ids and epoch times
    payload = cluster.execute("SELECT payload::text FROM stripe_events WHERE type = 'charge.succeeded' LIMIT 1", service_db)[0][0]
    assert '"last4": "4242"' in payload and '"fingerprint": "AOB934RVNwzk6xtn"' in payload and stamp in payload
    assert '"id": "ch_1PgafuB7WZ01zgkWXYmPNZs8"' in payload and '"created": 1767225660' in payload

    result = scan(service_db)

    assert result["rc"] == 0 and result["changed"] is False, result.get("msg")
    assert result["passed"] is True and result["findings"] == [] and result["errors"] == []
    tables = {entry["table"]: entry for entry in result["tables"]}
    assert list(tables) == ["public.customers", "public.payments", "public.refunds", "public.stripe_events"]
    assert tables["public.payments"]["columns"] == ["id", "stripe_payment_intent_id", "customer_id", "currency", "status",
                                                    "idempotency_key", "description"]
    assert tables["public.stripe_events"]["columns"] == ["id", "type", "payload"]
    assert {name: (e["rows_scanned"], e["truncated"], e["order_column"]) for name, e in tables.items()} == {
        "public.customers": (40, False, "created_at"), "public.payments": (40, False, "created_at"),
        "public.refunds": (5, False, "created_at"), "public.stripe_events": (80, False, "created")}
    assert result["rows_scanned"] == 165 and result["database"] == service_db and result["schemas"] == ["public"]
    assert result["connection"]["user"] == SERVICE_ROLE and 0 < result["seconds"] < 30

    checked = scan(service_db, check=True)
    assert checked["rc"] == 0 and checked["changed"] is False
    assert (checked["passed"], checked["findings"], checked["tables"][0]["rows_scanned"]) == (True, [], 40)


def test_card_numbers_in_text_and_jsonb_columns(scan: t.Any, cluster: t.Any, service_db: str) -> None:
    cluster.as_service(service_db, f"""
        UPDATE payments SET description = 'card {VISA} declined' WHERE id = 'pay_40';
        UPDATE payments SET description = 'card {VISA_DEBIT[:4]} {VISA_DEBIT[4:8]} {VISA_DEBIT[8:12]} {VISA_DEBIT[12:]}'
          WHERE id = 'pay_39';
        UPDATE payments SET description = 'card {MASTERCARD[:4]}-{MASTERCARD[4:8]}-{MASTERCARD[8:12]}-{MASTERCARD[12:]}'
          WHERE id IN ('pay_38', 'pay_37');
    """)
    # a charge whose card details carry the full number, stored as the webhook delivered it
    cluster.as_service(service_db, "UPDATE stripe_events SET payload = jsonb_set(payload, '{data,object,payment_method_details,card,number}', "
                                   "to_jsonb(%s::text)) WHERE id = (SELECT min(id) FROM stripe_events WHERE type = 'charge.succeeded')",
                       (AMEX,))

    result = scan(service_db)

    assert result["rc"] == 0 and result["passed"] is False, result.get("msg")
    assert result["findings"] == [
        {"table": "public.payments", "column": "description", "rows": 1, "kind": "card number ending 4242"},
        {"table": "public.payments", "column": "description", "rows": 2, "kind": "card number ending 4444"},
        {"table": "public.payments", "column": "description", "rows": 1, "kind": "card number ending 5556"},
        {"table": "public.stripe_events", "column": "payload", "rows": 1, "kind": "card number ending 0005"},
    ]
    no_value_shown(result, [VISA, VISA_DEBIT, MASTERCARD, AMEX, "5555-5555", "4000 0566"])


def test_secret_values_and_a_url_password(scan: t.Any, cluster: t.Any, service_db: str) -> None:
    stripe_key = "sk_live_51Lab" + "Qx7Vb2Rk9TzM4nWp8Jc6Ys3Hd0Ue5Gf"
    webhook_secret = 'whsec_q"uoted\\back-slashed-1f2e3d4c'
    database_url = scan.url(service_db)
    password = cluster.service_password
    cluster.as_service(service_db, "UPDATE payments SET description = %s WHERE id = 'pay_40'", (f"retried with {stripe_key}",))
    cluster.as_service(service_db, "UPDATE stripe_events SET payload = jsonb_set(payload, '{data,object,metadata}', %s) "
                                   "WHERE id = (SELECT max(id) FROM stripe_events)",
                       (json.dumps({"db_password": password, "signing": webhook_secret}),))

    # connecting with the service's DATABASE_URL, which is one of the secrets looked for
    result = scan(None, url=database_url,
                  secrets={"STRIPE_SECRET_KEY": stripe_key, "STRIPE_WEBHOOK_SECRET": webhook_secret, "DATABASE_URL": database_url})

    assert result["rc"] == 0 and result["passed"] is False, result.get("msg")
    assert result["findings"] == [
        {"table": "public.payments", "column": "description", "rows": 1, "kind": "STRIPE_SECRET_KEY"},
        {"table": "public.stripe_events", "column": "payload", "rows": 1, "kind": "DATABASE_URL password"},
        {"table": "public.stripe_events", "column": "payload", "rows": 1, "kind": "STRIPE_WEBHOOK_SECRET"},
    ]
    assert result["database"] == service_db and result["connection"]["user"] == SERVICE_ROLE
    no_value_shown(result, [stripe_key, webhook_secret, database_url, password, "whsec_q", "uoted"])


def test_at_most_max_rows_per_table_and_the_most_recent_first(scan: t.Any, cluster: t.Any, service_db: str) -> None:
    cluster.as_service(service_db, f"""
        UPDATE payments SET description = 'card {VISA}' WHERE id = 'pay_1';
        CREATE TABLE notes (id int, body text);
        INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 25) g;
        CREATE TABLE ten_rows (id int, body text);
        INSERT INTO ten_rows SELECT g, 'row ' || g FROM generate_series(1, 10) g;
    """)

    old_only = scan(service_db, max_rows_per_table=10)

    assert old_only["rc"] == 0 and old_only["passed"] is True, "the oldest payment lies beyond the 10 most recent"
    tables = {entry["table"]: entry for entry in old_only["tables"]}
    assert (tables["public.payments"]["rows_scanned"], tables["public.payments"]["truncated"]) == (10, True)
    assert tables["public.payments"]["order_column"] == "created_at"
    assert (tables["public.notes"]["rows_scanned"], tables["public.notes"]["truncated"], tables["public.notes"]["order_column"]) == (10, True, None)
    assert (tables["public.ten_rows"]["rows_scanned"], tables["public.ten_rows"]["truncated"]) == (10, False)
    assert (tables["public.refunds"]["rows_scanned"], tables["public.refunds"]["truncated"]) == (5, False)
    assert old_only["rows_scanned"] == 10 + 10 + 10 + 10 + 5 + 10

    cluster.as_service(service_db, f"UPDATE payments SET description = 'card {VISA}' WHERE id = 'pay_40'")
    newest = scan(service_db, max_rows_per_table=10)
    assert newest["findings"] == [{"table": "public.payments", "column": "description", "rows": 1, "kind": "card number ending 4242"}]


def test_the_session_cannot_write(cluster: t.Any, service_db: str, libs: t.Any) -> None:
    """The session the module scans in, set up by the module's own code; a write in it fails."""
    conn = libs.pg.Connection({"login_host": "127.0.0.1", "login_port": cluster.port, "login_user": SERVICE_ROLE,
                               "login_password": cluster.service_password, "db": service_db, "ssl_mode": "disable"})
    session = libs.scan.open_session(conn, service_db, "30s", [])
    try:
        assert session.value("SHOW transaction_read_only") == "on" and session.value("SHOW statement_timeout") == "30s"
        for statement in ("INSERT INTO refunds VALUES ('re_x', 'pay_1', 're_x', 1, 'succeeded')", "UPDATE payments SET status = 'refunded'",
                          "CREATE TABLE scratch (id int)", "DELETE FROM refunds"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                session.raw.execute(statement)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), session.raw.transaction():
            session.raw.execute("SET TRANSACTION READ ONLY")
            session.raw.execute("UPDATE payments SET status = 'refunded'")
    finally:
        session.close()
    assert cluster.execute("SELECT count(*) FROM payments WHERE status = 'refunded'", service_db) == [(0,)]


def test_a_wrong_password_is_a_clear_error_without_the_password(scan: t.Any, cluster: t.Any, service_db: str) -> None:
    result = scan(service_db, login_password="wrong-pw-0123456789")

    assert result["failed"] is True and result["passed"] is False and result["tables"] == []
    assert result["msg"].startswith(f"cannot connect to database '{service_db}' on 127.0.0.1:{cluster.port} as svc: ")
    assert 'password authentication failed for user "svc"' in result["msg"]
    assert "wrong-pw-0123456789" not in result["stdout"]


def test_odd_table_and_column_names(scan: t.Any, cluster: t.Any, service_db: str) -> None:
    cluster.as_service(service_db, """
        CREATE SCHEMA "Billing Data";
        CREATE DOMAIN "Billing Data".note_text AS varchar(200);
        CREATE TABLE "Billing Data"."Odd ""Table"". x" (
            id int, "note; DROP TABLE payments; --" text, "Payload" jsonb, "tags[]" text[], memo "Billing Data".note_text,
            "Created At" timestamptz);
        INSERT INTO "Billing Data"."Odd ""Table"". x"
          VALUES (1, 'card 4242424242424242', '{"pan": "5555 5555 5555 4444"}', ARRAY['x', '378282246310005'], '4000-0566-5566-5556', now()),
                 (2, 'fine', '{"last4": "4242"}', ARRAY['y'], 'fine', now());
    """)

    result = scan(service_db, schemas=["Billing Data"], order_columns=["Created At"])

    assert result["rc"] == 0 and result["errors"] == [], result.get("msg")
    table = 'Billing Data.Odd "Table". x'
    assert result["tables"] == [{"table": table, "columns": ["note; DROP TABLE payments; --", "Payload", "tags[]", "memo"],
                                 "rows_scanned": 2, "truncated": False, "order_column": "Created At",
                                 "seconds": result["tables"][0]["seconds"]}]
    assert result["findings"] == [
        {"table": table, "column": "note; DROP TABLE payments; --", "rows": 1, "kind": "card number ending 4242"},
        {"table": table, "column": "Payload", "rows": 1, "kind": "card number ending 4444"},
        {"table": table, "column": "tags[]", "rows": 1, "kind": "card number ending 0005"},
        {"table": table, "column": "memo", "rows": 1, "kind": "card number ending 5556"},
    ]
    assert cluster.execute("SELECT count(*) FROM payments", service_db) == [(40,)]


def test_excluded_tables_and_bytea_columns(scan: t.Any, cluster: t.Any, service_db: str) -> None:
    cluster.as_service(service_db, f"""
        UPDATE stripe_events SET payload = jsonb_set(payload, '{{data,object,description}}', '"card {VISA}"');
        CREATE TABLE receipt_files (id int, pdf bytea, created_at timestamptz DEFAULT now());
        INSERT INTO receipt_files (id, pdf) VALUES (1, convert_to('%PDF-1.7 card {MASTERCARD} %EOF', 'UTF8'));
    """)

    result = scan(service_db, exclude_tables=["stripe_events", "public.no_such_table"])

    assert result["rc"] == 0 and result["passed"] is True, result["findings"]
    tables = {entry["table"]: entry for entry in result["tables"]}
    assert "public.stripe_events" not in tables
    assert tables["public.receipt_files"]["columns"] == [] and tables["public.receipt_files"]["rows_scanned"] == 0
    assert result["warnings"] == ["exclude_tables entry 'public.no_such_table' names no table of schema(s) public"]

    with_bytea = scan(service_db, exclude_tables=["public.stripe_events"], scan_bytea=True)
    assert with_bytea["findings"] == [{"table": "public.receipt_files", "column": "pdf", "rows": 1, "kind": "card number ending 4444"}]
    assert with_bytea["warnings"] == []
    no_value_shown(with_bytea, [MASTERCARD, VISA])


def test_a_locked_table_is_cancelled_after_statement_timeout(scan: t.Any, cluster: t.Any, service_db: str) -> None:
    cluster.as_service(service_db, f"UPDATE payments SET description = 'card {VISA}' WHERE id = 'pay_40'")
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with cluster.connect(service_db) as conn, conn.transaction():
            conn.execute("LOCK TABLE refunds IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(60)

    holder = threading.Thread(target=hold_lock, daemon=True)
    holder.start()
    assert locked.wait(10)
    try:
        result = scan(service_db, statement_timeout="1s")
    finally:
        release.set()
        holder.join(10)

    assert result["failed"] is True and result["passed"] is False
    assert result["errors"] == [{"table": "public.refunds", "sqlstate": "57014", "message": "canceling statement due to statement timeout"}]
    assert result["msg"] == (f"could not read every table of database '{service_db}' (what was read is reported): "
                             "table public.refunds: canceling statement due to statement timeout [57014]")
    # the other tables were read, after the cancelled one too, and their findings are reported
    assert {e["table"]: e["rows_scanned"] for e in result["tables"]} == {
        "public.customers": 40, "public.payments": 40, "public.refunds": 0, "public.stripe_events": 80}
    assert result["findings"] == [{"table": "public.payments", "column": "description", "rows": 1, "kind": "card number ending 4242"}]
    assert result["seconds"] < 20


def test_a_schema_that_does_not_exist(scan: t.Any, service_db: str) -> None:
    result = scan(service_db, schemas=["public", "nope"])

    assert result["failed"] is True and result["tables"] == [] and result["passed"] is False
    assert result["msg"] == f"schema(s) 'nope' do not exist in database '{service_db}'"
