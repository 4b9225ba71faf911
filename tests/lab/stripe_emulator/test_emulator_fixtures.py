"""Every object the emulator returns has exactly the top-level fields of the same resource in Stripe's fixtures3.json."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import LIVE_KEY, Emulator

LIST_FIELDS = {"object", "data", "has_more", "url"}


def field_problems(resource: str, obj: dict[str, Any], fixtures: dict[str, Any], allowed_extra: frozenset[str] = frozenset()) -> str:
    expected = set(fixtures[resource])
    got = set(obj)
    missing = sorted(expected - got)
    extra = sorted(got - expected - allowed_extra)
    return "" if not missing and not extra else f"{resource}: missing {missing}, not in the fixture {extra}"


def build_everything(emu: Emulator) -> dict[str, list[dict[str, Any]]]:
    """One of each object the emulator returns, gathered by the fixture resource it must match."""
    seen: dict[str, list[dict[str, Any]]] = {}

    def keep(resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        seen.setdefault(resource, []).append(obj)
        return obj

    keep("balance", emu.ok("GET", "/v1/balance"))
    keep("balance", emu.ok("GET", "/v1/balance", key=LIVE_KEY))
    keep("account", emu.ok("GET", "/v1/account"))
    created = emu.ok("POST", "/v1/webhook_endpoints", {"url": "https://example.com/hook", "enabled_events": ["*"]})
    assert created["secret"].startswith("whsec_")
    keep("webhook_endpoint", {k: v for k, v in created.items() if k != "secret"})
    keep("webhook_endpoint", emu.ok("POST", f"/v1/webhook_endpoints/{created['id']}", {"disabled": True}))
    keep("webhook_endpoint", emu.ok("GET", f"/v1/webhook_endpoints/{created['id']}"))
    customer = keep("customer", emu.ok("POST", "/v1/customers", {"email": "a@example.com", "metadata": {"k": "v"},
                                                                 "invoice_settings": {"default_payment_method": "pm_card_visa"}}))
    keep("customer", emu.ok("POST", f"/v1/customers/{customer['id']}", {"name": "Ada"}))
    intent = keep("payment_intent", emu.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd", "customer": customer["id"]}))
    keep("payment_intent", emu.ok("POST", f"/v1/payment_intents/{intent['id']}/confirm",
                                  {"payment_method": "pm_card_visa", "return_url": "https://example.com/done"}))
    declined = emu.request("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd", "payment_method": "pm_card_chargeDeclined",
                                                           "confirm": True, "payment_method_types": ["card"]})
    keep("payment_intent", declined.error["payment_intent"])
    keep("payment_method", declined.error["payment_method"])
    keep("charge", emu.ok("GET", f"/v1/charges/{declined.error['charge']}"))
    canceled = emu.ok("POST", "/v1/payment_intents", {"amount": 900, "currency": "eur", "payment_method_types": ["card"]})
    keep("payment_intent", emu.ok("POST", f"/v1/payment_intents/{canceled['id']}/cancel"))
    refund = keep("refund", emu.ok("POST", "/v1/refunds", {"payment_intent": intent["id"], "amount": 500}))
    charge = keep("charge", emu.ok("GET", f"/v1/charges/{refund['charge']}"))
    keep("balance_transaction", emu.ok("GET", f"/v1/balance_transactions/{charge['balance_transaction']}"))
    keep("balance_transaction", emu.ok("GET", f"/v1/balance_transactions/{refund['balance_transaction']}"))
    keep("payment_method", emu.ok("GET", f"/v1/payment_methods/{charge['payment_method']}"))
    invoice = keep("invoice", emu.ok("POST", "/v1/invoices", {"customer": customer["id"]}))
    item = keep("invoiceitem", emu.ok("POST", "/v1/invoiceitems", {"customer": customer["id"], "amount": 1500, "currency": "usd",
                                                                   "invoice": invoice["id"]}))
    keep("invoice", emu.ok("POST", f"/v1/invoices/{invoice['id']}/finalize"))
    keep("invoice", emu.ok("POST", f"/v1/invoices/{invoice['id']}/pay"))
    lines = emu.ok("GET", f"/v1/invoices/{invoice['id']}/lines")
    keep("list", lines)
    for line in lines["data"]:
        keep("line_item", line)
    pending = keep("invoiceitem", emu.ok("POST", "/v1/invoiceitems", {"customer": customer["id"], "amount": 100}))
    keep("deleted_invoiceitem", emu.ok("DELETE", f"/v1/invoiceitems/{pending['id']}"))
    keep("invoiceitem", emu.ok("GET", f"/v1/invoiceitems/{item['id']}"))
    keep("deleted_webhook_endpoint", emu.ok("DELETE", f"/v1/webhook_endpoints/{created['id']}"))
    gone = emu.ok("POST", "/v1/customers", {})
    keep("deleted_customer", emu.ok("DELETE", f"/v1/customers/{gone['id']}"))
    keep("deleted_customer", emu.ok("GET", f"/v1/customers/{gone['id']}"))
    for path in ("/v1/webhook_endpoints", "/v1/payment_intents", "/v1/charges", "/v1/refunds", "/v1/customers", "/v1/invoices",
                 "/v1/invoiceitems", "/v1/events"):
        keep("list", emu.ok("GET", path, {"limit": 100}))
    for event in emu.ok("GET", "/v1/events", {"limit": 100})["data"]:
        keep("event", event)
        keep(event["data"]["object"]["object"], event["data"]["object"])
    return seen


@pytest.fixture
def everything(emu: Emulator) -> dict[str, list[dict[str, Any]]]:
    return build_everything(emu)


RESOURCES = ("balance", "account", "webhook_endpoint", "deleted_webhook_endpoint", "payment_intent", "charge", "refund", "customer",
             "deleted_customer", "invoice", "invoiceitem", "deleted_invoiceitem", "line_item", "event", "payment_method",
             "balance_transaction")


@pytest.mark.parametrize("resource", RESOURCES)
def test_objects_have_the_fixture_fields(resource: str, everything: dict[str, list[dict[str, Any]]], fixtures: dict[str, Any]) -> None:
    objects = everything.get(resource)
    assert objects, f"the scenario made no {resource}"
    problems = sorted({p for obj in objects if (p := field_problems(resource, obj, fixtures))})
    assert not problems, "\n".join(problems)


def test_list_objects_have_the_list_fields(everything: dict[str, list[dict[str, Any]]]) -> None:
    lists = everything["list"]
    assert len(lists) == 9
    for obj in lists:
        assert set(obj) == LIST_FIELDS, obj.keys()
        assert obj["object"] == "list" and isinstance(obj["data"], list) and obj["url"].startswith("/v1/")


def test_every_object_kind_returned_is_covered(everything: dict[str, list[dict[str, Any]]]) -> None:
    """A new kind of object in a response must get a fixture check too."""
    assert set(everything) - {"list"} <= set(RESOURCES)


def test_secret_only_in_the_create_response(emu: Emulator) -> None:
    created = emu.ok("POST", "/v1/webhook_endpoints", {"url": "https://example.com/hook", "enabled_events": ["charge.succeeded"]})
    assert created["secret"].startswith("whsec_")
    for reply in (emu.ok("GET", f"/v1/webhook_endpoints/{created['id']}"),
                  emu.ok("POST", f"/v1/webhook_endpoints/{created['id']}", {"description": "x"}),
                  emu.ok("GET", "/v1/webhook_endpoints")["data"][0]):
        assert "secret" not in reply
        assert created["secret"] not in str(reply)


def test_fields_checker_reports_missing_and_extra(fixtures: dict[str, Any]) -> None:
    """The check above can fail: it names what is missing and what is extra."""
    obj = {k: None for k in fixtures["refund"] if k != "amount"}
    obj["bogus"] = 1
    assert field_problems("refund", obj, fixtures) == "refund: missing ['amount'], not in the fixture ['bogus']"
