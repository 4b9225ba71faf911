# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""One load-test run: an open-loop schedule of requests over the targets, bounded in time, count and concurrency.

Private to the payments.deploy collection: the interface may change without notice.

Request ``i`` is due ``i / rate`` seconds after the start, whatever the answers before it did (open loop): a slow
service does not lower the offered rate, it shows as latency, errors and a lower achieved rate. At most
``concurrency`` requests are in flight; a request due while all of them still wait is not sent and counts as an
error (``concurrency_limit``). The run always ends: no request is due after ``duration``, there are at most
``max_requests``, and each request waits at most ``request_timeout``.
"""

from __future__ import annotations

import ssl
import threading
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor, wait

from ansible_collections.payments.deploy.plugins.module_utils._load_test_options import (
    KINDS,
    Planned,
    payment_key,
    plan,
    refund_key,
)
from ansible_collections.payments.deploy.plugins.module_utils._load_test_stats import (
    CONCURRENCY_LIMIT,
    RATE_LIMITED,
    Sample,
    breakdown,
    judge,
    summary,
)
from ansible_collections.payments.deploy.plugins.module_utils._smoke_http import HttpClient, HttpFailure, join_url

USER_AGENT = "payments.deploy-load-test"
# Seconds a request may still take after request_timeout (the connect and the read are timed separately).
GRACE = 2.0


class SetupFailed(Exception):
    """The customer the reads need could not be made: nothing was measured."""


def error_kind(kind: str, status: int, version: str | None, expected_version: str | None) -> str | None:
    """The error an answer is, or None when it is the one ``kind`` expects (from the expected release)."""
    if status == KINDS[kind]["expect"]:
        if expected_version and version != expected_version:
            return "wrong_version"
        return None
    if status == 429:
        return RATE_LIMITED
    if status == 402:
        return "declined"
    if status >= 500:
        return "server_error"
    return "unexpected_status"


def failure_kind(failure: HttpFailure) -> str:
    if failure.reason == "timed out":
        return "timeout"
    if failure.reason.startswith("TLS error"):
        return "tls"
    return "connection"


class LoadTest:
    """Runs the plan and returns the result; ``run()`` gives ``(result, failure message or None)``."""

    def __init__(self, params: t.Mapping[str, t.Any], check_mode: bool) -> None:
        self.params = params
        self.check_mode = check_mode
        self.targets = [(str(target["name"]).strip(), str(target["url"]).rstrip("/")) for target in params["targets"]]
        self.plan = plan(params)
        self.http = HttpClient(params["request_timeout"], retry_delays=())
        if params.get("ca_path"):
            self.http.context = ssl.create_default_context(cafile=params["ca_path"])
        self.customer_id: str | None = params.get("customer_id")
        self.customer_created = False
        self.refunds: list[dict[str, t.Any]] = []
        self.lock = threading.Lock()

    # ----- requests

    def headers(self, kind: str, payment_n: int = 0) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        if KINDS[kind]["key"]:
            headers["Authorization"] = f"Bearer {self.params['api_key']}"
        if payment_n:
            headers["Idempotency-Key"] = payment_key(self.params["run_id"], payment_n)
        return headers

    def body(self, planned: Planned) -> dict[str, t.Any] | None:
        if planned.kind != "payment":
            return None
        params = self.params
        return {"amount": params["payment_amount"], "currency": params["currency"],
                "payment_method": params["payment_method"], "customer_id": self.customer_id,
                "description": f"load test {params['run_id']} payment {planned.payment_n}"}

    def send(self, planned: Planned, sample: Sample, started: float, due: float) -> None:
        """Send one planned request and fill its sample (never raises: every outcome is a figure)."""
        kind = KINDS[planned.kind]
        url = join_url(self.targets[planned.target][1], kind["path"].format(customer_id=self.customer_id))
        try:
            answer = self.http.request(kind["method"], url, self.headers(planned.kind, planned.payment_n),
                                       json_body=self.body(planned))
        except HttpFailure as failure:
            sample.error = failure_kind(failure)
        else:
            sample.status = answer.status
            sample.error = error_kind(planned.kind, answer.status, answer.header("X-Service-Version"),
                                      self.params.get("expected_version"))
            if planned.kind == "payment" and answer.status in (200, 201):
                payment_id = answer.json_object().get("id")
                sample.payment_id = payment_id if isinstance(payment_id, str) else None
        now = time.monotonic()
        sample.seconds = round(now - due, 4)
        sample.done_at = now - started

    # ----- the run

    def setup(self) -> None:
        """A customer for the run, unless customer_id names one, when the mix reads customers or makes payments."""
        mix_kinds = {planned.kind for planned in self.plan}
        if self.customer_id or not mix_kinds & {"customer", "payment"}:
            return
        name, base = self.targets[0]
        try:
            answer = self.http.request("POST", join_url(base, "/v1/customers"), self.headers("customer"),
                                       json_body={"email": self.params["customer_email"],
                                                  "name": f"load test {self.params['run_id']}"})
        except HttpFailure as failure:
            raise SetupFailed(f"the customer for the run could not be made on {name}: {failure}") from None
        customer_id = answer.json_object().get("id")
        if answer.status != 201 or not isinstance(customer_id, str):
            raise SetupFailed(f"the customer for the run could not be made on {name}: POST /v1/customers answered "
                              f"{answer.describe()}, not 201")
        self.customer_id, self.customer_created = customer_id, True

    def drive(self) -> tuple[list[Sample], float]:
        """Send the plan on its schedule; the samples in plan order and the seconds from start to the last answer."""
        rate, concurrency = self.params["rate"], self.params["concurrency"]
        samples = [Sample(p.index, self.targets[p.target][0], p.kind) for p in self.plan]
        slots = threading.BoundedSemaphore(concurrency)
        futures = []

        def work(planned: Planned, sample: Sample, started: float, due: float) -> None:
            try:
                self.send(planned, sample, started, due)
            finally:
                slots.release()

        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="load-test")
        started = time.monotonic()
        try:
            for planned, sample in zip(self.plan, samples):
                due = started + planned.index / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if not slots.acquire(blocking=False):
                    sample.error = CONCURRENCY_LIMIT
                    continue
                sample.sent = True
                futures.append(pool.submit(work, planned, sample, started, due))
            wait(futures, timeout=self.params["request_timeout"] + GRACE)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        for sample in samples:
            if sample.sent and sample.seconds is None:  # still in flight past its timeout and the grace
                sample.error = "timeout"
                sample.seconds = round(time.monotonic() - started - sample.index / rate, 4)
        window = len(self.plan) / rate
        last = max((s.done_at for s in samples if s.done_at is not None), default=0.0)
        return samples, round(max(window, last), 3)

    def refund_payments(self, samples: t.Sequence[Sample]) -> None:
        """Refund every payment the run made (after the measurement, so refunds weigh on no figure)."""
        for sample in samples:
            if not sample.payment_id:
                continue
            n = next(p.payment_n for p in self.plan if p.index == sample.index)
            base = dict(self.targets)[sample.target]
            entry = {"payment_id": sample.payment_id, "idempotency_key": payment_key(self.params["run_id"], n),
                     "refunded": False}
            headers = dict(self.headers("payment"), **{"Idempotency-Key": refund_key(self.params["run_id"], n)})
            for _attempt in range(2):  # the refund carries its own idempotency key: safe to send again
                try:
                    answer = self.http.request("POST", join_url(base, f"/v1/payments/{sample.payment_id}/refunds"),
                                               headers)
                except HttpFailure as failure:
                    entry["detail"] = str(failure)
                    continue
                entry["refunded"] = answer.status in (200, 201)
                entry["detail"] = f"POST refunds answered {answer.describe()}"
                if answer.status != 503:
                    break
            self.refunds.append(entry)

    def run(self) -> tuple[dict[str, t.Any], str | None]:
        params = self.params
        thresholds = {name: params[name] for name in ("min_rate_ratio", "max_error_rate", "max_p95", "max_p99",
                                                      "expect_rate_limited")}
        base = {"run_id": params["run_id"], "target_rps": params["rate"], "planned_requests": len(self.plan),
                "thresholds": thresholds, "targets": [{"name": n, "url": u} for n, u in self.targets]}
        if self.check_mode:
            kinds: dict[str, int] = {}
            for planned in self.plan:
                kinds[planned.kind] = kinds.get(planned.kind, 0) + 1
            payments = [p.payment_n for p in self.plan if p.kind == "payment"]
            customer = "none"
            if self.customer_id:
                customer = "given"
            elif {"customer", "payment"} & set(kinds):
                customer = "created for the run"
            would = {"requests": len(self.plan), "by_kind": kinds, "seconds": round(len(self.plan) / params["rate"], 3),
                     "payment_keys": [payment_key(params["run_id"], n) for n in payments[:3]] + (
                         ["..."] if len(payments) > 3 else []),
                     "customer": customer}
            return dict(base, changed=False, passed=None, failed_checks=[], plan=would), None
        try:
            self.setup()
        except SetupFailed as exc:
            return dict(base, changed=False, passed=False, failed_checks=[f"setup: {exc}"]), f"setup: {exc}"
        samples, elapsed = self.drive()
        self.refund_payments(samples)
        figures = summary(samples, elapsed, params["expect_rate_limited"])
        failed = judge(figures, params)
        kept = [r["payment_id"] for r in self.refunds if not r["refunded"]]
        if kept:
            failed.append(f"refund: {len(kept)} load-test payment(s) were not refunded: {', '.join(kept)}")
        result = dict(base, **figures)
        result.update({
            "changed": self.customer_created or any(s.payment_id for s in samples),
            "duration": elapsed,
            "per_target": breakdown(samples, "target", elapsed, params["expect_rate_limited"]),
            "per_kind": breakdown(samples, "kind", elapsed, params["expect_rate_limited"]),
            "customer_id": self.customer_id,
            "payments": len([s for s in samples if s.kind == "payment"]),
            "refunds": self.refunds,
            "passed": not failed,
            "failed_checks": failed,
        })
        message = None
        if failed:
            message = (f"load test failed ({len(failed)} check(s)): " + "; ".join(failed)
                       + f". Target {params['rate']:g}/s, achieved {figures['achieved_rps']}/s, "
                       f"{figures['requests']} requests, p95 {figures['latency']['p95']} s")
        return result, message
