"""Throw-away servers on free loopback ports for the rollback_mirror role: redis-server with a password, the lab's
Stripe emulator, the lab's SMTP sink (aiosmtpd, with its mailbox API) and an HTTP server that collects chat posts."""

from __future__ import annotations

import email
import email.policy
import http.server
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import urllib.parse
import urllib.request
from pathlib import Path
from loopback_ports import free_port

REPO = Path(__file__).resolve().parents[3]
LAB = REPO / "lab"
STRIPE_KEY = "sk_live_51LabEmulatorLiveKey0000000000000000001abcd"
ACCOUNT = "acct_1LabEmulator00001"
START_TIMEOUT_S = 20.0


def wait_until(check: t.Callable[[], bool], what: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def stop(proc: subprocess.Popen[t.Any]) -> None:
    """Stop a process this suite started (SIGTERM, then SIGKILL)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Redis:
    """redis-server with requirepass, no persistence; the password only in its 0600 config file."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="mirror-redis-"))
        self.password, self.port = secrets.token_hex(16), free_port()
        config = self.base / "redis.conf"
        config.write_text(f'port {self.port}\nbind 127.0.0.1\nrequirepass {self.password}\nsave ""\nappendonly no\n'
                          f"dir {self.base}\ndaemonize no\n")
        config.chmod(0o600)
        with open(self.base / "redis.log", "wb") as log:
            self.proc = subprocess.Popen(["redis-server", str(config)], stdout=log, stderr=subprocess.STDOUT)
        import redis  # noqa: PLC0415 (the suite's only use of the library is through this client)
        self.client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        wait_until(self._answers, "redis-server to answer PING")

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # noqa: BLE001 (any failure means: not yet)
            return False

    def keys(self, pattern: str) -> list[str]:
        return sorted(k.decode() for k in self.client.scan_iter(match=pattern, count=1000))

    def stop(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


class StripeEmulator:
    """``python -m stripe_emulator`` on a port it picks, read from its ready line."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="mirror-stripe-"))
        keys = self.base / "keys.json"
        keys.write_text(json.dumps({"account": ACCOUNT, "keys": [STRIPE_KEY]}))
        keys.chmod(0o600)
        self.log = self.base / "emulator.log"
        with open(self.log, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stripe_emulator", "--host", "127.0.0.1", "--port", "0", "--keys-file",
                 str(keys), "--quiet"], stdout=subprocess.PIPE, stderr=log, text=True, cwd=self.base,
                env=dict(os.environ, PYTHONPATH=str(LAB)))
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

    def create_endpoint(self, url: str, events: list[str], api_version: str, description: str,
                        marker: str) -> dict[str, t.Any]:
        """An endpoint as payments.deploy.stripe_webhook_endpoint creates one (its marker in the metadata)."""
        form = [("url", url), ("api_version", api_version), ("description", description),
                ("metadata[payments_deploy_id]", marker), ("metadata[payments_deploy_connect]", "false")]
        return dict(self.call("POST", "/v1/webhook_endpoints", form + [("enabled_events[]", e) for e in events]))

    def endpoints(self) -> list[dict[str, t.Any]]:
        return list(self.call("GET", "/v1/webhook_endpoints?limit=100")["data"])

    def stop(self) -> None:
        stop(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.base, ignore_errors=True)


class SmtpSink:
    """The lab's SMTP sink (``python -m smtp_sink``) on two free ports, with its mailbox API."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="mirror-smtp-"))
        self.smtp_port, self.http_port = free_port(), free_port()
        self.log = self.base / "sink.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smtp_sink", "--smtp-port", str(self.smtp_port), "--http-port",
                 str(self.http_port), "--maildir", str(self.base / "mail")], cwd=self.base, stdout=log,
                stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(LAB), PYTHONUNBUFFERED="1"))
        wait_until(lambda: "smtp sink: SMTP on" in self.log.read_text(errors="replace"), "the SMTP sink to listen")

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            return bytes(response.read())

    def messages(self) -> list[dict[str, t.Any]]:
        """Each message received: its envelope recipients, subject and plain-text body."""
        found = []
        for summary in json.loads(self._get("/messages"))["messages"]:
            parsed = email.message_from_bytes(self._get(f"/messages/{summary['id']}"), policy=email.policy.default)
            body = parsed.get_body(("plain",))
            found.append({"to": summary["to"], "subject": str(parsed["Subject"]),
                          "body": body.get_content() if body is not None else ""})
        return found

    def stop(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


class ChatWebhook:
    """An HTTP server that keeps every JSON body POSTed to it (a Slack-compatible incoming webhook)."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[t.Any] = []
        self.status = status
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                collector.posts.append({"path": self.path, "body": json.loads(self.rfile.read(length) or b"null")})
                self.send_response(collector.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002 (the base class's name)
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, token: str) -> str:
        return f"http://127.0.0.1:{self.port}/services/{token}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
