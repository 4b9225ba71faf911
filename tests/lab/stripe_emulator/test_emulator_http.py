"""The wire protocol as raw HTTP: form encoding, headers, errors, pagination, parameters."""

from __future__ import annotations

import base64
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import LAB, LIVE_KEY, RESTRICTED_LIVE_KEY, RESTRICTED_TEST_KEY, TEST_KEY, Emulator

sys.path.insert(0, str(LAB))
from stripe_emulator import forms  # noqa: E402  pylint: disable=wrong-import-position


def test_bracket_notation_parser() -> None:
    parsed = forms.parse_form("metadata[k]=v&metadata[e]=&enabled_events[]=a&enabled_events[]=b&items[0][price]=p0&items[1][price]=p1"
                              "&automatic_payment_methods[enabled]=true&payment_method_options[card][request_three_d_secure]=any&x=1&x=2")
    assert parsed == {"metadata": {"k": "v", "e": ""}, "enabled_events": ["a", "b"],
                      "items": {"0": {"price": "p0"}, "1": {"price": "p1"}}, "automatic_payment_methods": {"enabled": "true"},
                      "payment_method_options": {"card": {"request_three_d_secure": "any"}}, "x": "2"}
    assert forms.get_list(parsed, "items") == [{"price": "p0"}, {"price": "p1"}]
    assert forms.get_list(forms.parse_form("e[1]=b&e[0]=a&e[10]=c"), "e") == ["a", "b", "c"]
    for bad in ("a[b=1", "a=1&a[b]=2", "a[]=1&a[b]=2"):
        with pytest.raises(forms.StripeError):
            forms.parse_form(bad)


def test_bracket_notation_over_http(emu: Emulator) -> None:
    pairs = [("url", "https://example.com/h"), ("enabled_events[0]", "charge.succeeded"), ("enabled_events[1]", "charge.failed"),
             ("metadata[team]", "payments"), ("metadata[tier]", "1")]
    created = emu.ok("POST", "/v1/webhook_endpoints", pairs)
    assert created["enabled_events"] == ["charge.succeeded", "charge.failed"] and created["metadata"] == {"team": "payments", "tier": "1"}
    updated = emu.ok("POST", f"/v1/webhook_endpoints/{created['id']}",
                     [("enabled_events[]", "refund.created"), ("enabled_events[]", "*"), ("metadata[tier]", "")])
    assert updated["enabled_events"] == ["refund.created", "*"] and updated["metadata"] == {"team": "payments"}
    assert emu.ok("POST", f"/v1/webhook_endpoints/{created['id']}", [("metadata", "")])["metadata"] == {}
    intent = emu.ok("POST", "/v1/payment_intents", [
        ("amount", "1000"), ("currency", "USD"), ("automatic_payment_methods[enabled]", "true"),
        ("automatic_payment_methods[allow_redirects]", "never"), ("payment_method_options[card][request_three_d_secure]", "challenge"),
        ("confirm", "true"), ("payment_method", "pm_card_visa")])
    assert intent["status"] == "succeeded" and intent["currency"] == "usd"
    assert intent["automatic_payment_methods"] == {"allow_redirects": "never", "enabled": True}
    assert intent["payment_method_options"]["card"]["request_three_d_secure"] == "challenge"
    listed = emu.ok("GET", "/v1/events", [("types[]", "payment_intent.created"), ("types[]", "charge.succeeded")])
    assert sorted(e["type"] for e in listed["data"]) == ["charge.succeeded", "payment_intent.created"]


def test_request_id_and_version_headers_on_every_answer(emu: Emulator) -> None:
    for reply in (emu.request("GET", "/v1/balance"), emu.request("GET", "/v1/nothing"), emu.request("GET", "/v1/balance", key=None),
                  emu.request("POST", "/v1/customers", {"bogus": "1"})):
        assert reply.headers["request-id"].startswith("req_") and reply.headers["content-type"] == "application/json"
    pinned = emu.request("GET", "/v1/balance", headers={"Stripe-Version": "2024-06-20"})
    assert pinned.status == 200 and pinned.headers["stripe-version"] == "2024-06-20"
    bad = emu.request("GET", "/v1/balance", headers={"Stripe-Version": "1999-01-01"})
    assert bad.status == 400 and bad.error["message"] == "Invalid Stripe API version: 1999-01-01"


