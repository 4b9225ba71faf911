"""A bounded HTTP load generator for the lab: keeps persistent connections busy and records every request.

Every request is recorded with when it was sent and answered, its status and the version and instance that
answered (from the X-Service-Version and X-Served-By headers), so that a test can say which requests failed
and which release answered each one. It stops by itself at the first of: the duration, the request count,
or stop(). Only for loopback targets.
"""
from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Sample:
    sent: float
    done: float
    status: int  # 0: no HTTP answer (connection refused, reset, timeout)
    version: str
    instance: str
    error: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class LoadGenerator:
    def __init__(self, url: str, *, concurrency: int = 4, duration: float = 60.0, max_requests: int = 20000,
                 timeout: float = 10.0, pause: float = 0.0, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        if not ipaddress.ip_address(socket.gethostbyname(parts.hostname or "")).is_loopback:
            raise ValueError(f"load generator targets loopback addresses only, not {parts.hostname}")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/"
        self.concurrency, self.duration, self.max_requests = concurrency, duration, max_requests
        self.timeout, self.pause = timeout, pause
        self.headers = {"Connection": "keep-alive", **(headers or {})}
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._deadline = 0.0
        self._claimed = 0

    def start(self) -> LoadGenerator:
        self._deadline = time.monotonic() + self.duration
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _worker in range(self.concurrency)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return sorted(self.samples, key=lambda s: s.sent)

    def wait(self) -> list[Sample]:
        """Wait until a bound stops the workers."""
        for thread in self._threads:
            thread.join()
        return self.stop()

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _claim(self) -> bool:
        """Reserve one request within the count bound; False once any bound is reached."""
        with self._lock:
            if self._stop.is_set() or time.monotonic() >= self._deadline or self._claimed >= self.max_requests:
                return False
            self._claimed += 1
            return True

    def _worker(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while self._claim():
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            sent = time.time()
            try:
                conn.request("GET", self.path, headers=self.headers)
                answer = conn.getresponse()
                answer.read()
                sample = Sample(sent, time.time(), answer.status, answer.getheader("X-Service-Version", ""),
                                answer.getheader("X-Served-By", ""), "")
                if answer.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                sample = Sample(sent, time.time(), 0, "", "", f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = None
            with self._lock:
                self.samples.append(sample)
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()


def summarize(samples: list[Sample]) -> dict:
    latencies = sorted(s.done - s.sent for s in samples)
    failed = [s for s in samples if not s.ok]
    by_version: dict[str, int] = {}
    for sample in samples:
        by_version[sample.version or "-"] = by_version.get(sample.version or "-", 0) + 1
    pick = (lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)) if latencies else (
        lambda q: None)
    return {"requests": len(samples), "failed": len(failed), "by_version": by_version,
            "p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99),
            "first_errors": [asdict(s) for s in failed[:5]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="for example http://127.0.0.1:28080/version")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (upper bound)")
    parser.add_argument("--max-requests", type=int, default=20000, help="request count (upper bound)")
    args = parser.parse_args(argv)
    gen = LoadGenerator(args.url, concurrency=args.concurrency, duration=args.duration, max_requests=args.max_requests)
    print(json.dumps(summarize(gen.start().wait()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
