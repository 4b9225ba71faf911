"""Run make targets a few at a time, in the order given, and show each one's output as a block when it ends.

    python scripts/run-in-parallel.py --jobs 2 sanity unit suite-lab ...

Give the longest targets first: a worker takes the next target as soon as its last one ends. Every target runs even
when one fails; the exit status is 1 when any failed, and a table of each target's time and outcome ends the output.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time


def run_target(target: str, make: str) -> tuple[int, float, str]:
    """One target, its output kept. Each gets a pytest base directory of its own: by default every pytest run
    deletes all but the three newest run directories under /tmp/pytest-of-USER, including a longer run's that is
    still in use next to it."""
    start = time.monotonic()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log, \
            tempfile.TemporaryDirectory(prefix="pytest-") as scratch:
        env = {**os.environ, "PYTEST_ADDOPTS": f"{os.environ.get('PYTEST_ADDOPTS', '')} --basetemp={scratch}/t".strip()}
        done = subprocess.run([make, "--no-print-directory", target], stdout=log, stderr=subprocess.STDOUT,
                              env=env, check=False)
        log.seek(0)
        return done.returncode, time.monotonic() - start, log.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be 1 or more")
    make = os.environ.get("MAKE", "make")
    queue = list(args.targets)
    results: dict[str, tuple[int, float]] = {}
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                target = queue.pop(0)
            status, seconds, output = run_target(target, make)
            with lock:
                results[target] = (status, seconds)
                verdict = "passed" if status == 0 else f"FAILED (exit {status})"
                print(f"== {target}: {verdict} in {seconds:.0f} s", flush=True)
                print(output.rstrip(), flush=True)

    start = time.monotonic()
    workers = [threading.Thread(target=worker) for dummy in range(min(args.jobs, len(queue)))]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    print(f"\n{'target':<40} {'seconds':>8}  outcome")
    for target in args.targets:
        status, seconds = results[target]
        print(f"{target:<40} {seconds:8.0f}  {'passed' if status == 0 else 'FAILED'}")
    failed = [target for target in args.targets if results[target][0] != 0]
    print(f"{len(args.targets)} targets, {args.jobs} at a time, in {time.monotonic() - start:.0f} s: "
          + (f"FAILED: {' '.join(failed)}" if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
