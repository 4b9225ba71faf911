"""Small HTTP servers standing in for the payment service's colours behind HAProxy: each answers GET /healthz/lb with 200
and GET /version with {"version", "colour", "instance"}, as the service does. All listeners are bound before the process
detaches, so that they accept connections once the command returns; the pid file names the detached process."""

from __future__ import annotations

import argparse
import http.server
import json
import os
import sys
import threading


def handler_for(instance: str, colour: str, version: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10

        def do_GET(self) -> None:  # noqa: N802  pylint: disable=invalid-name  # http.server's naming
            if self.path == "/healthz/lb":
                status, body, kind = 200, b"ok\n", "text/plain"
            elif self.path == "/version":
                status, kind = 200, "application/json"
                body = json.dumps({"service": "payments", "version": version, "colour": colour, "instance": instance}).encode()
            else:
                status, body, kind = 404, b"not found\n", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # pylint: disable=redefined-builtin
            pass

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--backend", action="append", required=True, metavar="PORT:INSTANCE:COLOUR:VERSION",
                        help="one listener on 127.0.0.1:PORT answering as INSTANCE of COLOUR running VERSION")
    args = parser.parse_args()
    servers = []
    for spec in args.backend:
        port, instance, colour, version = spec.split(":", 3)
        servers.append(http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler_for(instance, colour, version)))
    child = os.fork()
    if child:
        with open(args.pid_file, "w", encoding="ascii") as pid_file:
            pid_file.write(f"{child}\n")
        return 0
    os.setsid()
    with open(os.devnull, "r+b") as devnull:
        for stream in (sys.stdin, sys.stdout, sys.stderr):
            os.dup2(devnull.fileno(), stream.fileno())
    threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
