"""Customer traffic for the lab: real payments, and refunds of some of them, at a steady bounded rate.

Payments of mixed amounts (5.00 to 50.00 by default, most of them 10.00 or more) go through a frontend URL with the
API key, each with its own Idempotency-Key; a fraction of the payments that succeed is refunded right after. Every
attempt is recorded: when it was sent and answered, its status, the payment (and refund) id, the amount and the
release and instance that answered (X-Service-Version, X-Served-By). The summary lists the ids of the payments that
succeeded, so a test can prove that each of them is in the service's database and at Stripe.

It stops by itself at the first of: the duration, the payment count, or stop(); rate, duration and count have hard
caps. Only for loopback targets. Stdlib only.

    python lab/customer_traffic.py --url http://127.0.0.1:28080 --api-key-file .lab/secrets.json \\
        --duration 20 --rate 5 --out traffic.json
"""
from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import random
import secrets
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_RATE = 8.0  # payments per second: with refunds, below the API key's default limit of 600 requests a minute
MAX_DURATION = 600.0  # seconds
MAX_PAYMENTS = 5000
LARGE_AMOUNT = 1000  # 10.00: the summary counts payments at or above it apart
PAYMENTS = "/v1/payments"
ANSWER_COUNTS = ("payments", "succeeded", "failed", "refunds")


@dataclass(frozen=True)
class Attempt:
    """One request as the customer saw it."""

    kind: str  # "payment" or "refund"
    n: int  # the payment's number (a refund carries its payment's)
    idempotency_key: str
    amount: int
    sent: float
    done: float
    status: int  # 0: no HTTP answer (connection refused, reset, timeout)
    payment_id: str | None
    refund_id: str | None
    result: str  # the payment's or refund's status, else the error code or exception
    version: str
    instance: str

    @property
    def ok(self) -> bool:
        """Answered 2xx with a payment or refund that took effect."""
        return 200 <= self.status < 300 and self.result == "succeeded"


def load_api_key(path: Path) -> str:
    """The API key from a file: the lab's secrets.json (its "api_key") or a file holding only the key."""
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("{"):
        key = json.loads(text).get("api_key")
        if not isinstance(key, str) or not key:
            raise ValueError(f"{path} has no \"api_key\"")
        return key
    if not text:
        raise ValueError(f"{path} is empty")
    return text