def test_unrecognized_url(emu: Emulator) -> None:
    reply = emu.request("GET", "/v1/xyz")
    assert reply.status == 404 and reply.error["type"] == "invalid_request_error"
    message = reply.error["message"]
    assert message.startswith("Unrecognized request URL (GET: /v1/xyz). This emulator implements: ")
    assert "POST /v1/payment_intents/{id}/confirm" in message and "GET /v1/events" in message
    assert emu.request("PUT", "/v1/customers").status == 404
    assert emu.request("DELETE", "/v1/payment_intents/pi_123").error["message"].startswith(
        "Unrecognized request URL (DELETE: /v1/payment_intents/pi_123)")


def test_key_is_masked_in_the_401(emu: Emulator) -> None:
    key = "sk_test_51Abcdefghijklmnopqrstuvabcd"
    reply = emu.request("GET", "/v1/balance", key=key)
    assert reply.status == 401 and reply.error["type"] == "invalid_request_error"
    assert reply.error["message"] == "Invalid API Key provided: sk_test_" + "*" * (len(key) - 12) + "abcd"
    assert key not in str(reply.body)
    short = emu.request("GET", "/v1/balance", key="sk_live_abc")
    assert short.error["message"] == "Invalid API Key provided: sk_live_***"
    missing = emu.request("GET", "/v1/balance", key=None)
    assert missing.status == 401 and missing.error["message"].startswith("You did not provide an API key.")
    assert "request_log_url" not in missing.error


def test_basic_auth_and_restricted_keys(emu: Emulator) -> None:
    basic = base64.b64encode(f"{TEST_KEY}:".encode()).decode()
    assert emu.request("GET", "/v1/balance", key=None, headers={"Authorization": f"Basic {basic}"}).body["livemode"] is False
    assert emu.ok("GET", "/v1/balance", key=RESTRICTED_TEST_KEY)["livemode"] is False
    assert emu.ok("GET", "/v1/balance", key=RESTRICTED_LIVE_KEY)["livemode"] is True
    assert emu.ok("POST", "/v1/customers", key=RESTRICTED_LIVE_KEY)["livemode"] is True


def test_modes_are_separate(emu: Emulator) -> None:
    live = emu.ok("POST", "/v1/customers", {"name": "live"}, key=LIVE_KEY)
    assert live["livemode"] is True
    reply = emu.request("GET", f"/v1/customers/{live['id']}")
    assert reply.status == 404 and reply.error["code"] == "resource_missing" and "exists in live mode" in reply.error["message"]
    assert emu.ok("GET", "/v1/customers")["data"] == []
    assert [c["id"] for c in emu.ok("GET", "/v1/customers", key=LIVE_KEY)["data"]] == [live["id"]]


def test_parameters_stripe_does_not_know_and_those_not_implemented(emu: Emulator) -> None:
    unknown = emu.request("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd", "colour": "blue"})
    assert unknown.status == 400 and unknown.error["code"] == "parameter_unknown" and unknown.error["param"] == "colour"
    assert unknown.error["message"] == "Received unknown parameter: colour"
    not_here = emu.request("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd", "shipping": {"name": "x"}})
    assert not_here.status == 400 and not_here.error["param"] == "shipping" and "does not implement" in not_here.error["message"]
    immutable = emu.request("POST", "/v1/webhook_endpoints", {"url": "https://e.example", "enabled_events": ["*"]})
    for name, value in (("api_version", "2024-06-20"), ("connect", "true")):
        reply = emu.request("POST", f"/v1/webhook_endpoints/{immutable.body['id']}", {name: value})
        assert reply.status == 400 and reply.error["code"] == "parameter_unknown" and reply.error["param"] == name
    assert emu.request("GET", "/v1/customers", {"email": "x@example.com", "shoe_size": "9"}).error["param"] == "shoe_size"


