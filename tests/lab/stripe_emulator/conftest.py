"""Fixtures for the Stripe emulator tests: the emulator as a subprocess on a free port, HTTP helpers and a webhook receiver."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlencode

import pytest
import stripe
from loopback_ports import free_port

REPO = Path(__file__).resolve().parents[3]
LAB = REPO / "lab"
# Stripe's published fixtures (github.com/stripe/openapi, MIT: see stripe_openapi/LICENSE), kept beside the tests.
FIXTURES = Path(os.environ.get("STRIPE_FIXTURES", Path(__file__).resolve().parent / "stripe_openapi" / "fixtures3.json"))
ACCOUNT = "acct_1LabEmulator00001"
TEST_KEY = "sk_test_51LabEmulatorTestKey0000abcd"
LIVE_KEY = "sk_live_51LabEmulatorLiveKey0000wxyz"
RESTRICTED_TEST_KEY = "rk_test_51LabEmulatorRestricted00rk01"
RESTRICTED_LIVE_KEY = "rk_live_51LabEmulatorRestricted00rk02"
START_TIMEOUT_S = 30
# Quick webhook retries so the retry tests stay short.
FAST_WEBHOOKS = ("--webhook-backoff", "0.05", "--webhook-backoff-max", "0.2", "--webhook-timeout", "5")


def wait_until(check: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    """Poll until check() returns something truthy (and return it), or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def error(self) -> dict[str, Any]:
        return self.body["error"]


def flatten(params: dict[str, Any] | list[tuple[str, str]] | None) -> str:
    """Form-encode nested dicts and lists the way Stripe's clients do (``a[b]=c``, ``a[0]=x``)."""
    if params is None:
        return ""
    if isinstance(params, list):
        return urlencode(params)
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}[{key}]", item)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(f"{prefix}[{i}]", item)
        elif isinstance(value, bool):
            pairs.append((prefix, "true" if value else "false"))
        else:
            pairs.append((prefix, str(value)))

    for key, value in params.items():
        walk(key, value)
    return urlencode(pairs)


@dataclass
class Emulator:
    """A running emulator and raw HTTP access to it."""

    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    keys_file: Path
    log_path: Path
    state_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, params: dict[str, Any] | list[tuple[str, str]] | None = None, *,
                key: str | None = TEST_KEY, headers: dict[str, str] | None = None, body: bytes | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            all_headers = dict(headers or {})
            if key is not None:
                all_headers.setdefault("Authorization", f"Bearer {key}")
            encoded = flatten(params)
            if method in ("GET", "DELETE") and encoded:
                path = f"{path}?{encoded}"
            elif body is None and method == "POST":
                body = encoded.encode()
                all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            raw = response.read()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw) if raw else None)
        finally:
            conn.close()

    def ok(self, method: str, path: str, params: Any = None, **kwargs: Any) -> dict[str, Any]:
        reply = self.request(method, path, params, **kwargs)
        assert reply.status == 200, reply.body
        return reply.body

    def admin(self, method: str, path: str, payload: Any = None) -> Reply:
        body = json.dumps(payload).encode() if payload is not None else None
        return self.request(method, f"/_emulator/{path}", key=None, body=body,
                            headers={"Content-Type": "application/json"} if body else None)

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        reply = self.admin("POST", "faults", spec)
        assert reply.status == 200, reply.body
        return reply.body

    def seen(self, method: str, path_prefix: str) -> list[dict[str, Any]]:
        """The requests the emulator received (faulted ones included), oldest first."""
        reply = self.request("GET", "/_emulator/requests", {"method": method, "path_prefix": path_prefix}, key=None)
        return reply.body["data"]

    def deliveries(self, **query: str) -> list[dict[str, Any]]:
        return self.request("GET", "/_emulator/deliveries", query or None, key=None).body["data"]

    def client(self, key: str = TEST_KEY, retries: int = 0) -> stripe.StripeClient:
        return stripe.StripeClient(key, base_addresses={"api": self.url}, max_network_retries=retries)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


LIVE_CARD = "pm_lab_live_visa"  # a live-mode card, as the lab keeps one for production's test payments


def write_keys(directory: Path) -> Path:
    path = directory / "keys.json"
    path.write_text(json.dumps({"account": ACCOUNT, "keys": [LIVE_KEY, TEST_KEY, RESTRICTED_LIVE_KEY, RESTRICTED_TEST_KEY],
                                "live_cards": {LIVE_CARD: "pm_card_visa"}}))
    return path


def start(workdir: Path, *extra: str, state_file: Path | None = None) -> Emulator:
    """Start the emulator exactly as the lab does and wait for its ready line."""
    port = free_port()
    keys_file = workdir / "keys.json"
    if not keys_file.exists():
        write_keys(workdir)
    log_path = workdir / f"emulator-{port}.log"
    cmd = [sys.executable, "-m", "stripe_emulator", "--host", "127.0.0.1", "--port", str(port), "--keys-file", str(keys_file), *extra]
    if state_file is not None:
        cmd += ["--state-file", str(state_file)]
    env = {**os.environ, "PYTHONPATH": str(LAB)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env)  # pylint: disable=consider-using-with
    emulator = Emulator(proc, port, workdir, keys_file, log_path, state_file)
    assert proc.stdout is not None
    ready = proc.stdout.readline().decode().strip()
    if ready != f"stripe emulator listening on http://127.0.0.1:{port}":
        stop(emulator)
        pytest.fail(f"the emulator did not start: {ready!r}\n{emulator.log()}")
    return emulator


def stop(emulator: Emulator, timeout: float = 15) -> int:
    proc = emulator.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()
    return proc.returncode


@pytest.fixture(scope="session")
def fixtures() -> dict[str, Any]:
    if not FIXTURES.exists():
        pytest.fail(f"Stripe's fixtures are missing: {FIXTURES} (set STRIPE_FIXTURES)")
    return json.loads(FIXTURES.read_text())["resources"]


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="stripe-emulator-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def shared_emulator(workdir: Path) -> Iterator[Emulator]:
    emulator = start(workdir, *FAST_WEBHOOKS, "--webhook-max-attempts", "3")
    yield emulator
    assert stop(emulator) == 0, emulator.log()


@pytest.fixture
def emu(shared_emulator: Emulator) -> Emulator:
    """The shared emulator, emptied before the test."""
    assert shared_emulator.admin("POST", "reset").status == 200
    return shared_emulator


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    """Start extra emulators (own options, own state); all are stopped after the test."""
    started: list[Emulator] = []

    def _spawn(*extra: str, state_file: Path | None = None) -> Emulator:
        emulator = start(tmp_path, *extra, state_file=state_file)
        started.append(emulator)
        return emulator

    yield _spawn
    for emulator in started:
        stop(emulator)


@dataclass
class Receiver:
    """A webhook endpoint on loopback that records what it gets and answers with the statuses it is told to."""

    server: ThreadingHTTPServer
    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; 200 once they run out
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    class Hook(BaseHTTPRequestHandler):
        rec: Receiver

        def do_POST(self) -> None:  # pylint: disable=invalid-name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with self.rec.lock:
                status = self.rec.statuses.pop(0) if self.rec.statuses else 200
                self.rec.received.append({"path": self.path, "headers": dict(self.headers.items()), "body": body.decode(),
                                          "answered": status})
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    rec = Receiver(server)
    Hook.rec = rec
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
    thread.join(10)
