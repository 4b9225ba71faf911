"""The reconcile command: after a restore from an older backup, Stripe's events bring the lost rows back.

The tests run the command as the deploy does (python3 -m payment_service.reconcile from an unpacked release) against
their own database in the shared PostgreSQL cluster, their own Stripe emulator and a service instance that receives
the emulator's webhooks, so that every event and row they count is one they made.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from loopback_ports import free_port

if TYPE_CHECKING:
    from conftest import Postgres, Reply, RunningService, StripeEmulator

pytestmark = pytest.mark.timeout(300)

TABLES = ("customers", "payments", "refunds", "stripe_events")  # foreign keys point backwards in this order
BOOTSTRAP_SQL = Path(__file__).resolve().parents[2] / "lab" / "payment_service" / "bootstrap.sql"
COMMAND = ["python3", "-m", "payment_service.reconcile"]
VISA = "pm_card_visa"
DECLINED = "pm_card_chargeDeclinedInsufficientFunds"
SUMMARY_KEYS = ["since", "events_seen", "stored", "already_present", "payments_updated", "payments_recreated",
                "refunds_recreated", "first_event", "last_event", "dry_run", "duration_seconds"]
# A password with the characters the deploy's env file escapes: only a correct parser gets the connection.
ESCAPED_PASSWORD = 'pa"ss\\word-' + secrets.token_hex(8)
ENV_FILE_USER = "reconcile_env_file"


@dataclass
class RestoreDatabase:
    """A database of its own in the shared cluster, with the payment schema."""

    postgres: Postgres
    name: str

    @property
    def app_url(self) -> str:
        """DATABASE_URL of the service's role."""
        return self.postgres.app_url(self.name)

    @property
    def app_user(self) -> str:
        """The service's role."""
        return str(urlsplit(self.app_url).username)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of one statement run as the superuser."""
        with psycopg.connect(self.postgres.admin_dsn(self.name), autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def restore_db(postgres: Postgres) -> Iterator[RestoreDatabase]:
    database = RestoreDatabase(postgres, "reconcile_" + secrets.token_hex(4))
    with psycopg.connect(postgres.admin_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database.name}")
        conn.execute(f"CREATE ROLE {ENV_FILE_USER} LOGIN PASSWORD '{ESCAPED_PASSWORD}'")
    try:
        database.query(BOOTSTRAP_SQL.read_text())
        database.query(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {database.app_user}, "
                       f"{ENV_FILE_USER}")
        yield database
    finally:
        with psycopg.connect(postgres.admin_dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {ENV_FILE_USER}")


@pytest.fixture
def emulator(stripe_emulator_factory: Callable[[], StripeEmulator]) -> StripeEmulator:
    """An emulator of the test's own: every event it lists is one the test made."""
    return stripe_emulator_factory()


@pytest.fixture
def restore_service(launcher: Callable[..., RunningService], service_env: dict[str, str],
                    restore_db: RestoreDatabase, emulator: StripeEmulator) -> RunningService:
    """An instance on the test's database and emulator, receiving the emulator's webhooks for every event type."""
    port = free_port()
    endpoint = emulator.client().v1.webhook_endpoints.create(
        {"url": f"http://127.0.0.1:{port}/webhooks/stripe", "enabled_events": ["*"]})
    env = {**service_env, "DATABASE_URL": restore_db.app_url, "STRIPE_API_BASE": emulator.url,
           "STRIPE_WEBHOOK_SECRET": str(endpoint.secret), "SERVICE_INSTANCE": "app1-restore"}
    return launcher(env, port=port)


@pytest.fixture
def reconcile_env(restore_db: RestoreDatabase, emulator: StripeEmulator, app_secrets: dict[str, str]) -> dict[str, str]:
    """Only what reconcile needs: no Redis, no API keys."""
    return {"DATABASE_URL": restore_db.app_url, "STRIPE_SECRET_KEY": app_secrets["STRIPE_SECRET_KEY"],
            "STRIPE_API_BASE": emulator.url}


