"""Benchmark of ways to restore a payments.deploy backup, against plain pg_restore of a plain pg_dump -Fc file.

Not a test: it prints figures and ratios. It starts a throwaway PostgreSQL 15 cluster on a free port with stock
durability (fsync, synchronous_commit and full_page_writes on, so that session settings can show their effect), keeps
its data in --data-dir so that the generated database is reused, generates a payments-like database of at least
--size-mb MB, backs it up once with payments.deploy.pg_backup and once with plain ``pg_dump -Fc`` (and ``-Fd``), then
restores each way into a new database, --repeat times, each paired with a plain pg_restore run next to it, and prints
each time and its ratio to the paired plain pg_restore:

  plain                 pg_restore -d NEW plain.dump                                    (the reference)
  plain+settings        the same with PGOPTIONS (maintenance_work_mem, synchronous_commit=off)
  pg_restore_backup     the module (its default): authenticated chunks streamed into pg_restore, ANALYZE, row counts
  ... analyze: false    the same without its ANALYZE (plain pg_restore runs none)
  ... verify_first      the module checking the whole backup into a temporary file first, then pg_restore from it
  recover file          recovery/payments_backup_recover.py into a file, then pg_restore from the file
  recover pipe          recovery script --output - | pg_restore (no decrypted file)
  recover pipe+settings the pipe with PGOPTIONS
  recover file -j2      recovered file, pg_restore --jobs=2 with PGOPTIONS (a file can be seeked, a pipe cannot)
  plain -Fd -j2         pg_restore --jobs=2 of a directory-format dump with PGOPTIONS

Usage: .venv/bin/python bench/restore_speed_bench.py [--size-mb 300] [--repeat 2] [--data-dir DIR] [--json FILE]
           [--variants 'pg_restore_backup,recover pipe']   (a subset, by label; plain always runs)
"""

from __future__ import annotations

import argparse
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

import backup_bench  # the generated payments database and the in-process module runner of the backup benchmark
from backup_bench import DB, MB, drop, ensure_database, run_module, settle
from pg_backup_servers import PG_BIN, PostgresCluster

ROOT = Path(__file__).resolve().parents[1]
RECOVER = ROOT / "recovery" / "payments_backup_recover.py"
RESTORE_SETTINGS = "-c maintenance_work_mem=512MB -c synchronous_commit=off"


def log(message: str) -> None:
    print(message, flush=True)


class RestoreBench:
    def __init__(self, cluster: PostgresCluster, work: Path) -> None:
        self.cluster = cluster
        self.work = work
        self.key = os.urandom(32).hex()
        self.env = {**os.environ, "PGPASSWORD": cluster.password, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres"}
        self.store = work / "backups"
        self.backup_id = ""

    @property
    def plain_file(self) -> Path:
        return self.work / "plain.dump"

    @property
    def plain_dir(self) -> Path:
        return self.work / "plain.dir"

    def prepare(self) -> dict[str, t.Any]:
        subprocess.run([str(PG_BIN / "pg_dump"), "-Fc", "-f", str(self.plain_file), "-d", DB], env=self.env, check=True)
        shutil.rmtree(self.plain_dir, ignore_errors=True)
        subprocess.run([str(PG_BIN / "pg_dump"), "-Fd", "-j2", "-f", str(self.plain_dir), "-d", DB], env=self.env, check=True)
        result = run_module(backup_bench.pg_backup, {**self.cluster.login(), "db": DB, "encryption_key": self.key, "dest_dir": str(self.store)})
        self.backup_id = result["backup_id"]
        check_only = self.recover_argv("-")[:-2]  # without --output: authenticate, decrypt, decompress, write nothing
        started = time.monotonic()
        subprocess.run(check_only, env={**os.environ, "ENCRYPTION_KEY": self.key}, check=True)
        log(f"recovery script alone (check only, no pg_restore): {time.monotonic() - started:.2f}s")
        return {"dump_bytes": result["sizes"]["dump_bytes"], "stored_bytes": result["sizes"]["stored_bytes"],
                "plain_bytes": self.plain_file.stat().st_size}

    def fresh(self, name: str) -> str:
        drop(self.cluster, name)
        self.cluster.execute(f'CREATE DATABASE "{name}"')
        settle(self.cluster)
        return name

    def recover_argv(self, output: str) -> list[str]:
        return [sys.executable, str(RECOVER), "--object", str(self.store / f"{self.backup_id}.dump.zst.enc"),
                "--manifest", str(self.store / f"{self.backup_id}.manifest.json"), "--output", output]

    def pg_restore(self, name: str, source: str | None, *, settings: bool, jobs: int = 1, stdin: t.Any = None) -> None:
        env = {**self.env, **({"PGOPTIONS": RESTORE_SETTINGS} if settings else {})}
        argv = [str(PG_BIN / "pg_restore"), "--exit-on-error", f"--jobs={jobs}", "-d", name, *([source] if source else [])]
        subprocess.run(argv, env=env, stdin=stdin, check=True)

    def plain(self, name: str, settings: bool = False) -> None:
        self.pg_restore(name, str(self.plain_file), settings=settings)

    def plain_directory(self, name: str) -> None:
        self.pg_restore(name, str(self.plain_dir), settings=True, jobs=2)

    def module(self, name: str, **options: t.Any) -> None:
        drop(self.cluster, name)  # the module creates it
        result = run_module(backup_bench.pg_restore_backup, {**self.cluster.login(), "backup_id": self.backup_id, "src_dir": str(self.store),
                                                             "target_db": name, "encryption_key": self.key, "temp_dir": str(self.work),
                                                             **options})
        stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in result["timings"].items())
        log(f"    module stages (s): {stages}")

    def recover_file(self, name: str, jobs: int = 1) -> None:
        archive = self.work / "recovered.dump"
        archive.unlink(missing_ok=True)
        subprocess.run(self.recover_argv(str(archive)), env={**os.environ, "ENCRYPTION_KEY": self.key}, check=True)
        try:
            self.pg_restore(name, str(archive), settings=jobs > 1, jobs=jobs)
        finally:
            archive.unlink()

    def recover_pipe(self, name: str, settings: bool = False) -> None:
        with subprocess.Popen(self.recover_argv("-"), env={**os.environ, "ENCRYPTION_KEY": self.key}, stdout=subprocess.PIPE) as source:
            try:
                self.pg_restore(name, None, settings=settings, stdin=source.stdout)
            finally:
                source.stdout.close()
            if source.wait() != 0:
                raise RuntimeError("the recovery script failed")


