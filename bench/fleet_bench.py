"""Benchmark of deploy and rollback wall time against the size of the production fleet, on the lab.

Not a test: it prints figures. For each size N (--sizes, default 2,6,12) it starts a lab of its own with N production
app hosts (``labctl up --app-hosts N --port-offset 600`` in --lab-dir, which nothing else uses), deploys 1.0.0
(nothing live yet: the schema is created, the first colour started), then times a deploy of 1.1.0 (install on every
host, backup, migrations, the idle colour started and health-gated on every host, its smoke test on every host, the
switch and its verification through the frontend, the smoke test through the frontend; the lab's default: no bake)
and a rollback to 1.0.0 (the flip back, its verification, the migration revert), then stops the lab and deletes its
state. Production's staging gate is overridden (``staging_gate_override``): staging is one host whatever N is.

Each run's wall time is that of ``ansible-playbook``; the phases are the plays, as the collection's phase_timings
callback reports them, and the tasks that took longest come from ansible.posix.profile_tasks. Prints the figures of
each run, a table per phase and size, and the ratios of each size's time to the smallest size's.

It also measures the CPU work, because every lab host shares this machine's cores: the CPU seconds of the
``ansible-playbook`` process tree (the controller, its workers and every module they run, all local children here) and
the machine's busy CPU seconds over the run (/proc/stat: the playbook, the colours it starts, every lab server and
anything else running). The busy seconds divided by the cores is the least wall time the run's work needed on this
machine: when that floor at the largest size exceeds 1.5 times the smallest size's wall time, no Ansible setting can
bring the ratio under 1.5 here; on real hosts each host's share runs on its own cores.

Usage: .venv/bin/python bench/fleet_bench.py [--sizes 2,6,12] [--rounds 1] [--offset 600] [--lab-dir DIR]
       [--ansible-env NAME=VALUE ...] [--json FILE]
--ansible-env sets an Ansible setting for the playbooks (e.g. ANSIBLE_FORKS=5 to measure without a tuning).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABCTL = ROOT / "lab" / "labctl"
OVERRIDE = json.dumps({"staging_gate_override": "fleet benchmark: staging is one host whatever the fleet's size"})
TASK_LINE = re.compile(r"^(?P<name>.+?) -{2,} *(?P<seconds>\d+\.\d+)s$")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds every core of this machine has spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]]
    user, nice, system, dummy_idle, dummy_iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """User and system CPU seconds of this process's waited-for children and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def labctl(lab_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PAYMENTS_LAB_DIR": str(lab_dir)}
    return subprocess.run([str(LABCTL), *args], env=env, capture_output=True, text=True, check=False, timeout=900)


