"""Throw-away servers on free loopback ports for the webhook secret store suite: the lab's Stripe emulator and a moto
server (every AWS service on one port, Secrets Manager among them)."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.parse
import urllib.request
from pathlib import Path

from loopback_ports import free_port

REPO = Path(__file__).resolve().parents[3]
STRIPE_KEY = "sk_live_51LabEmulatorLiveKey0000000000000000001abcd"
ACCOUNT = "acct_1LabEmulator00001"
START_TIMEOUT_S = 30.0


def stop(proc: subprocess.Popen[t.Any]) -> None:
    """Stop a process this suite started (SIGTERM, then SIGKILL)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class StripeEmulator:
    """``python -m stripe_emulator`` on a port it picks, read from its ready line."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="secret-store-stripe-"))
        keys = self.base / "keys.json"
        keys.write_text(json.dumps({"account": ACCOUNT, "keys": [STRIPE_KEY]}))
        keys.chmod(0o600)
        self.log = self.base / "emulator.log"
        with open(self.log, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stripe_emulator", "--host", "127.0.0.1", "--port", "0", "--keys-file", str(keys),
                 "--quiet"], stdout=subprocess.PIPE, stderr=log, text=True, cwd=self.base,
                env=dict(os.environ, PYTHONPATH=str(REPO / "lab")))
        assert self.proc.stdout is not None
        self.url = ""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.url and time.monotonic() < deadline and self.proc.poll() is None:
            if select.select([self.proc.stdout], [], [], 0.2)[0]:
                line = self.proc.stdout.readline()
                if line.startswith("stripe emulator listening on "):
                    self.url = line.split()[-1]
        if not self.url:
            self.stop()
            raise RuntimeError(f"the Stripe emulator did not start: {self.log.read_text()}")

    def call(self, method: str, path: str, form: list[tuple[str, str]] | None = None) -> t.Any:
        data = urllib.parse.urlencode(form).encode() if form else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {STRIPE_KEY}", "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def create_endpoint(self, url: str, marker: str) -> dict[str, t.Any]:
        """An endpoint as the role creates one (its marker in the metadata); the response holds its secret."""
        return dict(self.call("POST", "/v1/webhook_endpoints", [
            ("url", url), ("enabled_events[]", "payment_intent.succeeded"), ("metadata[payments_deploy_id]", marker),
            ("metadata[payments_deploy_connect]", "false")]))

    def endpoints(self) -> list[dict[str, t.Any]]:
        return list(self.call("GET", "/v1/webhook_endpoints?limit=100")["data"])

    def stop(self) -> None:
        stop(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.base, ignore_errors=True)


class Moto:
    """``moto_server`` on a free port below the ephemeral range."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        server = Path(sys.executable).with_name("moto_server")
        cmd = [str(server)] if server.exists() else [sys.executable, "-m", "moto.server"]
        self.proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not start")

    def secrets(self) -> t.Any:
        import boto3  # pylint: disable=import-outside-toplevel
        return boto3.client("secretsmanager", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=10).close()

    def stop(self) -> None:
        stop(self.proc)
