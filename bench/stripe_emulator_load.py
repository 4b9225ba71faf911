"""Benchmark of the Stripe emulator under customer-like traffic as its state grows.

Not a test: it prints figures. It starts its own emulator (as lab/labctl does: a keys file and a --state-file, on a
free port), a webhook receiver answering 200 with two endpoints subscribed to every event (the lab has a production
and a staging one), then for each state size grows the state with confirmed card payments (a fifth of them refunded)
and measures, with a few concurrent clients, what the lab's service and deploys ask of Stripe: a confirmed payment
intent, a refund, a retrieve, an idempotent replay, a page of recent events (the service's reconciliation), the
balance (the service's readiness check). It prints p50/p95 in ms per request kind at each size, the ratio of the
largest size's p95 to the smallest's, and how long webhook deliveries took to drain. Bounded: sizes, samples and a
total time cap; it stops by itself and stops the emulator it started.

Usage: .venv/bin/python bench/stripe_emulator_load.py [--sizes 0,5000,20000] [--samples 150] [--emulator-dir lab]
       [--json FILE]   (--emulator-dir: a directory holding a stripe_emulator package, e.g. an older copy to compare)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk_test_51LabEmulatorBenchKey00000abcd"
ACCOUNT = "acct_1LabEmulator00001"
MAX_OBJECTS = 100_000
MAX_SECONDS = 900.0
CLIENTS = 4
KINDS = ("payment", "refund", "retrieve", "replay", "events", "balance")


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # pylint: disable=invalid-name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with _Receiver.lock:
            _Receiver.received += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        pass


class Client:
    """One persistent connection to the emulator, form-encoded like the SDK."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, params: dict[str, str] | None = None,
             key: str | None = None) -> tuple[int, dict[str, Any], float]:
        body = urlencode(params or {}) if method == "POST" else None
        if method == "GET" and params:
            path = f"{path}?{urlencode(params)}"
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/x-www-form-urlencoded"}
        if key:
            headers["Idempotency-Key"] = key
        started = time.perf_counter()
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = json.loads(response.read() or b"{}")
        return response.status, data, time.perf_counter() - started


def start_emulator(emulator_dir: Path, work: Path) -> tuple[subprocess.Popen[str], int]:
    keys = work / "keys.json"
    keys.write_text(json.dumps({"account": ACCOUNT, "keys": [KEY]}), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(emulator_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "stripe_emulator", "--host", "127.0.0.1", "--port", "0", "--quiet",
                             "--keys-file", str(keys), "--state-file", str(work / "state.json")],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=work)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def pay(client: Client, key: str | None = None) -> tuple[str, float]:
    key = key or secrets.token_hex(12)
    status, body, took = client.call("POST", "/v1/payment_intents", {
        "amount": "2000", "currency": "eur", "payment_method": "pm_card_visa", "confirm": "true",
        "payment_method_types[]": "card", "metadata[order]": key[:8]}, key)
    if status != 200:
        raise SystemExit(f"payment failed: {status} {body}")
    return body["id"], took


def object_count(client: Client) -> int:
    _status, health, _took = client.call("GET", "/_emulator/health")
    return sum(health["objects"].values())


