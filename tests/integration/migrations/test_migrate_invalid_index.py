"""The migrate role refuses a schema holding an INVALID index (what a failed CREATE INDEX CONCURRENTLY leaves): the
release would run without it. migrate_fail_on_invalid_index=false lets the run go on, with amcheck's warning."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from migration_cluster import COLLECTION_ROOT, SERVICE_PLAN, Cluster
from host_python import HOST_PYTHON

pytestmark = pytest.mark.timeout(300)

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
PLAYBOOK = """
- name: Migrate
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [secrets.json]
  tasks:
    - name: Migrate
      ansible.builtin.include_role:
        name: payments.deploy.migrate
      vars:
        migrate_database_url: "{{ database_url }}"
        migrate_plan_dir: "{{ plan_dir }}"
"""


def migrate(work_dir: Path, collections_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_dir), ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_ROLES_PATH=str(COLLECTION_ROOT / "roles"))
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-e", f"ansible_python_interpreter={HOST_PYTHON}",
                           "-e", f"plan_dir={SERVICE_PLAN}", *extra, str(work_dir / "play.yml")], capture_output=True,
                          text=True, env=env, cwd=work_dir, timeout=240, check=False)


def test_an_invalid_index_stops_the_role_unless_allowed(cluster: Cluster, database: str, collections_dir: Path,
                                                        work_dir: Path) -> None:
    url = cluster.dsn(database) + "?sslmode=disable"
    with cluster.connect(database) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    (work_dir / "secrets.json").write_text(json.dumps({"database_url": url}))
    (work_dir / "play.yml").write_text(PLAYBOOK)
    first = migrate(work_dir, collections_dir)
    assert first.returncode == 0, first.stdout + first.stderr

    with cluster.connect(database) as conn:
        for number in (1, 2):  # one amount twice: a unique index on it cannot be built
            conn.execute("INSERT INTO payments (id, stripe_payment_intent_id, amount, currency, status, idempotency_key) "
                         "VALUES (%s, %s, 500, 'usd', 'succeeded', %s)",
                         (f"pay_{number}", f"pi_{number}", secrets.token_hex(8)))
    with cluster.connect(database) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY payments_amount_uniq ON payments (amount)")  # left INVALID

    refused = migrate(work_dir, collections_dir)
    output = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0
    assert "Refuse an index the database holds as INVALID" in output
    assert "1 index(es) of public are INVALID" in output and "public.payments_amount_uniq (table public.payments)" in output

    allowed = migrate(work_dir, collections_dir, "-e", "migrate_fail_on_invalid_index=false")
    said = " ".join((allowed.stdout + allowed.stderr).split())
    assert allowed.returncode == 0, said[-3000:]
    assert "index public.payments_amount_uniq is INVALID and was not checked" in said
