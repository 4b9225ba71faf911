"""The amcheck tests' service database (as the lab sets it up) and the module runner."""

from __future__ import annotations

import secrets
import typing as t
from pathlib import Path

from amcheck_cluster import Cluster, run_module

SERVICE_ROLE = "svc"

# Tables with primary keys, a unique constraint, a plain index, TOASTed values; a second schema the default
# run must not touch, and a view (no index) that is not a table.
SCHEMA = """
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text);
CREATE TABLE payments (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id), amount numeric(12, 2) NOT NULL,
                       created_at timestamptz NOT NULL);
CREATE INDEX payments_customer_idx ON payments (customer_id, created_at);
CREATE TABLE receipts (id int PRIMARY KEY, pdf text NOT NULL);
CREATE VIEW big_payments AS SELECT * FROM payments WHERE amount > 100;
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (id int PRIMARY KEY, number text UNIQUE);
INSERT INTO customers SELECT g, 'user' || g || '@example.com', 'name ' || g FROM generate_series(1, 2000) g;
INSERT INTO payments SELECT g, 1 + g % 2000, g % 1000, '2026-01-01'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 5000) g;
INSERT INTO receipts SELECT g, (SELECT string_agg(md5(g::text || i), '') FROM generate_series(1, 200) i) FROM generate_series(1, 20) g;
INSERT INTO billing.invoices SELECT g, 'INV-' || g FROM generate_series(1, 100) g;
"""


TEMPLATE = "amc_template"


def create_template(cluster: Cluster) -> None:
    """A template database with SCHEMA, its objects owned by the service role; copying it is much faster than SCHEMA."""
    cluster.execute(f"CREATE DATABASE {TEMPLATE} OWNER {SERVICE_ROLE}")
    with cluster.connect(TEMPLATE) as conn:
        conn.execute(f"SET ROLE {SERVICE_ROLE}")
        conn.execute(SCHEMA)


def create_service_db(cluster: Cluster, amcheck: bool) -> str:
    """A database owned by the service role with SCHEMA; with ``amcheck`` the extension is set up as the lab does it."""
    name = f"amc_{secrets.token_hex(5)}"
    cluster.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} OWNER {SERVICE_ROLE}")
    if amcheck:
        install_amcheck(cluster, name)
    return name


def install_amcheck(cluster: Cluster, dbname: str) -> None:
    cluster.execute("CREATE EXTENSION IF NOT EXISTS amcheck", dbname)
    cluster.execute(f"GRANT EXECUTE ON FUNCTION bt_index_check(regclass, boolean) TO {SERVICE_ROLE}", dbname)


class Amcheck:
    """Runs the module as the service role against one database; keyword arguments override its options."""

    def __init__(self, cluster: Cluster, collections_dir: Path, work_dir: Path) -> None:
        self.cluster = cluster
        self.collections_dir = collections_dir
        self.work_dir = work_dir
        self.service_password = f"{cluster.password}-svc"

    def __call__(self, db: str, check: bool = False, **options: t.Any) -> dict[str, t.Any]:
        args = {"login_host": "127.0.0.1", "login_port": self.cluster.port, "login_user": SERVICE_ROLE,
                "login_password": self.service_password, "db": db, "ssl_mode": "disable", **options}
        return run_module(self.collections_dir, self.work_dir, args, check=check)
