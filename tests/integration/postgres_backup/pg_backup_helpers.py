"""Helpers of the backup tests: payments-like databases, the module runners (``ansible`` CLI and direct), the backup
file format."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
import subprocess
import sys
import typing as t
from pathlib import Path

from pg_backup_servers import PostgresCluster
from host_python import HOST_PYTHON

ANSIBLE = str(Path(sys.executable).with_name("ansible"))
HEADER_SIZE = 72  # format version 2: the 40 bytes of version 1 and the 32-byte context

SCHEMA = """
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text, country char(2), metadata jsonb);
CREATE TABLE payments (
  id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id), intent text NOT NULL UNIQUE,
  amount numeric(12, 2) NOT NULL, currency char(3) NOT NULL, status text NOT NULL, description text,
  metadata jsonb NOT NULL, created_at timestamptz NOT NULL);
CREATE INDEX payments_customer ON payments (customer_id, created_at);
CREATE TABLE receipts (id int PRIMARY KEY, pdf bytea NOT NULL);
CREATE VIEW succeeded_payments AS SELECT * FROM payments WHERE status = 'succeeded';
INSERT INTO customers
  SELECT g, 'user' || g || '@example.com', CASE WHEN g % 10 = 0 THEN NULL ELSE 'Zoë O''Brien\t#' || g END,
         (ARRAY['US', 'DE', 'FR'])[1 + g % 3], jsonb_build_object('plan', (ARRAY['free', 'pro'])[1 + g % 2], 'note', E'multi\\nline "q"')
  FROM generate_series(1, 2000) g;
INSERT INTO payments (customer_id, intent, amount, currency, status, description, metadata, created_at)
  SELECT 1 + g % 2000, 'pi_' || md5(g::text), (g % 100000) / 100.0, (ARRAY['usd', 'eur'])[1 + g % 2],
         (ARRAY['succeeded', 'succeeded', 'canceled', 'requires_payment_method'])[1 + g % 4],
         'Order #' || g || E' \\\\ backslash', jsonb_build_object('order', g, 'sku', 'SKU-' || (g % 50)),
         timestamptz '2025-01-01 00:00:00+00' + g * interval '37 seconds'
  FROM generate_series(1, 20000) g;
-- 800 x 16 KiB of random bytes: 13 MiB that does not compress, so a backup has several 1 MiB chunks and S3 parts
INSERT INTO receipts
  SELECT r, (SELECT decode(string_agg(md5(random()::text || r || i), ''), 'hex') FROM generate_series(1, 1024) i)
  FROM generate_series(1, 800) r;
