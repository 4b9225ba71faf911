"""The lab's SMTP sink: messages sent over SMTP are stored as files and listed by its HTTP API."""

from __future__ import annotations

import json
import smtplib
from email.message import EmailMessage
from http.client import HTTPConnection
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import SmtpSink

pytestmark = pytest.mark.timeout(60)


def send(sink: SmtpSink, recipients: list[str], subject: str, **headers: str) -> None:
    message = EmailMessage()
    message["From"] = "shop@example.com"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(f"{subject}\n")
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as client:
        client.send_message(message, from_addr="bounces@example.com")


def test_messages_are_stored_and_listed_with_filters(smtp_sink: SmtpSink) -> None:
    assert smtp_sink.messages() == []
    send(smtp_sink, ["ada@example.com"], "First", X_Payment_Id="pay_1")
    send(smtp_sink, ["grace@example.com", "Ada@Example.com"], "Zweite Nachricht: grüße", X_Payment_Id="pay_2")
    listed = smtp_sink.messages()
    assert [m["subject"] for m in listed] == ["First", "Zweite Nachricht: grüße"]  # oldest first, decoded
    first = listed[0]
    assert set(first) == {"id", "message_id", "from", "to", "subject", "headers", "received_at"}
    assert (first["from"], first["to"]) == ("bounces@example.com", ["ada@example.com"])  # the envelope
    assert first["headers"]["X-Payment-Id"] == "pay_1" and first["headers"]["From"] == "shop@example.com"
    assert first["received_at"].endswith("Z")
    assert [m["subject"] for m in smtp_sink.messages(to="ADA@example.com")] == ["First", "Zweite Nachricht: grüße"]
    assert [m["subject"] for m in smtp_sink.messages(to="grace@example.com")] == ["Zweite Nachricht: grüße"]
    assert [m["subject"] for m in smtp_sink.messages(header="x-payment-id:pay_2")] == ["Zweite Nachricht: grüße"]
    assert smtp_sink.messages(header="X-Payment-Id:pay_3") == []
    assert smtp_sink.messages(to="nobody@example.com", header="X-Payment-Id:pay_1") == []
    # Each message is a file as it was received, beside its envelope.
    stored = sorted(path.name for path in (smtp_sink.base / "mail").iterdir())
    assert stored == sorted(f"{m['id']}.{ext}" for m in listed for ext in ("eml", "json"))
    envelope = json.loads((smtp_sink.base / "mail" / f"{first['id']}.json").read_text())
    assert envelope["to"] == ["ada@example.com"]
    assert b"Subject: First" in smtp_sink.raw(first["id"])


def test_health_and_bad_requests(smtp_sink: SmtpSink) -> None:
    def get(path: str) -> tuple[int, bytes]:
        connection = HTTPConnection("127.0.0.1", smtp_sink.http_port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    assert get("/health") == (200, b'{"status": "ok"}')
    status, body = get("/messages?header=no-colon")
    assert status == 400 and b"NAME:VALUE" in body
    assert get("/messages/../../etc/passwd")[0] == 404
    assert get("/messages/0000000000000000000-00000000")[0] == 404
    assert get("/elsewhere")[0] == 404