@pytest.mark.parametrize(("params", "param", "fragment"), [
    ({"currency": "usd"}, "amount", "Missing required param: amount."),
    ({"amount": 100}, "currency", "Missing required param: currency."),
    ({"amount": "ten", "currency": "usd"}, "amount", "Invalid integer: ten"),
    ({"amount": 10, "currency": "usd"}, "amount", "Amount must be at least $0.50 usd"),
    ({"amount": 100, "currency": "zzz"}, "currency", "Invalid currency: zzz"),
    ({"amount": 100, "currency": "usd", "confirm": "maybe"}, "confirm", "Invalid boolean: maybe"),
    ({"amount": 100, "currency": "usd", "customer": "cus_missing"}, "customer", "No such customer: 'cus_missing'"),
    ({"amount": 100, "currency": "usd", "capture_method": "manual"}, "capture_method", "not implemented by this emulator"),
    ({"amount": 100, "currency": "usd", "payment_method_types": ["klarna"]}, "payment_method_types", "is invalid"),
    ({"amount": 100, "currency": "usd", "payment_method_types": ["card"], "automatic_payment_methods": {"enabled": True}},
     "automatic_payment_methods", "You may only specify one of these parameters"),
])
def test_payment_intent_validation(emu: Emulator, params: dict, param: str, fragment: str) -> None:
    reply = emu.request("POST", "/v1/payment_intents", params)
    assert reply.status == 400 and reply.error["param"] == param and fragment in reply.error["message"], reply.body
    assert emu.ok("GET", "/v1/payment_intents")["data"] == []


def test_json_body_is_refused(emu: Emulator) -> None:
    reply = emu.request("POST", "/v1/customers", key=TEST_KEY, body=b'{"email": "a@b.c"}', headers={"Content-Type": "application/json"})
    assert reply.status == 400 and "form-encoded" in reply.error["message"]


def test_pagination_boundaries(emu: Emulator) -> None:
    ids = [emu.ok("POST", "/v1/customers", {"name": str(i)})["id"] for i in range(12)]
    newest_first = ids[::-1]
    default = emu.ok("GET", "/v1/customers")
    assert [c["id"] for c in default["data"]] == newest_first[:10] and default["has_more"] is True and default["url"] == "/v1/customers"
    rest = emu.ok("GET", "/v1/customers", {"starting_after": newest_first[9]})
    assert [c["id"] for c in rest["data"]] == newest_first[10:] and rest["has_more"] is False
    empty = emu.ok("GET", "/v1/customers", {"starting_after": newest_first[-1]})
    assert empty == {"object": "list", "data": [], "has_more": False, "url": "/v1/customers"}
    exact = emu.ok("GET", "/v1/customers", {"limit": 12})
    assert len(exact["data"]) == 12 and exact["has_more"] is False
    back = emu.ok("GET", "/v1/customers", {"ending_before": newest_first[5], "limit": 3})
    assert [c["id"] for c in back["data"]] == newest_first[2:5] and back["has_more"] is True
    top = emu.ok("GET", "/v1/customers", {"ending_before": newest_first[2], "limit": 3})
    assert [c["id"] for c in top["data"]] == newest_first[:2] and top["has_more"] is False
    assert len(emu.ok("GET", "/v1/customers", {"limit": 100})["data"]) == 12
    assert emu.ok("GET", "/v1/customers", {"limit": 1})["has_more"] is True
    for params, param in (({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "x"}, "limit"),
                          ({"starting_after": "cus_nope"}, "starting_after"), ({"ending_before": "cus_nope"}, "ending_before"),
                          ({"starting_after": ids[0], "ending_before": ids[1]}, "ending_before")):
        reply = emu.request("GET", "/v1/customers", params)
        assert reply.status == 400 and reply.error["param"] == param, (params, reply.body)


