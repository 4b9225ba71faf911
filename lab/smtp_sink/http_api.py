"""The sink's HTTP API (loopback only): GET /health, GET /messages[?to=ADDRESS&header=NAME:VALUE], GET /messages/ID."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .mailbox import Mailbox


class ApiHandler(BaseHTTPRequestHandler):
    """Read-only JSON endpoints over the mailbox."""

    mailbox: Mailbox  # set on the subclass make_server builds
    server_version = "smtp-sink"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/health":
            self._json(200, {"status": "ok"})
        elif url.path == "/messages":
            self._list(query)
        elif url.path.startswith("/messages/"):
            raw = self.mailbox.raw(url.path.removeprefix("/messages/"))
            if raw is None:
                self._json(404, {"error": "no such message"})
            else:
                self._send(200, raw, "message/rfc822")
        else:
            self._json(404, {"error": "no such path"})

    def _list(self, query: dict[str, list[str]]) -> None:
        header = None
        if "header" in query:
            name, sep, value = query["header"][0].partition(":")
            if not sep or not name.strip():
                self._json(400, {"error": "header must be NAME:VALUE, e.g. X-Payment-Id:pay_123"})
                return
            header = (name.strip(), value.strip())
        to = query["to"][0] if "to" in query else None
        self._json(200, {"messages": self.mailbox.messages(to=to, header=header)})

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class' signature)
        """Requests are not logged: the listing is polled."""


def make_server(port: int, mailbox: Mailbox) -> ThreadingHTTPServer:
    """The API server on 127.0.0.1:port."""
    handler = type("BoundApiHandler", (ApiHandler,), {"mailbox": mailbox})
    return ThreadingHTTPServer(("127.0.0.1", port), handler)