def grow(port: int, target: int, paid: list[str], deadline: float) -> None:
    """Payments (a fifth refunded) from CLIENTS threads until the state holds about `target` objects."""
    probe = Client(port)
    while object_count(probe) < target and time.monotonic() < deadline:
        need = max((target - object_count(probe)) // 7, 1)  # a payment makes ~7 objects (pm, pi, ch, txn, 3 events)
        work: queue.Queue[int] = queue.Queue()
        for n in range(min(need, 2000)):
            work.put(n)

        def run() -> None:
            client = Client(port)
            while time.monotonic() < deadline:
                try:
                    n = work.get_nowait()
                except queue.Empty:
                    return
                pi_id, _took = pay(client)
                if n % 5 == 0:
                    client.call("POST", "/v1/refunds", {"payment_intent": pi_id}, secrets.token_hex(12))
                else:
                    paid.append(pi_id)

        threads = [threading.Thread(target=run) for _client in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def measure(port: int, samples: int, paid: list[str]) -> dict[str, list[float]]:
    """`samples` requests of every kind, interleaved, from CLIENTS threads; seconds per request kind."""
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    lock = threading.Lock()
    to_refund = [paid.pop() for _sample in range(min(samples, len(paid)))]
    since = str(int(time.time()) - 60)

    def run(worker: int) -> None:
        client = Client(port)
        replay_key = secrets.token_hex(12)
        pay(client, replay_key)
        for n in range(worker, samples, CLIENTS):
            took: dict[str, float] = {}
            pi_id, took["payment"] = pay(client)
            took["retrieve"] = client.call("GET", f"/v1/payment_intents/{pi_id}")[2]
            took["replay"] = pay(client, replay_key)[1]
            took["events"] = client.call("GET", "/v1/events", {"created[gte]": since, "limit": "100"})[2]
            took["balance"] = client.call("GET", "/v1/balance")[2]
            if n < len(to_refund):
                took["refund"] = client.call("POST", "/v1/refunds", {"payment_intent": to_refund[n]},
                                             secrets.token_hex(12))[2]
            with lock:
                for kind, seconds in took.items():
                    times[kind].append(seconds)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def drain_seconds(client: Client, deadline: float) -> float:
    """Seconds until no webhook delivery is pending."""
    started = time.monotonic()
    while time.monotonic() < deadline:
        pending = client.call("GET", "/_emulator/health")[1]["deliveries"].get("pending", 0)
        if not pending:
            break
        time.sleep(0.1)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--sizes", default="0,5000,20000", help="state sizes in objects, ascending (default 0,5000,20000)")
    parser.add_argument("--samples", type=int, default=150, help="requests of each kind per size (default 150, max 1000)")
    parser.add_argument("--emulator-dir", type=Path, default=ROOT / "lab", help="directory holding stripe_emulator")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if sizes != sorted(sizes) or not all(0 <= s <= MAX_OBJECTS for s in sizes) or not 1 <= args.samples <= 1000:
        parser.error(f"sizes must be ascending within [0, {MAX_OBJECTS}], samples within [1, 1000]")
    deadline = time.monotonic() + MAX_SECONDS
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    receiver.daemon_threads = True
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    results: dict[str, Any] = {"emulator_dir": str(args.emulator_dir), "samples": args.samples, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="emulator-bench-") as tmp:
        proc, port = start_emulator(args.emulator_dir.resolve(), Path(tmp))
        try:
            admin = Client(port)
            for name in ("production", "staging"):
                admin.call("POST", "/v1/webhook_endpoints", {
                    "url": f"http://127.0.0.1:{receiver.server_address[1]}/webhooks/{name}", "enabled_events[]": "*"})
            paid: list[str] = []
            for size in sizes:
                grow(port, size, paid, deadline)
                if time.monotonic() > deadline:
                    print(f"stopped: the {MAX_SECONDS:.0f} s cap was reached", file=sys.stderr)
                    break
                objects = object_count(admin)
                state_mb = (Path(tmp) / "state.json").stat().st_size / 1e6 if (Path(tmp) / "state.json").exists() else 0
                times = measure(port, args.samples, paid)
                drained = drain_seconds(admin, deadline)
                row = {kind: {"p50_ms": round(pct(v, 0.5), 1), "p95_ms": round(pct(v, 0.95), 1), "n": len(v)}
                       for kind, v in times.items()}
                results["sizes"][str(size)] = {"objects": objects, "state_mb": round(state_mb, 1),
                                               "webhooks_drained_s": round(drained, 2), "kinds": row}
                print(f"size {size}: {objects} objects, state file {state_mb:.1f} MB, webhooks drained in {drained:.1f} s")
                for kind, figures in row.items():
                    print(f"  {kind:9s} p50 {figures['p50_ms']:8.1f} ms   p95 {figures['p95_ms']:8.1f} ms   (n={figures['n']})")
        finally:
            proc.terminate()
            proc.wait(30)
            receiver.shutdown()
    measured = list(results["sizes"].values())
    if len(measured) >= 2:
        first, last = measured[0]["kinds"], measured[-1]["kinds"]
        ratios = {k: round(last[k]["p95_ms"] / first[k]["p95_ms"], 1) if first[k]["p95_ms"] else None for k in KINDS}
        results["p95_ratio_last_to_first"] = ratios
        print("p95 ratio, largest size to smallest: " + ", ".join(f"{k} {v}x" for k, v in ratios.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"webhooks received: {_Receiver.received}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