def test_created_filters(emu: Emulator) -> None:
    customer = emu.ok("POST", "/v1/customers")
    created = customer["created"]
    for params, count in (({"created[gte]": created}, 1), ({"created[gt]": created}, 0), ({"created[lte]": created}, 1),
                          ({"created[lt]": created}, 0), ({"created": created}, 1), ({"created": created + 1}, 0)):
        assert len(emu.ok("GET", "/v1/customers", params)["data"]) == count, params
    assert emu.request("GET", "/v1/customers", {"created[near]": created}).error["param"] == "created[near]"


def test_expand(emu: Emulator) -> None:
    customer = emu.ok("POST", "/v1/customers")
    intent = emu.ok("POST", "/v1/payment_intents", {"amount": 700, "currency": "usd", "customer": customer["id"], "confirm": True,
                                                    "payment_method": "pm_card_visa", "payment_method_types": ["card"]})
    full = emu.ok("GET", f"/v1/payment_intents/{intent['id']}", {"expand": ["latest_charge.balance_transaction", "customer"]})
    assert full["latest_charge"]["object"] == "charge" and full["latest_charge"]["balance_transaction"]["object"] == "balance_transaction"
    assert full["customer"]["id"] == customer["id"]
    listed = emu.ok("GET", "/v1/payment_intents", {"expand": ["data.latest_charge"]})
    assert listed["data"][0]["latest_charge"]["id"] == intent["latest_charge"]
    refund = emu.ok("POST", "/v1/refunds", {"payment_intent": intent["id"], "expand": ["charge"]})
    assert refund["charge"]["amount_refunded"] == 700
    for path, expand in ((f"/v1/payment_intents/{intent['id']}", "nonsense"), ("/v1/payment_intents", "latest_charge")):
        reply = emu.request("GET", path, {"expand": [expand]})
        assert reply.status == 400 and reply.error["message"] == f"This property cannot be expanded ({expand})."


def test_webhook_endpoint_limit_is_per_mode(spawn) -> None:
    emu = spawn("--webhook-endpoint-limit", "2")
    for _index in range(2):
        emu.ok("POST", "/v1/webhook_endpoints", {"url": "https://e.example/h", "enabled_events": ["*"]})
    over = emu.request("POST", "/v1/webhook_endpoints", {"url": "https://e.example/h", "enabled_events": ["*"]})
    assert over.status == 400 and "maximum of 2 webhook endpoints in test mode" in over.error["message"]
    assert emu.ok("POST", "/v1/webhook_endpoints", {"url": "https://e.example/h", "enabled_events": ["*"]}, key=LIVE_KEY)["livemode"]


def test_admin_health_and_reset(emu: Emulator) -> None:
    emu.ok("POST", "/v1/customers")
    health = emu.admin("GET", "health")
    assert health.status == 200 and health.body["status"] == "ok" and health.body["objects"]["customer"] == 1
    assert emu.admin("POST", "reset").body == {"reset": True}
    assert emu.admin("GET", "health").body["objects"] == {}
    assert emu.admin("GET", "nothing").status == 404


def test_concurrent_requests(emu: Emulator) -> None:
    """Parallel clients: every create lands once, and one idempotency key raced from many threads makes one object."""
    def create(index: int) -> str:
        return emu.ok("POST", "/v1/customers", {"name": f"c{index}"})["id"]

    def same_key(_index: int) -> str:
        return emu.ok("POST", "/v1/customers", {"name": "raced"}, headers={"Idempotency-Key": "race-1"})["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(create, range(40)))
        raced = set(pool.map(same_key, range(16)))
    assert len(set(made)) == 40 and len(raced) == 1
    listed = emu.ok("GET", "/v1/customers", {"limit": 100})["data"]
    assert len(listed) == 41 and {c["id"] for c in listed} == set(made) | raced
    assert len(emu.ok("GET", "/v1/events", {"limit": 100, "type": "customer.created"})["data"]) == 41
