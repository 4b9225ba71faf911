"""Benchmark of pg_backup / pg_restore_backup against plain pg_dump -Fc / pg_restore on a generated payments database.

Not a test: it prints figures and ratios. It starts a throwaway PostgreSQL 15 cluster on a free port (data kept in
--data-dir so that the generated database is reused by the next run), generates a payments-like database of at least
--size-gb GB when missing, and times, interleaved and --repeat times each:

  backup   payments.deploy.pg_backup (dump, zstd, AES-256-GCM, sha256, read-back verification with a full pg_restore parse)
           vs plain ``pg_dump -Fc`` to a file
  restore  payments.deploy.pg_restore_backup (sha256 + decryption into a file, pg_restore, ANALYZE, row-count check) into a
           new database vs plain ``pg_restore`` of the pg_dump -Fc file into a new database

Usage: .venv/bin/python bench/backup_bench.py [--size-gb 1.0] [--repeat 3] [--data-dir DIR] [--work-dir DIR] [--json FILE] [--no-variants]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # loopback_ports, which the test servers import
sys.path.insert(0, str(ROOT / "tests" / "integration" / "postgres_backup"))

from pg_backup_servers import PG_BIN, PostgresCluster, collections_dir_for_checkout  # noqa: E402  pylint: disable=wrong-import-position

sys.path.insert(0, str(collections_dir_for_checkout()))

from ansible.module_utils.testing import patch_module_args  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.payments.deploy.plugins.modules import pg_backup, pg_restore_backup  # noqa: E402  pylint: disable=wrong-import-position

DB = "bench_payments"
BATCH = 250_000
MB = 1_000_000

SCHEMA = """
CREATE TABLE customers (
  id bigint PRIMARY KEY, stripe_customer_id text NOT NULL, email text NOT NULL, name text NOT NULL,
  country char(2) NOT NULL, created_at timestamptz NOT NULL, metadata jsonb NOT NULL);
CREATE TABLE payments (
  id bigint PRIMARY KEY, stripe_payment_intent_id text NOT NULL UNIQUE, customer_id bigint NOT NULL REFERENCES customers(id),
  amount_cents bigint NOT NULL, currency char(3) NOT NULL, status text NOT NULL, card_brand text, card_last4 char(4),
  description text, idempotency_key uuid NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
  metadata jsonb NOT NULL);
