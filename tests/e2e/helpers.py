"""Small helpers shared by the end-to-end tests."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path


def live(url: str, samples: int = 12) -> tuple[set[str], set[str]]:
    """Versions and instances that answer through a frontend."""
    versions, instances = set(), set()
    for _request in range(samples):
        with urllib.request.urlopen(f"{url}/version", timeout=5) as answer:
            body = json.load(answer)
        versions.add(body["version"])
        instances.add(body["instance"])
    return versions, instances


def versions_or_nothing(url: str) -> set[str]:
    """The versions live through a frontend; empty when nothing answers (a new lab)."""
    try:
        return live(url)[0]
    except (urllib.error.URLError, OSError):
        return set()


def map_colour(map_file: str, key: str = "production") -> str:
    for line in Path(map_file).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return parts[1]
    raise AssertionError(f"{key} not in {map_file}")


def journal(lab: dict, kind: str, environment: str = "production") -> dict:
    """The last journal record of a kind (deploy, rollback) that the playbooks wrote on the load balancer."""
    path = Path(lab["state_dir"]) / "hosts" / "lb1" / "var" / "lib" / "payments" / "journal" / environment
    return json.loads((path / f"last-{kind}.json").read_text())


def has_column(lab: dict, table: str, column: str, database: str = "payments") -> bool:
    """Whether the lab's database has the column (read with the service's own credentials)."""
    import psycopg  # pylint: disable=import-outside-toplevel

    dsn = lab["postgres_dsn"].rsplit("/", 1)[0] + "/" + database
    with psycopg.connect(dsn, password=lab["secrets"]["postgres_password"], connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                           (table, column)).fetchone()
    return bool(row and row[0])


def stripe_intents(lab: dict, ids: list[str]) -> list:
    """The PaymentIntents as Stripe (the lab's emulator) has them, with their latest charge, in live mode."""
    import stripe  # pylint: disable=import-outside-toplevel

    client = stripe.StripeClient(lab["secrets"]["stripe_live_key"], base_addresses={"api": lab["stripe_api"]})
    return [client.v1.payment_intents.retrieve(i, {"expand": ["latest_charge"]}) for i in ids]


def query(lab: dict, sql: str, database: str = "payments") -> list[tuple]:
    """Rows of a query on the lab's database, with the service's credentials."""
    import psycopg  # pylint: disable=import-outside-toplevel

    dsn = lab["postgres_dsn"].rsplit("/", 1)[0] + "/" + database
    with psycopg.connect(dsn, password=lab["secrets"]["postgres_password"], connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()
