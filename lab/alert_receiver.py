"""python -m alert_receiver --port P [--log FILE]: the lab's Alertmanager webhook receiver (loopback only).

POST /alerts   stores one Alertmanager webhook notification (JSON) with the time it arrived
GET  /alerts   the notifications received, oldest first; ?alertname=NAME keeps those with an alert of that name
GET  /health   {"status": "ok"}

Notifications are kept in memory (the last MAX_KEPT) and appended to --log as JSON lines, so that a person can
read what was sent after the fact. SIGTERM or SIGINT stops the server.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
MAX_KEPT = 1000
MAX_BODY = 1 << 20


class Inbox:
    """The notifications received, thread-safe."""

    def __init__(self, log: Path | None) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []
        self._log = log

    def add(self, notification: dict[str, Any]) -> None:
        entry = {"received_at": time.time(), "notification": notification}
        with self._lock:
            self._items = [*self._items[-(MAX_KEPT - 1):], entry]
            if self._log:
                with self._log.open("a") as out:
                    out.write(json.dumps(entry) + "\n")

    def list(self, alertname: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._items)
        if alertname is None:
            return items
        return [item for item in items
                if any(alert.get("labels", {}).get("alertname") == alertname
                       for alert in item["notification"].get("alerts", []))]


class ReceiverHandler(BaseHTTPRequestHandler):
    """The webhook endpoint and its read API."""

    inbox: Inbox  # set on the subclass make_server builds
    server_version = "alert-receiver"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        if url.path == "/health":
            self._json(200, {"status": "ok"})
        elif url.path == "/alerts":
            name = parse_qs(url.query).get("alertname", [None])[0]
            self._json(200, {"notifications": self.inbox.list(name)})
        else:
            self._json(404, {"error": "no such path"})

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/alerts":
            self._json(404, {"error": "no such path"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self._json(400, {"error": f"a JSON body of 1 to {MAX_BODY} bytes is required"})
            return
        try:
            notification = json.loads(self.rfile.read(length))
        except ValueError:
            self._json(400, {"error": "the body is not JSON"})
            return
        if not isinstance(notification, dict) or not isinstance(notification.get("alerts"), list):
            self._json(400, {"error": "not an Alertmanager notification (no alerts list)"})
            return
        self.inbox.add(notification)
        print(f"alert receiver: {notification.get('status')} {notification.get('groupLabels')} "
              f"({len(notification['alerts'])} alert(s))", flush=True)
        self._json(200, {"status": "stored"})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's signature)
        pass  # one line per notification is printed instead


def make_server(port: int, log: Path | None = None) -> ThreadingHTTPServer:
    handler = type("BoundReceiverHandler", (ReceiverHandler,), {"inbox": Inbox(log)})
    return ThreadingHTTPServer((HOST, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alert_receiver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, help="append every notification to this file (JSON lines)")
    args = parser.parse_args(argv)
    server = make_server(args.port, args.log)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"alert receiver listening on http://{HOST}:{args.port}/alerts", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