def lab_up(lab_dir: Path, offset: int, hosts: int) -> tuple[dict, float]:
    """A fresh lab with HOSTS production app hosts; its status and how long `up` took."""
    labctl(lab_dir, "down", "--purge")
    started = time.monotonic()
    done = labctl(lab_dir, "up", "--port-offset", str(offset), "--app-hosts", str(hosts))
    if done.returncode != 0:
        raise SystemExit(f"labctl up --app-hosts {hosts} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    took = time.monotonic() - started
    status = json.loads(labctl(lab_dir, "status", "--json").stdout)
    return status, took


def playbook(status: dict, name: str, extra_env: dict[str, str], *args: str) -> dict:
    """Run a playbook on the lab; its wall time, phases (phase_timings) and task times (profile_tasks)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as timings:
        env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               "PAYMENTS_LAB_DIR": status["state_dir"], "ANSIBLE_INVENTORY": status["inventory"],
               "ANSIBLE_CALLBACKS_ENABLED": "payments.deploy.phase_timings,ansible.posix.profile_tasks",
               "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "1000", "PAYMENTS_PHASE_TIMINGS_FILE": timings.name,
               "COLUMNS": "200", **extra_env}
        load_before = os.getloadavg()[0]
        busy_before, children_before = machine_busy_seconds(), children_cpu_seconds()
        started = time.monotonic()
        done = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), str(ROOT / "playbooks" / name), *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=1800)
        wall = time.monotonic() - started
        busy, ansible_cpu = machine_busy_seconds() - busy_before, children_cpu_seconds() - children_before
        if done.returncode != 0:
            run = done.stdout.split("TASKS RECAP", 1)[0]  # the task listing after it says nothing of the failure
            failures = "\n".join(line for line in run.splitlines() if line.startswith(("fatal:", "failed:", "  msg:", "PLAY [")))
            raise SystemExit(f"{name} {' '.join(args)} failed (rc {done.returncode}):\n{failures[-6000:]}\n"
                             f"{run[-4000:]}{done.stderr[-2000:]}")
        phases = json.loads(Path(timings.name).read_text(encoding="utf-8"))["phases"]
    recap = done.stdout.split("TASKS RECAP", 1)[-1]
    tasks: dict[str, float] = {}
    for line in recap.splitlines():
        match = TASK_LINE.match(line.strip())
        if match:
            tasks[match["name"]] = tasks.get(match["name"], 0.0) + float(match["seconds"])
    return {"wall_s": round(wall, 2), "phases": {p["phase"]: p["seconds"] for p in phases}, "tasks": tasks,
            "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "ansible_cpu_s": round(ansible_cpu, 1), "machine_busy_cpu_s": round(busy, 1),
            "cpu_floor_s": round(busy / (os.cpu_count() or 1), 1)}


def one_size(args: argparse.Namespace, hosts: int, extra_env: dict[str, str]) -> dict:
    status, up_s = lab_up(args.lab_dir, args.offset, hosts)
    try:
        production = [host for host, app in status["app_hosts"].items() if app["group"] == "production_app"]
        assert len(production) == hosts, f"the lab runs {production}, not {hosts} production app hosts"
        first = playbook(status, "deploy.yml", extra_env, "-e", "release_version=1.0.0", "-e", OVERRIDE)
        deploy = playbook(status, "deploy.yml", extra_env, "-e", "release_version=1.1.0", "-e", OVERRIDE)
        rollback = playbook(status, "rollback.yml", extra_env)
    finally:
        if not args.keep:
            labctl(args.lab_dir, "down", "--purge")
    return {"hosts": hosts, "lab_up_s": round(up_s, 1), "first_deploy": first, "deploy": deploy, "rollback": rollback}


def median_of(runs: list[dict], kind: str, key: str = "wall_s") -> float:
    return round(statistics.median(run[kind][key] for run in runs), 2)


def phase_table(results: dict[int, list[dict]], kind: str) -> None:
    sizes = sorted(results)
    phases: list[str] = []
    for size in sizes:
        for run in results[size]:
            phases += [phase for phase in run[kind]["phases"] if phase not in phases]
    smallest = sizes[0]
    print(f"\n{kind}: seconds per phase (median of rounds), and the ratio of the largest size to {smallest}")
    print(f"{'phase':<60}" + "".join(f"{f'N={size}':>9}" for size in sizes) + f"{'ratio':>8}")
    for phase in phases:
        row = [statistics.median(run[kind]["phases"].get(phase, 0.0) for run in results[size]) for size in sizes]
        ratio = f"{row[-1] / row[0]:.2f}" if row[0] >= 0.05 else "-"
        print(f"{phase[:59]:<60}" + "".join(f"{value:>9.2f}" for value in row) + f"{ratio:>8}")
    walls = [median_of(results[size], kind) for size in sizes]
    print(f"{'wall time of ansible-playbook':<60}" + "".join(f"{value:>9.2f}" for value in walls)
          + f"{walls[-1] / walls[0]:>8.2f}")


def task_growth(results: dict[int, list[dict]], kind: str, top: int = 12) -> None:
    """The tasks whose time grew most from the smallest size to the largest."""
    sizes = sorted(results)
    small, large = results[sizes[0]][0][kind]["tasks"], results[sizes[-1]][0][kind]["tasks"]
    growth = sorted(((large.get(name, 0.0) - small.get(name, 0.0), name) for name in {*small, *large}), reverse=True)
    print(f"\n{kind}: the tasks that grew most from N={sizes[0]} to N={sizes[-1]} (seconds, round 1)")
    for delta, name in growth[:top]:
        print(f"  {name[:90]:<90} {small.get(name, 0.0):>7.2f} -> {large.get(name, 0.0):>7.2f}  (+{delta:.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,6,12", help="production app hosts of each lab, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="a fresh lab per size and round (sizes interleaved)")
    parser.add_argument("--offset", type=int, default=600, help="the labs' port offset (labctl up --port-offset)")
    parser.add_argument("--lab-dir", type=Path, default=ROOT / ".lab-fleet-bench", help="the labs' state directory")
    parser.add_argument("--ansible-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the playbooks, e.g. ANSIBLE_FORKS=5")
    parser.add_argument("--keep", action="store_true", help="leave the last lab running (labctl down --purge it)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    args.lab_dir = args.lab_dir.resolve()
    sizes = [int(size) for size in args.sizes.split(",")]
    extra_env = dict(item.split("=", 1) for item in args.ansible_env)
    results: dict[int, list[dict]] = {size: [] for size in sizes}
    print(f"machine: {os.cpu_count()} CPUs; labs in {args.lab_dir} on port offset {args.offset}; "
          f"settings: {extra_env or 'ansible.cfg and the lab inventory'}", flush=True)
    for number in range(1, args.rounds + 1):
        for size in sizes if number % 2 else reversed(sizes):
            run = one_size(args, size, extra_env)
            results[size].append(run)
            print(f"round {number}, N={size}: lab up {run['lab_up_s']:.0f} s; first deploy {run['first_deploy']['wall_s']:.1f} s; "
                  f"deploy {run['deploy']['wall_s']:.1f} s (load {run['deploy']['load'][0]}-{run['deploy']['load'][1]}); "
                  f"rollback {run['rollback']['wall_s']:.1f} s (load {run['rollback']['load'][0]}-{run['rollback']['load'][1]})",
                  flush=True)
    for kind in ("deploy", "rollback"):
        phase_table(results, kind)
        task_growth(results, kind)
    smallest = sizes[0]
    print(f"\nratios of wall time to N={smallest}:")
    summary = {}
    for kind in ("first_deploy", "deploy", "rollback"):
        base = median_of(results[smallest], kind)
        ratios = {size: round(median_of(results[size], kind) / base, 2) for size in sizes}
        summary[kind] = {"median_wall_s": {size: median_of(results[size], kind) for size in sizes}, "ratio": ratios}
        print(f"  {kind:<13}" + "  ".join(f"N={size}: {median_of(results[size], kind):.1f} s ({ratios[size]:.2f}x)"
                                          for size in sizes))
    print(f"\nCPU work (median of rounds; {os.cpu_count()} cores): ansible-playbook's process tree, the machine's busy "
          "CPU seconds, and the least wall time that work needs here (busy / cores)")
    for kind in ("deploy", "rollback"):
        print(f"  {kind:<13}" + "  ".join(
            f"N={size}: ansible {median_of(results[size], kind, 'ansible_cpu_s'):.0f} s, busy "
            f"{median_of(results[size], kind, 'machine_busy_cpu_s'):.0f} s, floor {median_of(results[size], kind, 'cpu_floor_s'):.0f} s"
            for size in sizes))
        floor, base = median_of(results[sizes[-1]], kind, "cpu_floor_s"), median_of(results[smallest], kind)
        print(f"  {'':<13}N={sizes[-1]}'s CPU floor is {floor / base:.2f}x N={smallest}'s wall time"
              + (": the work alone exceeds 1.5x on this machine" if floor / base > 1.5 else ""))
        summary[kind]["cpu_floor_ratio"] = round(floor / base, 2)
    if args.json:
        args.json.write_text(json.dumps({"settings": extra_env, "runs": results, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