def reconcile(release_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The command as the deploy runs it: cwd = release dir, a python3 on PATH with the service's dependencies."""
    full_env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "LANG": "C.UTF-8",
                **env}
    return subprocess.run([*COMMAND, *args], cwd=release_dir, env=full_env, capture_output=True, text=True,
                          timeout=120, check=False)


def summary_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object on stdout, without its timing."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    summary = json.loads(lines[0])
    assert list(summary) == SUMMARY_KEYS
    assert isinstance(summary.pop("duration_seconds"), float)
    return dict(summary)


def failure_of(result: subprocess.CompletedProcess[str], code: int, secrets_: list[str]) -> str:
    """The one-line reason of a failed run, checked for secrets."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("reconcile: "), result.stderr
    for secret in secrets_:
        assert secret not in result.stderr
    return lines[0]


def eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll check until it holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def settled(emulator: StripeEmulator, database: RestoreDatabase) -> None:
    """Wait until every event the emulator made is delivered, stored and processed."""
    def done() -> bool:
        if emulator.admin("GET", "/_emulator/health")["deliveries"].get("pending"):
            return False
        made = {event.id for event in emulator.client().v1.events.list({"limit": 100}).auto_paging_iter()}
        processed = {row[0] for row in database.query("SELECT id FROM stripe_events WHERE processed_at IS NOT NULL")}
        return made <= processed
    eventually(done, "every webhook delivery to be stored and processed")


def tables(database: RestoreDatabase) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the service's tables, every column."""
    return {table: database.query(f"SELECT * FROM {table} ORDER BY id") for table in TABLES}


def take_backup(database: RestoreDatabase) -> None:
    """A copy of every table in the schema 'backup'."""
    database.query("CREATE SCHEMA backup")
    for table in TABLES:
        database.query(f"CREATE TABLE backup.{table} AS SELECT * FROM {table}")


def restore_backup(database: RestoreDatabase, late_event: str) -> None:
    """The tables as the backup holds them, plus one event stored after the restore."""
    database.query("CREATE TABLE backup.late_event AS SELECT * FROM stripe_events WITH NO DATA")
    database.query("INSERT INTO backup.late_event SELECT * FROM stripe_events WHERE id = %s", late_event)
    for table in reversed(TABLES):
        database.query(f"DELETE FROM {table}")
    for table in TABLES:
        database.query(f"INSERT INTO {table} SELECT * FROM backup.{table}")
    database.query("INSERT INTO stripe_events SELECT * FROM backup.late_event")
    database.query("DROP SCHEMA backup CASCADE")


def payment_rows(database: RestoreDatabase) -> dict[str, tuple[Any, ...]]:
    return {row[0]: row[1:] for row in database.query(
        "SELECT id, stripe_payment_intent_id, customer_id, amount, currency, status, idempotency_key, "
        "extract(epoch FROM created_at)::bigint FROM payments")}


def refund_rows(database: RestoreDatabase) -> dict[str, tuple[Any, ...]]:
    return {row[0]: row[1:] for row in database.query(
        "SELECT id, payment_id, stripe_refund_id, amount, status, extract(epoch FROM created_at)::bigint FROM refunds")}


def pay(service: RunningService, api_key: str, key: str, amount: int, method: str = VISA,
        customer_id: str | None = None) -> Reply:
    body: dict[str, Any] = {"amount": amount, "currency": "eur", "payment_method": method}
    if customer_id:
        body["customer_id"] = customer_id
    return service.call("POST", "/v1/payments", token=api_key, body=body, headers={"Idempotency-Key": key})


def paid(service: RunningService, api_key: str, amount: int, customer_id: str | None = None) -> dict[str, Any]:
    reply = pay(service, api_key, "key-" + secrets.token_hex(8), amount, customer_id=customer_id)
    assert reply.status == 201, reply.body
    return dict(reply.json())


