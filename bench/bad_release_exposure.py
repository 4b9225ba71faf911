"""Benchmark of the exposure to a bad release on the lab: how long customers are served by the 1.1.1 regression
(healthy by every check, fails one payment of 10.00 or more in five) before the deploy's bake catches it and flips
traffic back by itself, and how many customer payments failed in that time.

Not a test: it prints figures. Each run puts --good live (a deploy without bake when it is not), starts customer
traffic through the production frontend (payments and refunds of mixed amounts, --rate a second, a live-mode card),
deploys --bad with the bake on and the staging gate overridden, and reads the automatic rollback's journal record:
``forward_switched_at`` (the flip to --bad) and ``switched_at`` (traffic back). The customers' requests sent in that
window are counted: payments, failed payments, failed payments answered by --bad. The deploy must fail and production
must serve --good again, or the run stops with the deploy's output. The lab must be up (``make lab-up``).

Usage: .venv/bin/python bench/bad_release_exposure.py [--runs 1] [--good 1.1.0] [--bad 1.1.1] [--rate 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lab"))
sys.path.insert(0, str(ROOT / "bench"))

from customer_traffic import CustomerTraffic, load_api_key  # noqa: E402  pylint: disable=wrong-import-position
from rollback_time import lab_status, playbook  # noqa: E402  pylint: disable=wrong-import-position


def serving(url: str, probes: int = 8) -> set[str]:
    versions = set()
    for _probe in range(probes):
        with urllib.request.urlopen(url + "/version", timeout=5) as answer:
            versions.add(json.load(answer)["version"])
    return versions


def journal_history(status: dict, environment: str = "production") -> list[dict]:
    path = Path(status["state_dir"]) / "hosts" / "lb1" / "var" / "lib" / "payments" / "journal" / environment
    return [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines() if line.strip()]


def run_playbook(*args: str) -> tuple[int, str]:
    process = playbook(*args)
    output = process.communicate(timeout=1200)[0]
    return process.returncode, output


def one_run(status: dict, good: str, bad: str, rate: float) -> dict:
    frontend = status["production_url"]
    if serving(frontend) != {good}:
        rc, output = run_playbook("deploy.yml", "-e", f"release_version={good}")
        if rc != 0:
            raise SystemExit(f"deploy of {good} failed:\n{output[-3000:]}")
    traffic = CustomerTraffic(frontend, load_api_key(Path(status["secrets_file"])), rate=rate, duration=600,
                              max_payments=5000, refund_fraction=0.1, seed=int(time.time()),
                              payment_method="pm_lab_live_visa").start()
    try:
        time.sleep(5)  # customers on the good release before the deploy starts
        rc, output = run_playbook("deploy.yml", "-e", f"release_version={bad}", "-e", "deploy_bake=true", "-e",
                                  json.dumps({"staging_gate_override": "exposure benchmark: the bake must catch it"}))
        time.sleep(3)  # customers on the good release again
    finally:
        summary = traffic.stop()
    record = journal_history(status)[-1]
    rolled_back = (record.get("kind"), record.get("state"), record.get("release_from")) == ("rollback", "automatic", bad)
    if rc == 0 or not rolled_back:
        raise SystemExit(f"the deploy of {bad} was not rolled back by itself (rc {rc}):\n{output[-3000:]}")
    if serving(frontend) != {good}:
        raise SystemExit(f"production does not serve {good} after the automatic rollback")
    forward, back = float(record["forward_switched_at"]), float(record["switched_at"])
    window = [r for r in summary["records"] if r["kind"] == "payment" and forward <= r["sent"] < back]
    failed = [r for r in window if not (200 <= r["status"] < 300 and r["result"] == "succeeded")]
    metrics = {m["name"]: m for m in (record.get("bake") or {}).get("metrics", [])}
    return {"exposure_s": round(back - forward, 2), "payments_in_window": len(window), "failed_in_window": len(failed),
            "failed_by_bad_release": sum(1 for r in failed if r["version"] == bad),
            "payments_total": summary["payments"]["attempted"], "failed_total": summary["payments"]["failed"],
            "bake_phase": (record.get("bake") or {}).get("phase"),
            "payment_success_seen": ((metrics.get("payment_success") or {}).get("measurements") or [{}])[-1].get("value")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--good", default="1.1.0", help="the release that serves before and after")
    parser.add_argument("--bad", default="1.1.1", help="the regression deployed with the bake on")
    parser.add_argument("--rate", type=float, default=3.0, help="customer payments a second")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    status = lab_status()
    runs = []
    for number in range(1, args.runs + 1):
        run = one_run(status, args.good, args.bad, args.rate)
        runs.append(run)
        print(f"run {number}: {args.bad} served customers for {run['exposure_s']:.1f} s (switch to traffic back); "
              f"{run['failed_in_window']} of {run['payments_in_window']} customer payments failed in that window "
              f"({run['failed_by_bad_release']} answered by {args.bad}); bake {run['bake_phase']}, payment success "
              f"seen {run['payment_success_seen']}; whole run {run['failed_total']} of {run['payments_total']} "
              "payments failed", flush=True)
    exposure = [run["exposure_s"] for run in runs]
    summary = {"runs": runs, "exposure_median_s": statistics.median(exposure), "exposure_max_s": max(exposure),
               "failed_in_windows": sum(run["failed_in_window"] for run in runs)}
    print(f"exposure over {len(runs)} runs: median {summary['exposure_median_s']:.1f} s, max "
          f"{summary['exposure_max_s']:.1f} s; {summary['failed_in_windows']} customer payments failed in the windows")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
