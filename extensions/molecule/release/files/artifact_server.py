"""Serves the release artifacts of a directory over HTTP on 127.0.0.1, as the lab's artifact server does. The listener
is bound before the process detaches, so that it accepts connections once the command returns; the pid file names the
detached process."""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import sys


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # pylint: disable=redefined-builtin
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--directory", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--pid-file", required=True)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), functools.partial(QuietHandler, directory=args.directory))
    child = os.fork()
    if child:
        with open(args.pid_file, "w", encoding="ascii") as pid_file:
            pid_file.write(f"{child}\n")
        return 0
    os.setsid()
    with open(os.devnull, "r+b") as devnull:
        for stream in (sys.stdin, sys.stdout, sys.stderr):
            os.dup2(devnull.fileno(), stream.fileno())
    server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