def refund(service: RunningService, api_key: str, payment: dict[str, Any], amount: int | None = None) -> dict[str, Any]:
    reply = service.call("POST", f"/v1/payments/{payment['id']}/refunds", token=api_key,
                         body={} if amount is None else {"amount": amount},
                         headers={"Idempotency-Key": "refund-" + secrets.token_hex(8)})
    assert reply.status == 201, reply.body
    return dict(reply.json())


def customer(service: RunningService, api_key: str) -> str:
    reply = service.call("POST", "/v1/customers", token=api_key,
                         body={"email": f"{secrets.token_hex(4)}@example.com", "name": "Restore Test"})
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def next_second() -> int:
    """Epoch seconds of the next second, once it has begun: everything made from now on is created at or after it."""
    boundary = int(time.time()) + 1
    while time.time() < boundary:
        time.sleep(boundary - time.time())
    return boundary


def test_restore_from_an_older_backup_is_reconciled_from_stripe_events(
        restore_service: RunningService, emulator: StripeEmulator, restore_db: RestoreDatabase, release_dir: Path,
        reconcile_env: dict[str, str], api_key: str) -> None:
    service, stripe_api = restore_service, emulator.client()
    # Before the backup: a customer, a payment that stays as it is and one that is refunded after the backup.
    kept_customer = customer(service, api_key)
    unchanged = paid(service, api_key, 2500)
    refunded_later = paid(service, api_key, 4000)
    settled(emulator, restore_db)
    take_backup(restore_db)
    backup = {table: {row[0] for row in rows} for table, rows in tables(restore_db).items()}
    since = next_second()
    # After the backup: everything below is lost by the restore.
    refunded = paid(service, api_key, 3000, customer_id=kept_customer)
    refund(service, api_key, refunded)
    refund(service, api_key, refunded_later)
    declined_key = "key-" + secrets.token_hex(8)
    declined = pay(service, api_key, declined_key, 2200, method=DECLINED)
    assert declined.status == 402, declined.body
    partial = paid(service, api_key, 5000)
    refund(service, api_key, partial, amount=1000)
    lost_customer = customer(service, api_key)
    orphaned = paid(service, api_key, 2000, customer_id=lost_customer)
    outside = stripe_api.v1.payment_intents.create({"amount": 1500, "currency": "usd", "payment_method": VISA,
                                                    "confirm": True, "payment_method_types": ["card"]})
    settled(emulator, restore_db)
    payments_before, refunds_before = payment_rows(restore_db), refund_rows(restore_db)
    events_before = {row[0] for row in restore_db.query("SELECT id FROM stripe_events")}
    listed = list(stripe_api.v1.events.list({"created": {"gte": since}, "limit": 100}).auto_paging_iter())
    assert len(listed) > 20 and {event.id for event in listed} <= events_before
    assert {row[4] for row in payments_before.values()} == {"succeeded", "refunded", "failed", "partially_refunded"}

    # The restore: the tables as the backup holds them, plus the decline's last event, stored by a webhook after the
    # restore and applied then to no row (the payment's row was gone): reconcile must apply it to the recreated row.
    declined_intent = declined.json()["error"]["stripe_payment_intent_id"]
    webhook_after_restore = next(event.id for event in listed if event.type == "payment_intent.payment_failed"
                                 and event.data.object.id == declined_intent)
    restore_backup(restore_db, webhook_after_restore)
    restored = tables(restore_db)
    assert payment_rows(restore_db)[refunded_later["id"]][4] == "succeeded"

    expected = {"since": since, "events_seen": len(listed), "stored": len(listed) - 1, "already_present": 1,
                "payments_updated": 1, "payments_recreated": 4, "refunds_recreated": 3,
                "first_event": listed[-1].id, "last_event": listed[0].id}
    dry = reconcile(release_dir, reconcile_env, "--since", str(since), "--dry-run")
    assert summary_of(dry) == {**expected, "dry_run": True}
    assert tables(restore_db) == restored, "a dry run wrote to the database"

    real = reconcile(release_dir, reconcile_env, "--since", str(since))
    assert summary_of(real) == {**expected, "dry_run": False}
    assert f"payment {orphaned['id']}: customer {lost_customer} is not in the database" in real.stderr
    assert len(real.stderr.splitlines()) == 1, real.stderr

    # Every payment and refund is back as it was, with Stripe's creation times; the orphan without its customer.
    intents = {intent.id: intent for intent in stripe_api.v1.payment_intents.list({"limit": 100}).auto_paging_iter()}
    payments_after = payment_rows(restore_db)
    assert set(payments_after) == set(payments_before)
    for payment_id, row in payments_before.items():
        if payment_id in backup["payments"]:
            expected_row = row if payment_id != refunded_later["id"] else (*row[:4], "refunded", *row[5:])
        else:
            customer_id = None if payment_id == orphaned["id"] else row[1]
            expected_row = (row[0], customer_id, *row[2:6], intents[row[0]].created)
        assert payments_after[payment_id] == expected_row, payment_id
    assert payments_after[refunded["id"]][1] == kept_customer and payments_after[refunded["id"]][4] == "refunded"
    assert payments_after[partial["id"]][4] == "partially_refunded"
    assert not restore_db.query("SELECT id FROM payments WHERE stripe_payment_intent_id = %s", outside.id)
    refunds = {item.id: item for item in stripe_api.v1.refunds.list({"limit": 100}).auto_paging_iter()}
    assert refund_rows(restore_db) == {refund_id: (*row[:4], refunds[row[1]].created)
                                       for refund_id, row in refunds_before.items()}
    assert {row[0] for row in restore_db.query("SELECT id FROM stripe_events WHERE processed_at IS NOT NULL")} \
        == events_before == {row[0] for row in restore_db.query("SELECT id FROM stripe_events")}
    assert restore_db.query("SELECT count(*) FROM stripe_events WHERE payload->'data'->'object'->>'id' = %s",
                            outside.id)[0][0] >= 2

    # Idempotent: a second run stores and changes nothing.
    after = tables(restore_db)
    again = reconcile(release_dir, reconcile_env, "--since", str(since))
    assert summary_of(again) == {**expected, "stored": 0, "already_present": len(listed), "payments_updated": 0,
                                 "payments_recreated": 0, "refunds_recreated": 0, "dry_run": False}
    assert tables(restore_db) == after

    # The client keys came back: a client's retry is answered from the row, Stripe is not asked again.
    intent_count = len(intents)
    retried = pay(service, api_key, payments_before[refunded["id"]][5], 3000, customer_id=kept_customer)
    assert (retried.status, retried.json()["id"], retried.json()["status"]) == (200, refunded["id"], "refunded")
    retried_decline = pay(service, api_key, declined_key, 2200, method=DECLINED)
    assert (retried_decline.status, retried_decline.json()["status"]) == (200, "failed")
    assert len(list(stripe_api.v1.payment_intents.list({"limit": 100}).auto_paging_iter())) == intent_count


