"""A payments-like source cluster with real pg_backup backups, and the dr_drill role run through ansible-playbook on
localhost; the backup suite's cluster and module runner are reused by import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path
from host_python import HOST_PYTHON

HERE = Path(__file__).resolve().parent
BACKUP_SUITE = HERE.parent / "postgres_backup"
if str(BACKUP_SUITE) not in sys.path:
    sys.path.insert(0, str(BACKUP_SUITE))

from pg_backup_helpers import ansible_env, run_module  # noqa: E402  pylint: disable=wrong-import-position
from pg_backup_servers import PostgresCluster  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))

# The service's tables as its migrations make them, owned by the service's role, with a migration registry.
SCHEMA = """
CREATE ROLE payments NOLOGIN;
CREATE SCHEMA payments_deploy AUTHORIZATION payments;
CREATE TABLE payments_deploy.changes (name text PRIMARY KEY, applied_at timestamptz NOT NULL);
INSERT INTO payments_deploy.changes VALUES ('0001_customers', now() - interval '2 days'), ('0002_payments', now() - interval '1 day');
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE payments (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id), amount bigint NOT NULL,
                       status text NOT NULL, created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE INDEX payments_customer ON payments (customer_id, created_at);
CREATE TABLE refunds (id bigserial PRIMARY KEY, payment_id bigint NOT NULL REFERENCES payments(id), amount bigint NOT NULL,
                      created_at timestamptz DEFAULT now());
ALTER TABLE customers OWNER TO payments;
ALTER TABLE payments OWNER TO payments;
ALTER TABLE refunds OWNER TO payments;
INSERT INTO customers SELECT g, 'user' || g || '@example.com', now() - interval '3 days' FROM generate_series(1, 500) g;
INSERT INTO payments (customer_id, amount, status, created_at, updated_at)
  SELECT 1 + g % 500, g * 10, 'succeeded', now() - interval '2 hours' - g * interval '1 second',
         now() - interval '2 hours' - g * interval '1 second' FROM generate_series(1, 3000) g;
INSERT INTO refunds (payment_id, amount, created_at) SELECT g, 5, now() - interval '3 hours' FROM generate_series(1, 40) g;
"""


def create_service_db(cluster: PostgresCluster, name: str) -> None:
    cluster.execute(f'CREATE DATABASE "{name}"')
    cluster.execute(SCHEMA.replace("CREATE ROLE payments NOLOGIN;", "" if has_role(cluster, "payments") else "CREATE ROLE payments NOLOGIN;"),
                    dbname=name)


def has_role(cluster: PostgresCluster, role: str) -> bool:
    return bool(cluster.execute(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'"))


def take_backup(collections_dir: Path, cluster: PostgresCluster, database: str, store: Path, key: str) -> dict[str, t.Any]:
    """A real backup with payments.deploy.pg_backup (row counts and migration head in its manifest)."""
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "dest_dir": str(store), "encryption_key": key,
                                                       "migration_registry_table": "payments_deploy.changes"})
    assert result.get("failed") is not True, result
    return result


def backup_info(collections_dir: Path, args: dict[str, t.Any]) -> dict[str, t.Any]:
    return run_module(collections_dir, "backup_info", args)


class DrillRun(t.NamedTuple):
    rc: int
    output: str
    result: dict[str, t.Any] | None


def run_drill(collections_dir: Path, workdir: Path, variables: dict[str, t.Any], *flags: str) -> DrillRun:
    """ansible-playbook applying payments.deploy.dr_drill on localhost; the drill's registered result read from a file
    a last play writes, whether the drill passed or failed."""
    playbook = workdir / "drill.yml"
    result_file = workdir / "drill-result.json"
    playbook.write_text(json.dumps([
        {"name": "Drill", "hosts": "localhost", "gather_facts": False,
         "tasks": [{"name": "Run the drill", "block": [{"name": "Drill", "ansible.builtin.include_role": {"name": "payments.deploy.dr_drill"}}],
                    "always": [{"name": "Keep the result", "ansible.builtin.copy": {
                        "content": "{{ dr_drill_result | default(none) | to_json }}", "dest": str(result_file), "mode": "0600"}}]}]},
    ]))
    extra = workdir / "vars.json"
    extra.write_text(json.dumps(variables))
    env = ansible_env(collections_dir, callback="ansible.builtin.default")
    proc = subprocess.run([PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={HOST_PYTHON}",
                           "-e", f"@{extra}", *flags, str(playbook)], capture_output=True, text=True, check=False, timeout=900,
                          env=env, cwd=workdir)
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    return DrillRun(proc.returncode, proc.stdout + proc.stderr, result)


def postgres_processes(data_dir: Path) -> list[str]:
    """Command lines of the running processes whose arguments name ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(data_dir) in cmdline:
            found.append(cmdline)
    return found


def owned_by_postgres_if_root(path: Path) -> None:
    if os.geteuid() == 0:
        import shutil  # pylint: disable=import-outside-toplevel

        shutil.chown(path, "postgres", "postgres")
