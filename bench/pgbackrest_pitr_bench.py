"""Benchmark of a rollback with a point-in-time restore (payments.deploy.pgbackrest_restore) on a database of about
1 GB: its wall time, its parts (checks, restore, recovery, swap) and the downtime it implies (live stop to the
restored cluster accepting connections), against the logical path's restore of the same database (``pg_restore`` of
a ``pg_dump -Fc`` into a new database, no stop).

Not a test: it prints figures. It fills a throw-away PostgreSQL 15 cluster as ``bench/pgbackrest_bench.py`` does, sets
up the encrypted stanza and a first full backup, takes a deploy's backup and restore point, writes after it (the
deploy's changes), then restores to the restore point and swaps the restored cluster in.

Usage: .venv/bin/python bench/pgbackrest_pitr_bench.py [--size-gb 1] [--no-logical] [--work-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration" / "pgbackrest"))
sys.path.insert(0, str(ROOT / "bench"))

from pgbackrest_bench import filled_stanza, log, small_change, timed  # noqa: E402  pylint: disable=C0413
from pgbackrest_world import PG_BIN, Cluster, as_postgres, collections_dir_for_checkout, free_port, new_base, run_module  # noqa: E402  pylint: disable=C0413


def logical_restore(cluster: Cluster, base: Path) -> dict[str, float]:
    """The logical path's cost on the same database: dump it, restore the dump into a new database (what pg_restore_backup does
    after its checks), drop the copy."""
    dump = base / "dump.pgc"
    connect = ["-h", str(cluster.base), "-p", str(cluster.port)]
    dump_argv = [str(PG_BIN / "pg_dump"), "-Fc", *connect, "-d", "postgres", "-f", str(dump)]
    dump_seconds, dumped = timed(lambda: subprocess.run(dump_argv, check=True, capture_output=True, cwd=base, **as_postgres()))
    cluster.sql("CREATE DATABASE restored_copy")
    restore_argv = [str(PG_BIN / "pg_restore"), "-j", "2", *connect, "-d", "restored_copy", str(dump)]
    restore_seconds, restored = timed(lambda: subprocess.run(restore_argv, check=True, capture_output=True, cwd=base, **as_postgres()))
    assert dumped.returncode == 0 and restored.returncode == 0
    cluster.sql("DROP DATABASE restored_copy")
    size = dump.stat().st_size
    dump.unlink()
    return {"dump": dump_seconds, "restore": restore_seconds, "dump_bytes": float(size)}


def measure(size_gb: float, logical: bool, work: Path, collections: Path) -> dict[str, t.Any]:
    base = new_base(str(work / f"pgbr-pitr-bench-{size_gb:g}g-"))
    cluster = Cluster(base)
    try:
        repo, db_bytes = filled_stanza(cluster, size_gb, collections)
        small_change(cluster, 1)
        deploy = run_module(collections, "pgbackrest_backup", repo.module_args(restore_point="deploy-pitr-bench"))
        assert deploy.get("failed") is not True, deploy.get("msg")
        point = deploy["restore_point"]
        # the deploy's own writes, which the rollback takes back
        for number in range(2, 12):
            small_change(cluster, number)
        cluster.sql("SELECT pg_switch_wal()")
        logical_figures = logical_restore(cluster, base) if logical else None
        args = repo.module_args(pg_data=str(cluster.data), restore_point=point["name"], restore_point_lsn=point["lsn"],
                                wal_segment=point["wal_segment"], backup_set=deploy["backup"]["label"], scratch_port=free_port(),
                                backup_after="full", recovery_timeout=600)
        wall, result = timed(lambda: run_module(collections, "pgbackrest_restore", args))
        assert result.get("failed") is not True, result.get("msg")
        recent = int(cluster.sql("SELECT count(*) FROM payments_recent")[0][0])
        assert recent == 101000, f"the restored cluster holds {recent} recent payments, not the 101000 of the restore point"
        return {"db_bytes": db_bytes, "wall_seconds": wall, "timings": result["timings"], "downtime_seconds": result["downtime_seconds"],
                "timeline": result["timeline"], "logical": logical_figures}
    finally:
        for data in base.glob("data*"):
            if (data / "postmaster.pid").exists():
                Cluster(base, name=data.name, port=cluster.port).stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--no-logical", action="store_true", help="skip the logical path's dump and restore")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = measure(args.size_gb, not args.no_logical, args.work_dir, collections_dir_for_checkout())
    timings = figures["timings"]
    log(f"\npoint-in-time rollback of {figures['db_bytes'] / 1e9:.2f} GB (module wall time {figures['wall_seconds']:.1f} s)")
    for name in ("checks", "restore", "recovery", "swap", "check", "backup", "total"):
        log(f"  {name:10s} {timings.get(name, 0):7.2f} s")
    log(f"  downtime   {figures['downtime_seconds']:7.2f} s (live stop to the restored cluster accepting connections)")
    before_service = timings["total"] - timings.get("check", 0) - timings.get("backup", 0)
    log(f"  rollback until the service is back: {before_service:.1f} s; then check + full backup {timings.get('check', 0) + timings.get('backup', 0):.1f} s")
    if figures["logical"]:
        logical = figures["logical"]
        log(f"logical path on the same database: pg_restore -j 2 of the dump {logical['restore']:.1f} s "
            f"(dump {logical['dump']:.1f} s, {logical['dump_bytes'] / 1e6:.0f} MB); no downtime, one database")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