CREATE INDEX payments_customer_created ON payments (customer_id, created_at);
INSERT INTO customers
  SELECT g, 'cus_' || substr(md5(g::text), 1, 14), 'user' || g || '@example.' || (ARRAY['com','org','net','de'])[1 + g % 4],
    (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Ken'])[1 + g % 6] || ' '
      || (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Thompson'])[1 + (g / 6) % 6],
    (ARRAY['US','GB','DE','FR','NL','IE'])[1 + g % 6], now() - (g || ' minutes')::interval,
    jsonb_build_object('plan', (ARRAY['free','pro','enterprise'])[1 + g % 3], 'signup_source', (ARRAY['web','ios','android'])[1 + g % 3])
  FROM generate_series(1::bigint, 200000) g;
"""

# One batch of payments: ids first..first+BATCH-1 (text, jsonb, uuids: compresses like real payment rows).
PAYMENTS = """
INSERT INTO payments
  SELECT g, 'pi_' || substr(md5(g::text || 'pi'), 1, 24), 1 + (g * 7919) % 200000, 100 + (g * 104729) % 500000,
    (ARRAY['usd','eur','gbp'])[1 + g % 3],
    (ARRAY['succeeded','succeeded','succeeded','succeeded','requires_payment_method','canceled','processing'])[1 + g % 7],
    (ARRAY['visa','mastercard','amex'])[1 + g % 3], lpad(((g * 31) % 10000)::text, 4, '0'),
    'Order #' || (1000000 + g) || ' - '
      || (ARRAY['Monthly subscription','Annual plan upgrade','One-off purchase','Gift card','Usage overage'])[1 + g % 5],
    md5(g::text)::uuid, now() - ((g % 1000000) || ' seconds')::interval, now() - ((g % 900000) || ' seconds')::interval,
    jsonb_build_object('order_id', 'ord_' || (1000000 + g), 'sku', 'SKU-' || (g % 5000), 'quantity', 1 + g % 5,
      'ip', '10.' || (g % 256) || '.' || ((g / 256) % 256) || '.' || (g % 200), 'risk_score', g % 100,
      'shipping', jsonb_build_object('city', (ARRAY['Berlin','London','Paris','Dublin','Austin'])[1 + g % 5],
                                     'postal_code', lpad((g % 99999)::text, 5, '0')))
  FROM generate_series(FIRST::bigint, LAST) g
"""


def log(message: str) -> None:
    print(message, flush=True)


def database_size(cluster: PostgresCluster) -> int:
    rows = cluster.execute(f"SELECT pg_database_size('{DB}')")
    return int(rows[0][0])


def ensure_database(cluster: PostgresCluster, size_gb: float) -> None:
    """Create or grow the payments database until it holds at least ``size_gb`` GB (reused by the next run)."""
    target = int(size_gb * 1_000_000_000)
    if DB not in cluster.databases():
        log(f"generating {DB} (at least {size_gb} GB)...")
        cluster.execute(f"CREATE DATABASE {DB}")
        cluster.execute(SCHEMA, dbname=DB)
    started = time.monotonic()
    with cluster.connect(DB) as conn:
        while database_size(cluster) < target:
            first = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM payments").fetchone()[0])
            conn.execute(PAYMENTS.replace("FIRST", str(first)).replace("LAST", str(first + BATCH - 1)))
            log(f"  {first + BATCH - 1} payments, {database_size(cluster) / MB:.0f} MB")
        conn.execute("VACUUM ANALYZE")
    log(f"{DB}: {database_size(cluster) / MB:.0f} MB ready after {time.monotonic() - started:.0f}s of generation")


def run_module(module: t.Any, args: dict[str, t.Any]) -> dict[str, t.Any]:
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit:
            pass
    result = json.loads(out.getvalue())
    if result.get("failed"):
        raise RuntimeError(result["msg"])
    return result


def timed(action: t.Callable[[], t.Any]) -> tuple[float, t.Any]:
    started = time.monotonic()
    value = action()
    return time.monotonic() - started, value


def settle(cluster: PostgresCluster) -> None:
    """Start each measurement alike: no dirty buffers of the previous one left to write back while it runs."""
    cluster.execute("CHECKPOINT")
    os.sync()


def drop(cluster: PostgresCluster, name: str) -> None:
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Bench:
    def __init__(self, cluster: PostgresCluster, work: Path) -> None:
        self.cluster = cluster
        self.work = work
        self.env = {**os.environ, "PGPASSWORD": cluster.password, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres"}
        self.key = os.urandom(32).hex()
        self.plain_file = work / "plain.dump"
        self.dest = work / "backups"
        self.last_backup: dict[str, t.Any] = {}

    def plain_dump(self) -> dict[str, float]:
        settle(self.cluster)
        seconds, _unused = timed(lambda: subprocess.run([str(PG_BIN / "pg_dump"), "-Fc", "-f", str(self.plain_file), "-d", DB],
                                                        env=self.env, check=True))
        return {"seconds": seconds, "bytes": self.plain_file.stat().st_size}

    def module_backup(self) -> dict[str, t.Any]:
        shutil.rmtree(self.dest, ignore_errors=True)
        settle(self.cluster)
        seconds, result = timed(lambda: run_module(pg_backup, {**self.cluster.login(), "db": DB, "encryption_key": self.key,
                                                               "dest_dir": str(self.dest)}))
        self.last_backup = result
        return {"seconds": seconds, "bytes": result["sizes"]["stored_bytes"], "dump_bytes": result["sizes"]["dump_bytes"],
                "timings": result["timings"]}

    def plain_restore(self, round_: int, jobs: int = 1) -> dict[str, float]:
        name = f"bench_plain_{round_}"
        drop(self.cluster, name)
        self.cluster.execute(f"CREATE DATABASE {name}")
        settle(self.cluster)
        seconds, _unused = timed(lambda: subprocess.run([str(PG_BIN / "pg_restore"), f"--jobs={jobs}", "-d", name, str(self.plain_file)],
                                                        env=self.env, check=True))
        drop(self.cluster, name)
        return {"seconds": seconds}

    def module_restore(self, round_: int, **options: t.Any) -> dict[str, t.Any]:
        name = f"bench_restored_{round_}"
        drop(self.cluster, name)
        settle(self.cluster)
        seconds, result = timed(lambda: run_module(pg_restore_backup, {**self.cluster.login(), "backup_id": self.last_backup["backup_id"],
                                                                       "src_dir": str(self.dest), "target_db": name,
                                                                       "encryption_key": self.key, "temp_dir": str(self.work), **options}))
        drop(self.cluster, name)
        return {"seconds": seconds, "timings": result["timings"]}


def summary(runs: list[dict[str, t.Any]]) -> dict[str, float]:
    seconds = [r["seconds"] for r in runs]
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=1.0, help="minimum database size in GB (default 1.0)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each measurement (default 3)")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "payments-backup-bench",
                        help="cluster directory, kept for the next run (default: %(default)s)")
    parser.add_argument("--work-dir", type=Path, help="where dumps and backups are written (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-variants", action="store_true",
                        help="skip the restore variants (pg_restore_backup without ANALYZE, both restores with --jobs=2)")
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="backup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cluster = PostgresCluster(args.data_dir, settings={"shared_buffers": "'512MB'", "max_wal_size": "'8GB'",
                                                       "maintenance_work_mem": "'512MB'", "checkpoint_timeout": "'30min'"})
    if (args.data_dir / "pw").exists():
        cluster.password = (args.data_dir / "pw").read_text().strip()
    try:
        cluster.start()
        (args.data_dir / "pw").write_text(cluster.password)  # the next run reuses the cluster and its password
        os.chmod(args.data_dir / "pw", 0o600)
        ensure_database(cluster, args.size_gb)
        figures = measure(Bench(cluster, work), args.repeat, not args.no_variants)
        figures["database_bytes"] = database_size(cluster)
    finally:
        cluster.stop(remove=False)
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def measure(bench: Bench, repeat: int, variants: bool) -> dict[str, t.Any]:
    steps: dict[str, tuple[str, t.Callable[[int], dict[str, t.Any]]]] = {
        "plain_dump": ("pg_dump -Fc", lambda round_: bench.plain_dump()),
        "pg_backup": ("pg_backup", lambda round_: bench.module_backup()),
        "plain_restore": ("pg_restore", bench.plain_restore),
        "pg_restore_backup": ("pg_restore_backup", bench.module_restore),
    }
    if variants:
        steps.update({
            "pg_restore_backup_no_analyze": ("  analyze: false", lambda round_: bench.module_restore(round_, analyze=False)),
            "plain_restore_jobs2": ("pg_restore --jobs=2", lambda round_: bench.plain_restore(round_, jobs=2)),
            "pg_restore_backup_jobs2": ("  jobs: 2", lambda round_: bench.module_restore(round_, jobs=2)),
        })
    runs: dict[str, list[dict[str, t.Any]]] = {name: [] for name in steps}
    for round_ in range(repeat):
        log(f"round {round_ + 1}/{repeat} (load average {os.getloadavg()[0]:.2f})")
        # alternate which of each pair runs first; a backup must exist before its restore
        order = list(steps)
        if round_ % 2:
            order = ["pg_backup", "plain_dump"] + [name for name in reversed(order) if "restore" in name]
        for name in order:
            label, step = steps[name]
            runs[name].append(step(round_))
            timings = runs[name][-1].get("timings")
            log(f"  {label:<22} {runs[name][-1]['seconds']:7.2f}s" + (f"  {timings}" if timings else ""))
    return {
        "runs": runs, "summary": {name: summary(values) for name, values in runs.items()},
        "dump_bytes": runs["pg_backup"][-1]["dump_bytes"], "plain_bytes": runs["plain_dump"][-1]["bytes"],
        "backup_bytes": runs["pg_backup"][-1]["bytes"], "cpus": os.cpu_count(),
    }


def report(figures: dict[str, t.Any]) -> None:
    s = figures["summary"]
    dump_mb = figures["dump_bytes"] / MB

    def line(name: str, what: dict[str, float], size: int | None = None) -> str:
        text = f"{name:<34}{what['median']:8.2f}s (min {what['min']:.2f}, max {what['max']:.2f}){dump_mb / what['median']:9.1f} MB/s"
        return text + (f"{size / MB:10.1f} MB" if size else "")

    backup_ratio = s["pg_backup"]["median"] / s["plain_dump"]["median"]
    restore_ratio = s["pg_restore_backup"]["median"] / s["plain_restore"]["median"]
    log("")
    log(f"database {figures['database_bytes'] / MB:.0f} MB, uncompressed custom-format dump {dump_mb:.0f} MB, {figures['cpus']} CPUs; "
        f"median of {len(figures['runs']['plain_dump'])} rounds (MB/s of uncompressed dump)")
    log(line("pg_dump -Fc (gzip) to a file", s["plain_dump"], figures["plain_bytes"]))
    log(line("pg_backup (zstd+AES-GCM+verify)", s["pg_backup"], figures["backup_bytes"]))
    log(line("pg_restore of the -Fc file", s["plain_restore"]))
    log(line("pg_restore_backup", s["pg_restore_backup"]))
    if "plain_restore_jobs2" in s:
        log(line("pg_restore_backup analyze: false", s["pg_restore_backup_no_analyze"]))
        log(line("pg_restore --jobs=2", s["plain_restore_jobs2"]))
        log(line("pg_restore_backup jobs: 2", s["pg_restore_backup_jobs2"]))
    log(f"backup time ratio  pg_backup / pg_dump -Fc        {backup_ratio:.2f}  (goal < 0.75)")
    log(f"backup size ratio  pg_backup / pg_dump -Fc        {figures['backup_bytes'] / figures['plain_bytes']:.2f}  (goal < 1)")
    log(f"restore time ratio pg_restore_backup / pg_restore {restore_ratio:.2f}  (goal <= 1.10)")
    if "plain_restore_jobs2" in s:
        log(f"  the same without ANALYZE (plain pg_restore runs none) "
            f"{s['pg_restore_backup_no_analyze']['median'] / s['plain_restore']['median']:.2f}")
        log(f"  both with --jobs=2                                   "
            f"{s['pg_restore_backup_jobs2']['median'] / s['plain_restore_jobs2']['median']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
