"""Webhook delivery: every event is POSTed, signed, to each matching enabled endpoint of its mode, with retries.

Deliveries are records in the state (so a restart with ``--state-file`` resumes the pending ones);
a background thread sends those that are due, outside the state lock, and retries a non-2xx answer
or a connection error with exponential backoff until the configured number of attempts. The log keeps
every pending delivery and the newest finished ones (``--webhook-log-size``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from .store import Store

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
MAX_HISTORY = 20
MAX_SENDERS = 8


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Stripe does not follow redirects: a 3xx answer is a failed delivery."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # pylint: disable=too-many-arguments,too-many-positional-arguments
        return None


# No proxy from the environment: deliveries go straight to the endpoint, as the lab's are on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def signature_header(secret: str, payload: str, timestamp: int) -> str:
    """``Stripe-Signature``: ``t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<payload>" keyed with the endpoint secret>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def endpoint_matches(endpoint: dict[str, Any], event_type: str) -> bool:
    events = endpoint["enabled_events"]
    return endpoint["status"] == "enabled" and ("*" in events or event_type in events)


def enqueue(store: Store, event: dict[str, Any]) -> None:
    """Create one delivery per matching endpoint (the caller holds the lock) and wake the sender."""
    endpoints = store.find("webhook_endpoint", event["_mode"], lambda e: endpoint_matches(e, event["type"]))
    for endpoint in reversed(endpoints):
        delivery_id = f"whdel_{event['id'][4:]}_{endpoint['id'][3:]}"
        store.put_delivery({
            "id": delivery_id, "event": event["id"], "event_type": event["type"], "endpoint": endpoint["id"],
            "url": endpoint["url"], "livemode": event["livemode"], "status": "pending", "attempts": 0,
            "last_status": None, "last_error": None, "created": event["created"], "next_attempt_at": time.time(),
            "history": [],
        })
    event["pending_webhooks"] = len(endpoints)
    store.wakeup.notify_all()


class DeliveryWorker(threading.Thread):
    """Sends due deliveries; one short-lived thread per attempt so that a slow endpoint does not hold up others."""

    def __init__(self, store: Store) -> None:
        super().__init__(name="webhook-deliveries", daemon=True)
        self.store = store
        self.stopping = threading.Event()
        self.in_flight: set[str] = set()
        self.senders = threading.BoundedSemaphore(MAX_SENDERS)

    def stop(self) -> None:
        self.stopping.set()
        with self.store.wakeup:
            self.store.wakeup.notify_all()

    def run(self) -> None:
        while not self.stopping.is_set():
            with self.store.wakeup:
                batch, wait = self._due()
                if not batch:
                    self.store.wakeup.wait(wait)
                    continue
            for job in batch:
                self.senders.acquire()
                threading.Thread(target=self._attempt, args=job, name=f"deliver-{job[0]}", daemon=True).start()

    def _due(self) -> tuple[list[tuple[str, str, str, str]], float]:
        """Deliveries to send now (marked in flight, with their signed payload inputs) and how long to sleep otherwise."""
        now = time.time()
        batch = []
        wait = 1.0
        deliveries = self.store.deliveries()
        # Only the pending ones, oldest first: the finished ones (most of the log) are never looked at again.
        for delivery in sorted((deliveries[i] for i in self.store.pending_deliveries), key=lambda d: d["next_attempt_at"]):
            if delivery["id"] in self.in_flight:
                continue
            if delivery["next_attempt_at"] > now:
                wait = min(wait, delivery["next_attempt_at"] - now)
                continue
            problem, payload, secret = self._payload(delivery)
            if problem:
                delivery.update(status="failed", last_error=problem)
                self.store.put_delivery(delivery)
                self.store.save()
                continue
            self.in_flight.add(delivery["id"])
            batch.append((delivery["id"], delivery["url"], payload, secret))
        return batch, max(wait, 0.01)

    def _payload(self, delivery: dict[str, Any]) -> tuple[str | None, str, str]:
        endpoint = self.store.lookup(delivery["endpoint"])
        event = self.store.lookup(delivery["event"])
        if endpoint is None or endpoint.get("_deleted"):
            return "the endpoint was deleted", "", ""
        if endpoint["status"] != "enabled":
            return "the endpoint was disabled", "", ""
        if event is None:
            return "the event no longer exists", "", ""
        body = self.store.render(event)
        # Stripe renders the event with the endpoint's pinned API version when it has one.
        body["api_version"] = endpoint["api_version"] or body["api_version"]
        return None, json.dumps(body, indent=2), endpoint["_secret"]

    def _attempt(self, delivery_id: str, url: str, payload: str, secret: str) -> None:
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            status, error = self._post(url, payload, secret)
        finally:
            self.senders.release()
            self._record(delivery_id, status, error, round((time.monotonic() - started) * 1000))

    def _post(self, url: str, payload: str, secret: str) -> tuple[int | None, str | None]:
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, "Accept": "*/*; q=0.5, application/xml",
                   "Cache-Control": "no-cache", "Stripe-Signature": signature_header(secret, payload, int(time.time()))}
        request = urllib.request.Request(url, data=payload.encode(), headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=self.store.settings.webhook_timeout_s) as response:
                response.read(65536)
                return response.status, None
        except urllib.error.HTTPError as exc:
            return exc.code, f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def _record(self, delivery_id: str, status: int | None, error: str | None, duration_ms: int) -> None:
        settings = self.store.settings
        with self.store.wakeup:
            self.in_flight.discard(delivery_id)
            delivery = self.store.deliveries().get(delivery_id)
            if delivery is None:  # dropped by a reset while in flight
                return
            delivery["attempts"] += 1
            delivery.update(last_status=status, last_error=error)
            delivery["history"] = (delivery["history"] + [{"at": time.time(), "status": status, "error": error,
                                                           "duration_ms": duration_ms}])[-MAX_HISTORY:]
            if status is not None and 200 <= status < 300:
                delivery["status"] = "succeeded"
                event = self.store.lookup(delivery["event"])
                if event is not None and event["pending_webhooks"] > 0:
                    event["pending_webhooks"] -= 1
            elif delivery["attempts"] >= settings.webhook_max_attempts:
                delivery["status"] = "failed"
            else:
                backoff = settings.webhook_backoff_s * 2 ** (delivery["attempts"] - 1)
                delivery["next_attempt_at"] = time.time() + min(backoff, settings.webhook_backoff_max_s)
            self.store.put_delivery(delivery)
            self.store.save()
            self.store.wakeup.notify_all()


def list_deliveries(store: Store, query: dict[str, Any]) -> dict[str, Any]:
    """The delivery log, newest first, filtered by ``event``, ``endpoint``, ``status`` or ``type``."""
    wanted = {k: query[k] for k in ("event", "endpoint", "status") if isinstance(query.get(k), str)}
    rows = [dict(d) for d in reversed(store.deliveries().values())
            if all(d[k] == v for k, v in wanted.items()) and (not isinstance(query.get("type"), str) or d["event_type"] == query["type"])]
    return {"object": "list", "data": rows, "has_more": False, "url": "/_emulator/deliveries"}