def variants(bench: RestoreBench) -> dict[str, t.Callable[[str], None]]:
    return {
        "plain": bench.plain,
        "plain+settings": lambda name: bench.plain(name, settings=True),
        "pg_restore_backup": bench.module,
        "pg_restore_backup analyze: false": lambda name: bench.module(name, analyze=False),
        "pg_restore_backup verify_first": lambda name: bench.module(name, verify_first=True),
        "recover file": bench.recover_file,
        "recover pipe": bench.recover_pipe,
        "recover pipe+settings": lambda name: bench.recover_pipe(name, settings=True),
        "recover file -j2+settings": lambda name: bench.recover_file(name, jobs=2),
        "plain -Fd -j2+settings": bench.plain_directory,
    }


def measure(bench: RestoreBench, repeat: int, only: list[str] | None = None) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each variant is paired with a plain pg_restore run right before or after it (alternating), and its figure is the
    ratio within the pair: on a shared machine the load drifts over minutes, and a ratio of neighbours follows it."""
    steps = variants(bench)
    if only:
        unknown = sorted(set(only) - set(steps))
        if unknown:
            raise SystemExit(f"unknown variants {unknown}; known: {sorted(steps)}")
        steps = {label: step for label, step in steps.items() if label == "plain" or label in only}
    runs: dict[str, list[float]] = {label: [] for label in steps}
    ratios: dict[str, list[float]] = {label: [] for label in steps if label != "plain"}

    def timed_restore(label: str) -> float:
        name = bench.fresh("bench_restore_target")
        started = time.monotonic()
        steps[label](name)
        seconds = time.monotonic() - started
        drop(bench.cluster, name)
        runs[label].append(seconds)
        log(f"  {label:<34} {seconds:7.2f}s   (load average {os.getloadavg()[0]:.2f})")
        return seconds

    for round_number in range(repeat):
        for position, label in enumerate(ratios):
            if (round_number + position) % 2:
                variant, reference = timed_restore(label), timed_restore("plain")
            else:
                reference, variant = timed_restore("plain"), timed_restore(label)
            ratios[label].append(variant / reference)
    return runs, ratios


def report(runs: dict[str, list[float]], ratios: dict[str, list[float]], sizes: dict[str, t.Any], database_bytes: int, load: str) -> None:
    log("")
    log(f"database {database_bytes / MB:.0f} MB, custom-format dump {sizes['dump_bytes'] / MB:.0f} MB uncompressed, "
        f"pg_dump -Fc file {sizes['plain_bytes'] / MB:.0f} MB, backup object {sizes['stored_bytes'] / MB:.0f} MB; "
        f"{os.cpu_count()} CPUs; {len(runs['plain'])} plain pg_restore runs, each variant paired with one")
    log(f"{'restore':<34} {'median s':>9} {'min s':>7} {'max s':>7} {'ratio to the paired plain pg_restore (median, each)':>10}")
    for label, seconds in runs.items():
        pair = ratios.get(label, [1.0])
        each = ", ".join(f"{ratio:.2f}" for ratio in pair)
        log(f"{label:<34} {statistics.median(seconds):9.2f} {min(seconds):7.2f} {max(seconds):7.2f}   {statistics.median(pair):.2f} ({each})")
    log(f"uptime at the end: {load}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=300, help="minimum database size in MB (default 300)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of each variant, each paired with a plain pg_restore (default 2)")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "payments-restore-speed-bench",
                        help="cluster directory, kept for the next run (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--variants", help="comma-separated labels of the variants to run (default: all)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="restore-speed-bench-"))
    cluster = PostgresCluster(args.data_dir, settings={"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"})
    if (args.data_dir / "pw").exists():
        cluster.password = (args.data_dir / "pw").read_text().strip()
    try:
        cluster.start()
        (args.data_dir / "pw").write_text(cluster.password)  # the next run reuses the cluster and its password
        os.chmod(args.data_dir / "pw", 0o600)
        ensure_database(cluster, args.size_mb / 1000)
        log(f"uptime at the start: {subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()}")
        bench = RestoreBench(cluster, work)
        sizes = bench.prepare()
        runs, ratios = measure(bench, args.repeat, [v.strip() for v in args.variants.split(",")] if args.variants else None)
        database_bytes = backup_bench.database_size(cluster)
    finally:
        cluster.stop(remove=False)
        shutil.rmtree(work, ignore_errors=True)
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    report(runs, ratios, sizes, database_bytes, load)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "ratios": ratios, "sizes": sizes, "database_bytes": database_bytes, "uptime": load}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
