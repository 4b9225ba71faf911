"""Fixtures for card_data_scan_info against a real PostgreSQL 15 cluster: one cluster per run (initdb as ``postgres``,
password auth, 127.0.0.1 on a free port, no Unix socket), a fresh copy of the service's database per test, owned by
the non-superuser service role ``svc`` as in production, and a runner that runs the module as Ansible does."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import typing as t
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "postgres_amcheck"))
import amcheck_cluster  # noqa: E402  pylint: disable=wrong-import-position
from amcheck_cluster import COLLECTION_ROOT, PG_BIN, collections_dir_for_checkout, run_module  # noqa: E402  pylint: disable=wrong-import-position

MODULE = "ansible_collections.payments.deploy.plugins.modules.card_data_scan_info"
SERVICE_ROLE = "svc"
TEMPLATE = "cds_template"
# Stripe's published fixtures (MIT), the copy kept beside the Stripe emulator's tests.
STRIPE_FIXTURES = Path(os.environ.get("STRIPE_FIXTURES", COLLECTION_ROOT / "tests" / "lab" / "stripe_emulator" / "stripe_openapi"
                                      / "fixtures3.json"))

# The service's tables as its migrations create them (lab/payment_service/migrations/deploy), and an index on
# payments.created_at; rows are added by stripe_rows() and the tests.
SCHEMA = """
CREATE TABLE customers (id text PRIMARY KEY, email text NOT NULL, email_hash text NOT NULL, name text NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE payments (id text PRIMARY KEY, stripe_payment_intent_id text UNIQUE NOT NULL, customer_id text NULL REFERENCES customers (id),
                       amount bigint NOT NULL CHECK (amount > 0), currency char(3) NOT NULL, status text NOT NULL,
                       idempotency_key text UNIQUE NOT NULL, created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
                       description text);
CREATE INDEX payments_created_at_idx ON payments (created_at);
CREATE TABLE refunds (id text PRIMARY KEY, payment_id text REFERENCES payments (id), stripe_refund_id text UNIQUE NOT NULL,
                      amount bigint NOT NULL, status text NOT NULL, created_at timestamptz DEFAULT now());
CREATE TABLE stripe_events (id text PRIMARY KEY, type text NOT NULL, livemode boolean NOT NULL, created timestamptz NOT NULL,
                            payload jsonb NOT NULL, received_at timestamptz DEFAULT now(), processed_at timestamptz NULL);
"""


class Cluster(amcheck_cluster.Cluster):
    """The amcheck suite's throw-away cluster, with the non-superuser service role that owns the service's tables."""

    def __init__(self) -> None:
        super().__init__()
        self.service_password = secrets.token_hex(16)

    def as_service(self, dbname: str, sql: str, params: t.Any = None) -> None:
        """Run ``sql`` as the service role (the owner of the service's tables), as the service would write its rows."""
        with self.connect(dbname) as conn:
            conn.execute(f"SET ROLE {SERVICE_ROLE}")
            conn.execute(sql, params)


def stripe_fixture(resource: str) -> dict[str, t.Any]:
    fixture: dict[str, t.Any] = json.loads(STRIPE_FIXTURES.read_text())["resources"][resource]
    return fixture


def stripe_event(event_id: str, event_type: str, obj: dict[str, t.Any], created: int) -> dict[str, t.Any]:
    """A webhook event as Stripe sends it (the fixture's envelope) around one of Stripe's fixture objects."""
    event = stripe_fixture("event")
    event.update(id=event_id, type=event_type, created=created, data={"object": obj})
    return event


def stripe_rows(cluster: Cluster, dbname: str) -> None:
    """What the service stores for a few card payments: customers, payments and refunds keyed by Stripe ids, and the
    webhook events with Stripe's payment_intent and charge objects (last4, fingerprint, epoch times, amounts)."""
    intent, charge = stripe_fixture("payment_intent"), stripe_fixture("charge")
    rows = []
    for number in range(1, 41):
        created = 1767225600 + number * 60  # 2026-01-01 onwards
        rows.append(("payment_intent.succeeded", {**intent, "created": created, "status": "succeeded", "latest_charge": charge["id"]}))
        rows.append(("charge.succeeded", {**charge, "created": created, "payment_intent": intent["id"]}))
    cluster.as_service(dbname, """
        INSERT INTO customers SELECT 'cus_' || md5(g::text), 'user' || g || '@example.com', encode(sha256(g::text::bytea), 'hex'),
               'Jenny Rosen ' || g, '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 40) g;
        INSERT INTO payments (id, stripe_payment_intent_id, customer_id, amount, currency, status, idempotency_key, created_at)
          SELECT 'pay_' || g, 'pi_' || md5('pi' || g), 'cus_' || md5(g::text), 1099 + g, 'usd', 'succeeded', 'idem-' || md5(g::text),
                 '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 40) g;
        INSERT INTO refunds SELECT 're_' || md5(g::text), 'pay_' || g, 're_' || md5('re' || g), 100, 'succeeded',
               '2026-01-02'::timestamptz + g * interval '1 minute' FROM generate_series(1, 5) g;
    """)
    with cluster.connect(dbname) as conn:
        conn.execute(f"SET ROLE {SERVICE_ROLE}")
        for index, (event_type, obj) in enumerate(rows):
            event_id = f"evt_{secrets.token_hex(12)}"
            conn.execute("INSERT INTO stripe_events (id, type, livemode, created, payload, processed_at) "
                         "VALUES (%s, %s, false, to_timestamp(%s), %s, now())",
                         (event_id, event_type, obj["created"], json.dumps(stripe_event(event_id, event_type, obj, obj["created"] + index))))


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster() -> t.Iterator[Cluster]:
    if not os.access(PG_BIN / "postgres", os.X_OK):
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    running = Cluster()
    try:
        running.init()
        running.start()
        running.execute(f"CREATE ROLE {SERVICE_ROLE} LOGIN PASSWORD '{running.service_password}'")
        running.execute(f"CREATE DATABASE {TEMPLATE} OWNER {SERVICE_ROLE}")
        running.as_service(TEMPLATE, SCHEMA)
        stripe_rows(running, TEMPLATE)
        yield running
    finally:
        running.remove()


@pytest.fixture
def service_db(cluster: Cluster) -> t.Iterator[str]:
    """A copy of the service's database (schema and clean Stripe rows), owned by the service role."""
    name = f"cds_{secrets.token_hex(5)}"
    cluster.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} OWNER {SERVICE_ROLE}")
    yield name
    cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def work_dir() -> t.Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="payments-cds-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Scan:
    """Runs the module as Ansible does (a separate Python process reading its arguments) as the service role;
    keyword arguments override its options. The result is the module's JSON, its raw text in ``result['stdout']``."""

    def __init__(self, cluster: Cluster, collections_dir: Path, work_dir: Path) -> None:
        self.cluster = cluster
        self.collections_dir = collections_dir
        self.work_dir = work_dir

    def url(self, db: str) -> str:
        return f"postgresql://{SERVICE_ROLE}:{self.cluster.service_password}@127.0.0.1:{self.cluster.port}/{db}?sslmode=disable"

    def __call__(self, db: str | None, check: bool = False, **options: t.Any) -> dict[str, t.Any]:
        args: dict[str, t.Any] = {"login_host": "127.0.0.1", "login_port": self.cluster.port, "login_user": SERVICE_ROLE,
                                  "login_password": self.cluster.service_password, "db": db, "ssl_mode": "disable"}
        if "url" in options:
            args = {}
        args.update(options)
        result = run_module(self.collections_dir, self.work_dir, args, check=check, module=MODULE)
        result["stdout"] = result.pop("output")
        # a module's warnings are summaries (message and where) since ansible-core 2.19
        result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]
        return result


@pytest.fixture
def scan(cluster: Cluster, collections_dir: Path, work_dir: Path) -> Scan:
    return Scan(cluster, collections_dir, work_dir)