def test_env_file_overrides_the_environment(emulator: StripeEmulator, restore_db: RestoreDatabase, release_dir: Path,
                                            tmp_path: Path, service_env: dict[str, str]) -> None:
    # The deploy's env file: every service variable, double-quoted, backslashes and quotes escaped. The database
    # password holds both, so the connection works only when the file is read as the deploy wrote it.
    url = f"postgresql://{ENV_FILE_USER}:{ESCAPED_PASSWORD}@127.0.0.1:{restore_db.postgres.port}/{restore_db.name}"
    values = {**service_env, "DATABASE_URL": url, "STRIPE_API_BASE": emulator.url}
    lines = ["# managed by the deploy: environment of payments-green", ""]
    lines += [f'{name}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
              for name, value in sorted(values.items())]
    env_file = tmp_path / "payments-green.env"
    env_file.write_text("\n".join(lines) + "\n")
    env_file.chmod(0o600)
    environment = {"DATABASE_URL": f"postgresql://nobody:wrong@127.0.0.1:{free_port()}/nothing",
                   "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_hex(12), "STRIPE_API_BASE": "http://127.0.0.1:9"}
    stripe_api = emulator.client()
    stripe_api.v1.customers.create({"email": "env-file@example.com"})
    stripe_api.v1.payment_intents.create({"amount": 1500, "currency": "usd", "payment_method": VISA, "confirm": True,
                                          "payment_method_types": ["card"]})
    made = [event.id for event in stripe_api.v1.events.list({"limit": 100}).auto_paging_iter()]
    before = tables(restore_db)
    result = reconcile(release_dir, environment, "--since", "0", "--env-file", str(env_file), "--dry-run")
    assert summary_of(result) == {"since": 0, "events_seen": len(made), "stored": len(made), "already_present": 0,
                                  "payments_updated": 0, "payments_recreated": 0, "refunds_recreated": 0,
                                  "first_event": made[-1], "last_event": made[0], "dry_run": True}
    assert len(made) == 4  # customer.created; payment_intent.created, charge.succeeded, payment_intent.succeeded
    assert tables(restore_db) == before
    assert ESCAPED_PASSWORD not in result.stderr


def test_unreachable_database_fails_before_stripe_is_asked(restore_db: RestoreDatabase, emulator: StripeEmulator,
                                                           release_dir: Path, reconcile_env: dict[str, str],
                                                           secret_values: list[str]) -> None:
    wrong_password = secrets.token_hex(12)
    cases = {
        "wrong password": f"postgresql://{restore_db.app_user}:{wrong_password}@127.0.0.1:{restore_db.postgres.port}/"
                          f"{restore_db.name}",
        "nothing listening": f"postgresql://{restore_db.app_user}:{wrong_password}@127.0.0.1:{free_port()}/{restore_db.name}",
    }
    emulator.admin("DELETE", "/_emulator/requests")
    for case, url in cases.items():
        result = reconcile(release_dir, {**reconcile_env, "DATABASE_URL": url}, "--since", "0")
        line = failure_of(result, 75, [wrong_password, *secret_values])
        assert line.startswith("reconcile: database error: OperationalError: "), (case, line)
    assert emulator.requests("GET", "/v1/events") == []


def test_unreachable_stripe_fails_after_the_sdk_retries(restore_db: RestoreDatabase, emulator: StripeEmulator,
                                                        stripe_emulator_factory: Callable[[], StripeEmulator],
                                                        release_dir: Path, reconcile_env: dict[str, str],
                                                        secret_values: list[str]) -> None:
    before = tables(restore_db)
    stopped = stripe_emulator_factory()
    stopped.proc.terminate()
    assert stopped.proc.wait(30) == 0
    result = reconcile(release_dir, {**reconcile_env, "STRIPE_API_BASE": stopped.url}, "--since", "0")
    line = failure_of(result, 69, secret_values)
    assert line == (f"reconcile: the Stripe API at {stopped.url} could not list events after 3 attempts "
                    "(APIConnectionError)")
    # Stripe answering 500 to every attempt: the SDK's two retries, then the same failure.
    emulator.admin("DELETE", "/_emulator/requests")
    emulator.admin("POST", "/_emulator/faults", {"kind": "status", "status": 500, "method": "GET",
                                                 "path_prefix": "/v1/events", "count": 3})
    try:
        result = reconcile(release_dir, reconcile_env, "--since", "0")
    finally:
        emulator.admin("DELETE", "/_emulator/faults")
    line = failure_of(result, 69, secret_values)
    assert line == f"reconcile: the Stripe API at {emulator.url} could not list events after 3 attempts (APIError, HTTP 500)"
    assert [request["status"] for request in emulator.requests("GET", "/v1/events")] == [500, 500, 500]
    assert tables(restore_db) == before


def test_bad_configuration_is_refused_without_secrets(restore_db: RestoreDatabase, emulator: StripeEmulator,
                                                      release_dir: Path, reconcile_env: dict[str, str],
                                                      secret_values: list[str], tmp_path: Path) -> None:
    wrong_key = "sk_test_" + secrets.token_hex(12)
    malformed = tmp_path / "malformed.env"
    malformed.write_text(f'# comment\nSTRIPE_SECRET_KEY="{wrong_key}"\nthis line leaks {wrong_key}\n')
    without_key = {name: value for name, value in reconcile_env.items() if name != "STRIPE_SECRET_KEY"}
    cases: list[tuple[dict[str, str], list[str], int, str]] = [
        (without_key, [], 78, "reconcile: configuration error: missing required environment variable(s): STRIPE_SECRET_KEY"),
        ({**reconcile_env, "DATABASE_URL": "mysql://u:p@127.0.0.1/db"}, [], 78,
         "reconcile: configuration error: DATABASE_URL must be a postgresql:// URL"),
        ({**reconcile_env, "STRIPE_SECRET_KEY": wrong_key}, [], 78,
         "reconcile: Stripe refused STRIPE_SECRET_KEY (AuthenticationError, HTTP 401)"),
        (reconcile_env, ["--env-file", str(tmp_path / "absent.env")], 78,
         f"reconcile: cannot read the env file {tmp_path / 'absent.env'}: No such file or directory"),
        (reconcile_env, ["--env-file", str(malformed)], 78,
         f"reconcile: the env file {malformed} line 3 is not NAME=VALUE"),
    ]
    for env, args, code, message in cases:
        result = reconcile(release_dir, env, "--since", "0", *args)
        assert failure_of(result, code, [wrong_key, *secret_values]) == message
    usage = reconcile(release_dir, reconcile_env, "--since", "yesterday")
    assert usage.returncode == 2 and "--since: must be epoch seconds" in usage.stderr and usage.stdout == ""


RANK_SCRIPT = """
import itertools, json, os, secrets
from payment_service import payment_records, reconcile, stripe_events
from payment_service.database import Database

database = Database(os.environ["DATABASE_URL"])
statuses = ["requires_confirmation", "failed", "succeeded", "partially_refunded", "refunded"]
answers = []
for current, status in itertools.product(statuses, statuses):
    tag = secrets.token_hex(6)
    payment_records.insert_payment(database, "pay_rank" + tag, "pi_rank" + tag, None, 100, "eur", current, "rank-" + tag)
    update = stripe_events.PaymentUpdate("pi_rank" + tag, status)
    dry = reconcile.DryRunLedger(database).apply(update)
    real = reconcile.Ledger(database).apply(update)
    answers.append([current, status, dry, real])
print(json.dumps(answers))
"""


def test_a_dry_run_answers_as_the_status_update_does(restore_db: RestoreDatabase, release_dir: Path,
                                                     reconcile_env: dict[str, str]) -> None:
    # Every pair of statuses: the dry run's answer, then the real UPDATE's, on the same row.
    result = subprocess.run(["python3", "-c", RANK_SCRIPT], cwd=release_dir, capture_output=True, text=True, check=False,
                            timeout=60, env={"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                                             **reconcile_env})
    try:
        assert result.returncode == 0, result.stderr
        answers = json.loads(result.stdout)
    finally:
        restore_db.query("DELETE FROM payments WHERE id LIKE %s", "pay_rank%")
    assert len(answers) == 25
    assert [(current, status) for current, status, dry, real in answers if dry != real] == []
    moved = {(current, status) for current, status, _dry, real in answers if real}
    assert ("succeeded", "refunded") in moved and ("requires_confirmation", "failed") in moved
    assert ("refunded", "succeeded") not in moved and ("succeeded", "failed") not in moved
    assert ("succeeded", "succeeded") not in moved
