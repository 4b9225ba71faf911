"""Benchmark of the per-deploy backup phase: pgBackRest (incremental backup + named restore point + WAL archived check,
payments.deploy.pgbackrest_backup) against a logical dump (plain ``pg_dump -Fc``), on databases of two sizes.

Not a test: it prints figures and ratios. For each size it starts a throw-away PostgreSQL 15 cluster, fills it with
WAL-logged tables (payment history split into tables of ~256 MB, as time-partitioned payment tables are, plus a
table of recent payments), sets up WAL archiving, the encrypted stanza and a first full backup with
payments.deploy.pgbackrest_stanza, then --deploys times: a small change (inserts and updates of recent payments), then
the pgBackRest phase and the logical dump, each timed. The goal: pgBackRest's cost grows little with the size
(ratio <= 1.2), the dump's grows with it (ratio ~ 4).

Usage: .venv/bin/python bench/pgbackrest_bench.py [--sizes-gb 1 4] [--deploys 2] [--work-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
import typing as t
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration" / "pgbackrest"))

from pgbackrest_world import PG_BIN, Cluster, Repo, as_postgres, collections_dir_for_checkout, new_base, run_module  # noqa: E402  pylint: disable=C0413

PARTITION_MB = 256
ROW_BYTES = 320  # a row of history (with its index entry) takes about this much on disk


def log(message: str) -> None:
    print(message, flush=True)


def fill(cluster: Cluster, size_gb: float) -> int:
    """History tables of PARTITION_MB each up to size_gb, plus recent payments; returns the database size in bytes."""
    tables = max(1, round(size_gb * 1000 / PARTITION_MB))
    rows = PARTITION_MB * 1_000_000 // ROW_BYTES
    cluster.sql("CREATE TABLE payments_recent (id bigint PRIMARY KEY, amount bigint NOT NULL, status text NOT NULL, note text)")
    cluster.sql("INSERT INTO payments_recent SELECT g, g, 'succeeded', repeat('r', 100) FROM generate_series(1, 100000) g")
    for number in range(tables):
        cluster.sql(f"CREATE TABLE payments_history_{number} (id bigint PRIMARY KEY, amount bigint NOT NULL, status text NOT NULL, "
                    f"created_at timestamptz NOT NULL, note text NOT NULL)")
        cluster.sql(f"INSERT INTO payments_history_{number} SELECT g, g % 100000, 'succeeded', now() - g * interval '1 s', "
                    f"md5(g::text) || repeat('x', 150) FROM generate_series(1, {rows}) g")
    # freeze once, as an old table is: later reads then set no hint bits, which would rewrite pages of every table
    cluster.sql("VACUUM (FREEZE, ANALYZE)")
    cluster.sql("CHECKPOINT")
    return int(cluster.sql("SELECT pg_database_size('postgres')")[0][0])


def small_change(cluster: Cluster, deploy: int) -> None:
    start = 1_000_000 + deploy * 1000
    cluster.sql(f"INSERT INTO payments_recent SELECT g, g, 'succeeded', 'deploy {deploy}' FROM generate_series({start}, {start + 999}) g")
    cluster.sql(f"UPDATE payments_recent SET status = 'refunded' WHERE id % 1000 = {deploy}")


def timed(action: t.Callable[[], t.Any]) -> tuple[float, t.Any]:
    started = time.monotonic()
    result = action()
    return time.monotonic() - started, result


def logical_dump(cluster: Cluster, target: Path) -> int:
    subprocess.run([str(PG_BIN / "pg_dump"), "-Fc", "-h", str(cluster.base), "-p", str(cluster.port), "-d", "postgres", "-f", str(target)],
                   check=True, capture_output=True, cwd=cluster.base, **as_postgres())
    size = target.stat().st_size
    target.unlink()
    return size


def filled_stanza(cluster: Cluster, size_gb: float, collections: Path) -> tuple[Repo, float]:
    """Start CLUSTER, fill it with about SIZE_GB of payments, set up archiving, the stanza and its first full backup
    (process-max=2); returns the repository and the database's size in bytes."""
    cluster.init({"max_wal_size": "'8GB'", "checkpoint_timeout": "'30min'", "shared_buffers": "'256MB'"})
    cluster.start()
    fill_seconds, db_bytes = timed(lambda: fill(cluster, size_gb))
    log(f"  {size_gb:g} GB: filled {db_bytes / 1e9:.2f} GB in {fill_seconds:.0f} s")
    repo = Repo(cluster.base, cluster)
    repo.write()
    with repo.config.open("a", encoding="utf-8") as handle:
        handle.write("process-max=2\n")
    setup_seconds, setup = timed(lambda: run_module(collections, "pgbackrest_stanza", repo.module_args(restart_command=cluster.restart_command())))
    assert setup.get("failed") is not True, setup.get("msg")
    log(f"  {size_gb:g} GB: archiving, stanza and first full backup in {setup_seconds:.0f} s")
    return repo, db_bytes


def measure(size_gb: float, deploys: int, work: Path, collections: Path) -> dict[str, t.Any]:
    base = new_base(str(work / f"pgbr-bench-{size_gb:g}g-"))
    cluster = Cluster(base)
    try:
        repo, db_bytes = filled_stanza(cluster, size_gb, collections)
        runs: dict[str, list[float]] = {"pgbackrest": [], "logical": []}
        details = []
        for deploy in range(1, deploys + 1):
            small_change(cluster, deploy)
            seconds, result = timed(lambda: run_module(collections, "pgbackrest_backup",
                                                       repo.module_args(restore_point=f"deploy-bench-{deploy}")))  # pylint: disable=cell-var-from-loop
            assert result.get("failed") is not True, result.get("msg")
            runs["pgbackrest"].append(seconds)
            dump_seconds, dump_bytes = timed(lambda: logical_dump(cluster, base / "dump.pgc"))
            runs["logical"].append(dump_seconds)
            details.append({"pgbackrest": result["timings"], "backup": result["backup"], "dump_bytes": dump_bytes})
            log(f"  {size_gb:g} GB deploy {deploy}: pgbackrest {seconds:.2f} s ({result['backup']['type']} "
                f"{result['backup'].get('repo_delta', 0) / 1e6:.1f} MB stored), pg_dump -Fc {dump_seconds:.2f} s ({dump_bytes / 1e6:.0f} MB)")
        return {"size_gb": size_gb, "db_bytes": db_bytes, "median": {k: statistics.median(v) for k, v in runs.items()}, "runs": runs,
                "details": details}
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gb", type=float, nargs=2, default=[1.0, 4.0])
    parser.add_argument("--deploys", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    collections = collections_dir_for_checkout()
    figures = [measure(size, args.deploys, args.work_dir, collections) for size in args.sizes_gb]
    small, large = figures
    log(f"\nper-deploy backup phase (median of {args.deploys} deploys, {small['db_bytes'] / 1e9:.2f} GB vs {large['db_bytes'] / 1e9:.2f} GB)")
    for name, label in (("pgbackrest", "pgBackRest incr + restore point + WAL check"), ("logical", "pg_dump -Fc")):
        ratio = large["median"][name] / small["median"][name]
        log(f"  {label:45s} {small['median'][name]:7.2f} s  {large['median'][name]:7.2f} s  ratio {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
