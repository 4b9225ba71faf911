"""Benchmark of rollback.yml's time to traffic on the lab: from the start of ``ansible-playbook`` to the first
response of the previous release through the production frontend, under load.

Not a test: it prints figures. The first run deploys --new (so that the journal's last deploy replaced --old); each
later run puts traffic forward again on the new colour through HAProxy's runtime API (the state right after that
deploy: same journal, both colours running; the first rollback already reverted the deploy's migrations), unless
--redeploy asks for a full deploy each time. Each run starts a
load generator on ``/version`` through the production frontend, starts ``rollback.yml`` and reads, from the load
generator's samples, when the first request sent after the start was answered by --old. It also reports how long
the whole playbook ran and how many requests failed during the rollback. The lab must be up with both releases
staged (``make lab-up``; the e2e tests deploy staging).

Usage: .venv/bin/python bench/rollback_time.py [--runs 5] [--old 1.0.0] [--new 1.1.0] [--redeploy] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lab"))

from loadgen import LoadGenerator  # noqa: E402  pylint: disable=wrong-import-position


def lab_status() -> dict:
    done = subprocess.run([str(ROOT / "lab" / "labctl"), "status", "--json"], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def playbook(name: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.Popen([str(ROOT / ".venv" / "bin" / "ansible-playbook"), str(ROOT / "playbooks" / name),
                             *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, what: str) -> str:
    output = process.communicate(timeout=900)[0]
    if process.returncode != 0:
        raise SystemExit(f"{what} failed (rc {process.returncode}):\n{output[-3000:]}")
    return output


def flip_forward(status: dict, colour: str, key: str = "production") -> None:
    """Put the environment back on the colour the last deploy switched to: the runtime map and the map file."""
    with socket.socket(socket.AF_UNIX) as admin:
        admin.connect(status["haproxy_admin_socket"])
        admin.sendall(f"set map {status['haproxy_map_file']} {key} {colour}\n".encode())
        admin.recv(4096)
    path = Path(status["haproxy_map_file"])
    lines = [f"{key} {colour}" if line.split()[:1] == [key] else line for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


def last_deploy(status: dict, environment: str = "production") -> dict:
    path = Path(status["state_dir"]) / "hosts" / "lb1" / "var" / "lib" / "payments" / "journal" / environment
    return json.loads((path / "last-deploy.json").read_text())


def one_run(status: dict, old: str, new: str, redeploy: bool) -> dict:
    frontend = status["production_url"]
    record = last_deploy(status)
    if redeploy or (record["release_from"], record["release_to"]) != (old, new):
        finish(playbook("deploy.yml", "-e", f"release_version={new}"), f"deploy of {new}")
    else:
        flip_forward(status, record["colour_to"])
    gen = LoadGenerator(frontend + "/version", concurrency=4, duration=120, max_requests=100000, pause=0.002)
    with gen:
        time.sleep(1.0)  # steady traffic on the new release before the rollback starts
        started = time.time()
        rollback = playbook("rollback.yml")
        finish(rollback, "rollback")
        ended = time.time()
    samples = [s for s in gen.stop() if s.sent >= started]
    back = [s for s in samples if s.version == old]
    if not back:
        raise SystemExit(f"no request was answered by {old} during the rollback")
    first = min(back, key=lambda s: s.done)
    return {"to_traffic_s": round(first.done - started, 3), "playbook_s": round(ended - started, 3),
            "requests": len(samples), "failed": sum(1 for s in samples if not s.ok)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--old", default="1.0.0", help="the release the rollback goes back to")
    parser.add_argument("--new", default="1.1.0", help="the release deployed before each rollback")
    parser.add_argument("--redeploy", action="store_true", help="a full deploy of --new before every run")
    parser.add_argument("--reuse", action="store_true",
                        help="no deploy at all: the journal's last deploy already replaced --old with --new")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    status = lab_status()
    if not args.reuse:
        finish(playbook("deploy.yml", "-e", f"release_version={args.old}"), f"deploy of {args.old}")
    runs = []
    for number in range(1, args.runs + 1):
        run = one_run(status, args.old, args.new, args.redeploy or (number == 1 and not args.reuse))
        runs.append(run)
        print(f"run {number}: previous release serving after {run['to_traffic_s']:.2f} s; playbook "
              f"{run['playbook_s']:.1f} s; {run['failed']} of {run['requests']} requests failed", flush=True)
    to_traffic = [run["to_traffic_s"] for run in runs]
    summary = {"runs": runs, "to_traffic_median_s": round(statistics.median(to_traffic), 3),
               "to_traffic_max_s": max(to_traffic),
               "failed_requests": sum(run["failed"] for run in runs)}
    print(f"time to traffic over {len(runs)} runs: median {summary['to_traffic_median_s']:.2f} s, "
          f"max {summary['to_traffic_max_s']:.2f} s; failed requests {summary['failed_requests']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