ANALYZE;
"""


def create_payments_db(cluster: PostgresCluster, name: str) -> None:
    cluster.execute(f'CREATE DATABASE "{name}"')
    cluster.execute(SCHEMA, dbname=name)


def create_small_db(cluster: PostgresCluster, name: str) -> None:
    """For tests that need a real backup, not a big one."""
    cluster.execute(f'CREATE DATABASE "{name}"')
    cluster.execute("CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL);"
                    "INSERT INTO customers SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 2000) g", dbname=name)


PAYMENTS_TEMPLATE = "payments_template"


def create_payments_template(cluster: PostgresCluster) -> None:
    """The payments database every test copies (``CREATE DATABASE ... TEMPLATE``); a template database, so it is not
    among ``cluster.databases()``."""
    create_payments_db(cluster, PAYMENTS_TEMPLATE)
    cluster.execute(f'ALTER DATABASE "{PAYMENTS_TEMPLATE}" IS_TEMPLATE true')


def table_contents(cluster: PostgresCluster, dbname: str) -> dict[str, t.Any]:
    """Every row of every user table (md5 of its ordered COPY text; whole rows for customers) and sequence values."""
    contents: dict[str, t.Any] = {}
    with cluster.connect(dbname) as conn:
        tables = conn.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
                              "ORDER BY 1, 2").fetchall()
        for schema, table in tables:
            data = bytearray()
            with conn.cursor().copy(f'COPY (SELECT * FROM "{schema}"."{table}" ORDER BY 1) TO STDOUT') as copy:
                for block in copy:
                    data += block
            contents[f"{schema}.{table}"] = {"rows": data.count(b"\n"), "md5": hashlib.md5(data).hexdigest()}
        contents["customers rows"] = conn.execute("SELECT * FROM customers ORDER BY id LIMIT 50").fetchall()
        contents["sequences"] = conn.execute("SELECT sequencename, last_value FROM pg_sequences ORDER BY 1").fetchall()
        contents["views"] = conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public' ORDER BY 1").fetchall()
    return contents


def ansible_env(collections_dir: Path, callback: str = "ansible.posix.json", extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "ENCRYPTION_KEY", "AWS_", "PG"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_dir), ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK=callback,
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    env.update(extra or {})
    return env


def ansible_command(module: str, args: dict[str, t.Any], *flags: str) -> list[str]:
    return [ANSIBLE, "localhost", "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={HOST_PYTHON}",
            "-m", f"payments.deploy.{module}", "-a", json.dumps(args), *flags]


def ansible(collections_dir: Path, module: str, args: dict[str, t.Any], *flags: str, env: dict[str, str] | None = None) -> dict[str, t.Any]:
    """Run one module on localhost with the real ``ansible`` CLI; return its result."""
    proc = subprocess.run(ansible_command(module, args, *flags), capture_output=True, text=True, check=False, timeout=600,
                          env=ansible_env(collections_dir, extra=env), cwd=collections_dir)
    try:
        report = json.loads(proc.stdout)
        return report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(f"ansible failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc


MODULE_FLAGS = {"--check": "_ansible_check_mode", "--diff": "_ansible_diff"}


def run_module(collections_dir: Path, module: str, args: dict[str, t.Any], *flags: str,
               env: dict[str, str] | None = None, preexec_fn: t.Callable[[], None] | None = None) -> dict[str, t.Any]:
    """Run one module as its own process without the ``ansible`` CLI (whose start-up costs seconds per call): the module
    file itself with its arguments on stdin, as AnsiballZ hands them over; ``--check``/``--diff`` become the internal
    arguments the CLI would set. The same module code, environment and exit status; most tests use this, a few keep
    the CLI (round trip, check mode, secrets at -vvvv) so that the whole Ansible path stays covered."""
    payload = {**args, **{MODULE_FLAGS[flag]: True for flag in flags}}
    environ = {**ansible_env(collections_dir, extra=env), "PYTHONPATH": str(collections_dir)}
    proc = subprocess.run([sys.executable, "-m", f"ansible_collections.payments.deploy.plugins.modules.{module}"],
                          input=json.dumps({"ANSIBLE_MODULE_ARGS": payload}), capture_output=True, text=True,
                          check=False, timeout=600, env=environ, cwd=collections_dir,
                          preexec_fn=preexec_fn)  # pylint: disable=subprocess-popen-preexec-fn
    try:
        result = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc
    assert (proc.returncode != 0) == (result.get("failed") is True), f"exit status {proc.returncode} for {result}"
    # as the CLI reports them: warnings as their messages
    result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]
    return result


def sign_manifest(manifest: dict[str, t.Any], key_hex: str) -> dict[str, t.Any]:
    """The manifest with the MAC the documented format gives it (an independent implementation: HKDF-SHA256 of the key,
    HMAC-SHA256 of the canonical JSON without ``mac``), as someone holding the key could write it."""
    from cryptography.hazmat.primitives import hashes  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # pylint: disable=import-outside-toplevel

    body = {k: v for k, v in manifest.items() if k != "mac"}
    mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"payments.deploy backup manifest v1 HMAC-SHA256").derive(bytes.fromhex(key_hex))
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return {**body, "mac": "hmac-sha256:" + hmac.new(mac_key, canonical, hashlib.sha256).hexdigest()}


def records(data: bytes) -> list[tuple[int, int]]:
    """``(offset, size)`` of every record (4-byte length + ciphertext) after the header of a backup object."""
    found = []
    offset = HEADER_SIZE
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        found.append((offset, 4 + length))
        offset += 4 + length
    assert offset == len(data), "records do not add up to the object size"
    return found


def files_in(directory: Path) -> list[str]:
    """Every file in ``directory`` including hidden temporary ones."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []
