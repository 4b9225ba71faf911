"""A fake Prometheus on 127.0.0.1 answering ``/api/v1/query`` as Prometheus' HTTP API does, from scripted values."""

from __future__ import annotations

import http.server
import json
import threading
import typing as t
from urllib.parse import parse_qs

# A scripted answer: a number (a one-element vector), None (an empty vector), "NaN"/"+Inf" (as Prometheus writes
# them), or a (status, body) pair sent as it is.
Answer = t.Union[float, str, None, tuple]


def vector(*values: float | str) -> dict[str, t.Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"instance": f"app{i}"}, "value": [1767225600.0, str(v)]} for i, v in enumerate(values)]}}


def rejected(message: str) -> tuple[int, dict[str, t.Any]]:
    return 400, {"status": "error", "errorType": "bad_data", "error": message}


class FakePrometheus:
    """``script`` maps a text the query contains to the answers of its successive queries (the last one repeats)."""

    def __init__(self, script: dict[str, list[Answer]]) -> None:
        self.script = script
        self.received: list[dict[str, str]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, body = fake.answer(self.path, form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def answer(self, path: str, form: dict[str, str]) -> tuple[int, t.Any]:
        if path != "/api/v1/query":
            return 404, {"status": "error", "error": "not found"}
        query = form.get("query", "")
        with self.lock:
            self.received.append(form)
            for needle, answers in self.script.items():
                if needle in query:
                    scripted = answers.pop(0) if len(answers) > 1 else answers[0]
                    break
            else:
                return 200, vector()
        if isinstance(scripted, tuple):
            return scripted
        return 200, vector() if scripted is None else vector(scripted)

    def queries(self, needle: str = "") -> list[str]:
        return [form["query"] for form in self.received if needle in form["query"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
