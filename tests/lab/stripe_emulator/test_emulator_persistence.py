"""Incremental persistence and the bounded delivery log: every change reaches the state file without a stop, and the
log keeps the pending deliveries and only the newest finished ones."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from conftest import FAST_WEBHOOKS, Emulator, Receiver, wait_until

LISTS = ("/v1/events", "/v1/payment_intents", "/v1/charges", "/v1/refunds", "/v1/customers", "/v1/invoices",
         "/v1/invoiceitems", "/v1/webhook_endpoints")


def _snapshot(emu: Emulator, ids: dict[str, str]) -> dict[str, Any]:
    """What the API answers for every object and list, and the delivery log."""
    seen: dict[str, Any] = {path: emu.ok("GET", path, {"limit": 100}) for path in LISTS}
    for object_id, path in ids.items():
        reply = emu.request("GET", f"{path}/{object_id}")
        # An error names its own request (request_log_url): compare what it says.
        seen[object_id] = reply.body if reply.status == 200 else (reply.status, reply.error["code"], reply.error["message"])
    seen["balance"] = emu.ok("GET", "/v1/balance")
    seen["deliveries"] = emu.deliveries()
    return seen


def _state_has(state: Path, needle: str) -> bool:
    try:
        return needle in json.loads(state.read_text(encoding="utf-8"))["objects"]
    except (OSError, ValueError):
        return False


def test_every_change_is_saved_without_a_stop(spawn, tmp_path: Path, receiver: Receiver) -> None:
    state = tmp_path / "state.json"
    emu = spawn(*FAST_WEBHOOKS, state_file=state)
    receiver.statuses = [500]  # one failed attempt: a delivery changed by a retry
    hook = emu.ok("POST", "/v1/webhook_endpoints", {"url": receiver.url, "enabled_events": ["*"]})
    spare = emu.ok("POST", "/v1/webhook_endpoints", {"url": receiver.url, "enabled_events": ["invoice.paid"]})
    ids: dict[str, str] = {hook["id"]: "/v1/webhook_endpoints", spare["id"]: "/v1/webhook_endpoints"}
    # Everything made first and saved, then changed: a change the writer missed would be lost.
    customer = emu.ok("POST", "/v1/customers", {"email": "a@example.com"}, headers={"Idempotency-Key": "cus-1"})
    gone = emu.ok("POST", "/v1/customers", {"email": "b@example.com"})
    paid = emu.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "eur", "payment_method": "pm_card_visa",
                                                  "confirm": True, "payment_method_types": ["card"]})
    declined = emu.request("POST", "/v1/payment_intents", {"amount": 900, "currency": "eur", "confirm": True,
                                                           "payment_method": "pm_card_chargeDeclined",
                                                           "payment_method_types": ["card"]})
    assert declined.status == 402
    item = emu.ok("POST", "/v1/invoiceitems", {"customer": customer["id"], "amount": 1500, "currency": "eur"})
    dropped = emu.ok("POST", "/v1/invoiceitems", {"customer": customer["id"], "amount": 100, "currency": "eur"})
    invoice = emu.ok("POST", "/v1/invoices", {"customer": customer["id"], "pending_invoice_items_behavior": "include"})
    wait_until(lambda: _state_has(state, invoice["id"]), "the background writer to save what was made")

    emu.ok("POST", f"/v1/customers/{customer['id']}", {"name": "Renamed"})
    emu.ok("DELETE", f"/v1/customers/{gone['id']}")
    refund = emu.ok("POST", "/v1/refunds", {"payment_intent": paid["id"], "amount": 500})
    emu.ok("DELETE", f"/v1/invoiceitems/{dropped['id']}")
    emu.ok("POST", f"/v1/invoices/{invoice['id']}/pay", {"payment_method": "pm_card_visa"})
    emu.ok("POST", f"/v1/webhook_endpoints/{spare['id']}", {"disabled": True})
    ids.update({customer["id"]: "/v1/customers", gone["id"]: "/v1/customers", paid["id"]: "/v1/payment_intents",
                declined.error["payment_intent"]["id"]: "/v1/payment_intents", paid["latest_charge"]: "/v1/charges",
                refund["id"]: "/v1/refunds", item["id"]: "/v1/invoiceitems", invoice["id"]: "/v1/invoices"})
    wait_until(lambda: emu.deliveries() and all(d["status"] != "pending" for d in emu.deliveries()), "every delivery done")
    emu.ok("DELETE", f"/v1/webhook_endpoints/{hook['id']}")
    last = emu.ok("POST", "/v1/customers", {"email": "last@example.com"})  # the last change: no delivery for it
    ids[last["id"]] = "/v1/customers"
    before = _snapshot(emu, ids)
    assert any(d["attempts"] == 2 and d["status"] == "succeeded" for d in before["deliveries"])

    wait_until(lambda: _state_has(state, last["id"]), "the background writer to save the last change")
    emu.proc.send_signal(signal.SIGKILL)  # no save on exit: only what the writer saved survives
    emu.proc.wait(10)

    again = spawn(*FAST_WEBHOOKS, state_file=state)
    assert _snapshot(again, ids) == before
    replay = again.request("POST", "/v1/customers", {"email": "a@example.com"}, headers={"Idempotency-Key": "cus-1"})
    assert replay.headers["idempotent-replayed"] == "true" and replay.body["id"] == customer["id"]


def test_delivery_log_keeps_only_the_newest_finished(spawn, tmp_path: Path, receiver: Receiver) -> None:
    state = tmp_path / "state.json"
    emu = spawn(*FAST_WEBHOOKS, "--webhook-log-size", "3", state_file=state)
    emu.ok("POST", "/v1/webhook_endpoints", {"url": receiver.url, "enabled_events": ["customer.created"]})
    events = []
    for n in range(5):
        emu.ok("POST", "/v1/customers", {"email": f"c{n}@example.com"})
        wait_until(lambda n=n: len(receiver.received) == n + 1, f"delivery {n + 1}")
        events.append(json.loads(receiver.received[n]["body"])["id"])
    wait_until(lambda: emu.admin("GET", "health").body["deliveries"] == {"succeeded": 3}, "the log trimmed to 3")
    assert [d["event"] for d in emu.deliveries()] == events[:1:-1]  # newest first, the two oldest dropped
    assert emu.ok("GET", "/v1/events", {"limit": 100})["data"][-1]["id"] == events[0]  # events themselves are kept