class CustomerTraffic:
    """Payments at `rate` per second from `concurrency` customers, each on its own persistent connection."""

    def __init__(self, url: str, api_key: str, *, rate: float = 5.0, duration: float = 20.0,
                 max_payments: int = 1000, refund_fraction: float = 0.2, min_amount: int = 500,
                 max_amount: int = 5000, currency: str = "eur", payment_method: str = "pm_card_visa",
                 concurrency: int = 4, timeout: float = 10.0, seed: int | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"customer traffic needs an http:// URL, not {url!r}")
        if not ipaddress.ip_address(socket.gethostbyname(parts.hostname)).is_loopback:
            raise ValueError(f"customer traffic targets loopback addresses only, not {parts.hostname}")
        problems = [f"{name} must be within (0, {cap}]" for name, value, cap in (
            ("rate", rate, MAX_RATE), ("duration", duration, MAX_DURATION), ("max_payments", max_payments, MAX_PAYMENTS))
            if not 0 < value <= cap]
        if not 0 <= refund_fraction <= 1:
            problems.append("refund_fraction must be within [0, 1]")
        if not 1 <= min_amount <= max_amount:
            problems.append("amounts must satisfy 1 <= min_amount <= max_amount")
        if not 1 <= concurrency <= 32:
            problems.append("concurrency must be within [1, 32]")
        if not api_key:
            problems.append("api_key is empty")
        if problems:
            raise ValueError("; ".join(problems))
        self.url = url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self.rate, self.duration, self.max_payments = rate, duration, max_payments
        self.refund_fraction, self.min_amount, self.max_amount = refund_fraction, min_amount, max_amount
        self.currency, self.payment_method = currency, payment_method
        self.concurrency, self.timeout = concurrency, timeout
        self.run_id = secrets.token_hex(4)
        self._random = random.Random(seed)
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0
        self._started_at = 0.0
        self._claimed = 0

    def start(self) -> CustomerTraffic:
        """Start the customers; returns at once."""
        self._started, self._started_at = time.monotonic(), time.time()
        self._threads = [threading.Thread(target=self._customer, daemon=True, name=f"customer-{n}")
                         for n in range(self.concurrency)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sending (requests in flight finish) and return the summary."""
        self._stop.set()
        for thread in self._threads:
            thread.join(2 * self.timeout + 5)
        return self.summary()

    def wait(self) -> dict[str, Any]:
        """Wait until a bound stops the customers; return the summary."""
        for thread in self._threads:
            thread.join()
        return self.stop()

    def __enter__(self) -> CustomerTraffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _claim(self) -> tuple[int, int, bool, float] | None:
        """The next payment (number, amount, refund it?, when to send it), or None once a bound is reached."""
        with self._lock:
            due = self._started + self._claimed / self.rate
            deadline = self._started + self.duration
            if self._stop.is_set() or self._claimed >= self.max_payments or max(due, time.monotonic()) >= deadline:
                return None
            self._claimed += 1
            amount = self._random.randint(self.min_amount, self.max_amount)
            return self._claimed, amount, self._random.random() < self.refund_fraction, due

    def _customer(self) -> None:
        connection: list[http.client.HTTPConnection | None] = [None]
        try:
            while (claim := self._claim()) is not None:
                n, amount, refund, due = claim
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                payment = self._pay(connection, n, amount)
                if refund and payment.ok and payment.payment_id:
                    self._refund(connection, payment)
        finally:
            if connection[0] is not None:
                connection[0].close()

    def _pay(self, connection: list[http.client.HTTPConnection | None], n: int, amount: int) -> Attempt:
        key = f"traffic-{self.run_id}-{n}"
        body = {"amount": amount, "currency": self.currency, "payment_method": self.payment_method,
                "description": f"customer traffic {self.run_id} #{n}"}
        return self._send(connection, "payment", n, key, amount, PAYMENTS, body)

    def _refund(self, connection: list[http.client.HTTPConnection | None], payment: Attempt) -> Attempt:
        return self._send(connection, "refund", payment.n, f"traffic-{self.run_id}-{payment.n}-refund",
                          payment.amount, f"{PAYMENTS}/{payment.payment_id}/refunds", {})

    def _send(self, connection: list[http.client.HTTPConnection | None], kind: str, n: int, key: str, amount: int,
              path: str, body: dict[str, Any]) -> Attempt:
        """One POST on the customer's connection (reopened after a failure); the attempt is recorded."""
        headers = {**self._auth, "Idempotency-Key": key, "Content-Type": "application/json",
                   "Connection": "keep-alive"}
        sent = time.time()
        try:
            if connection[0] is None:
                connection[0] = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            connection[0].request("POST", self.prefix + path, body=json.dumps(body), headers=headers)
            answer = connection[0].getresponse()
            raw = answer.read()
            status, version = answer.status, answer.getheader("X-Service-Version", "")
            instance = answer.getheader("X-Served-By", "")
            if answer.will_close:
                connection[0].close()
                connection[0] = None
            data = _json_object(raw)
        except (OSError, http.client.HTTPException) as exc:
            if connection[0] is not None:
                connection[0].close()
                connection[0] = None
            attempt = Attempt(kind, n, key, amount, sent, time.time(), 0, None, None, f"{type(exc).__name__}: {exc}",
                              "", "")
        else:
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            result = str(data.get("status") or error.get("code") or "")
            payment_id = data.get("payment_id") if kind == "refund" else data.get("id") or error.get("payment_id")
            attempt = Attempt(kind, n, key, amount, sent, time.time(), status,
                              payment_id if isinstance(payment_id, str) else None,
                              str(data["id"]) if kind == "refund" and 200 <= status < 300 and "id" in data else None,
                              result, version, instance)
        with self._lock:
            self.attempts.append(attempt)
        return attempt

    def summary(self) -> dict[str, Any]:
        """Counts, the ids of what succeeded, failures by status and the answers of each release."""
        with self._lock:
            attempts = sorted(self.attempts, key=lambda attempt: (attempt.sent, attempt.kind))
        payments = [attempt for attempt in attempts if attempt.kind == "payment"]
        refunds = [attempt for attempt in attempts if attempt.kind == "refund"]
        large = [attempt for attempt in payments if attempt.amount >= LARGE_AMOUNT]
        return {
            "url": self.url, "run_id": self.run_id, "started_at": self._started_at,
            "rate": self.rate, "duration": self.duration, "max_payments": self.max_payments,
            "attempts": len(attempts),
            "payments": _outcomes(payments),
            "large_payments": {"min_amount": LARGE_AMOUNT, **_outcomes(large, ids=False)},
            "refunds": _outcomes(refunds),
            "by_release": _answered_by(attempts, "version"), "by_instance": _answered_by(attempts, "instance"),
            "records": [asdict(attempt) for attempt in attempts],
        }


def _answered_by(attempts: list[Attempt], field: str) -> dict[str, dict[str, int]]:
    """Payments (succeeded, failed) and refunds per release or instance that answered ("-": no answer)."""
    counts: dict[str, dict[str, int]] = {}
    for attempt in attempts:
        entry = counts.setdefault(getattr(attempt, field) or "-", dict.fromkeys(ANSWER_COUNTS, 0))
        if attempt.kind == "refund":
            entry["refunds"] += 1
        else:
            entry["payments"] += 1
            entry["succeeded" if attempt.ok else "failed"] += 1
    return dict(sorted(counts.items()))


def _outcomes(attempts: list[Attempt], ids: bool = True) -> dict[str, Any]:
    failed: dict[str, int] = {}
    for attempt in attempts:
        if not attempt.ok:
            failed[str(attempt.status)] = failed.get(str(attempt.status), 0) + 1
    succeeded = [attempt for attempt in attempts if attempt.ok]
    out: dict[str, Any] = {"attempted": len(attempts), "succeeded": len(succeeded),
                           "failed": len(attempts) - len(succeeded), "failed_by_status": dict(sorted(failed.items()))}
    if ids:
        out["succeeded_ids"] = [attempt.refund_id or attempt.payment_id for attempt in succeeded]
    return out


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the frontend, for example http://127.0.0.1:28080")
    parser.add_argument("--api-key-file", type=Path, required=True,
                        help="the lab's secrets.json (its api_key) or a file holding only the key")
    parser.add_argument("--rate", type=float, default=5.0, help=f"payments per second (at most {MAX_RATE:g})")
    parser.add_argument("--duration", type=float, default=20.0, help=f"seconds (at most {MAX_DURATION:g})")
    parser.add_argument("--max-payments", type=int, default=1000, help=f"payment count (at most {MAX_PAYMENTS})")
    parser.add_argument("--refund-fraction", type=float, default=0.2, help="share of succeeded payments refunded")
    parser.add_argument("--min-amount", type=int, default=500, help="in the smallest unit (500: 5.00)")
    parser.add_argument("--max-amount", type=int, default=5000, help="in the smallest unit (5000: 50.00)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, help="for the same amounts and refunds in every run")
    parser.add_argument("--out", type=Path, help="write the JSON summary here (else to stdout)")
    args = parser.parse_args(argv)
    try:
        traffic = CustomerTraffic(args.url, load_api_key(args.api_key_file), rate=args.rate, duration=args.duration,
                                  max_payments=args.max_payments, refund_fraction=args.refund_fraction,
                                  min_amount=args.min_amount, max_amount=args.max_amount,
                                  concurrency=args.concurrency, seed=args.seed)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    summary = traffic.start().wait()
    text = json.dumps(summary, indent=2) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        brief = {name: summary[name] for name in ("attempts", "by_release")}
        brief.update({name: {k: v for k, v in summary[name].items() if k != "succeeded_ids"}
                      for name in ("payments", "large_payments", "refunds")})
        print(json.dumps(brief))
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
