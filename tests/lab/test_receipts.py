"""Receipts by email: a payment of a customer that succeeds is followed by a receipt at a real SMTP server
(the lab's aiosmtpd sink), sent in the background; failures are counted, and nothing secret is logged."""

from __future__ import annotations

import secrets
import socket
import time
from email import message_from_bytes, policy
from typing import TYPE_CHECKING, Any, Callable

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

    from conftest import Reply, RunningService, SmtpSink

pytestmark = pytest.mark.timeout(180)

SENDER = "receipts@payments.test"


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll check until it holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def customer(running: RunningService, api_key: str, email: str) -> dict[str, Any]:
    reply = running.call("POST", "/v1/customers", token=api_key, body={"email": email, "name": "Receipt Reader"})
    assert reply.status == 201, reply.body
    return dict(reply.json())


def pay(running: RunningService, api_key: str, amount: int = 50, currency: str = "usd", **body: Any) -> Reply:
    return running.call("POST", "/v1/payments", token=api_key, headers={"Idempotency-Key": secrets.token_hex(8)},
                        body={"amount": amount, "currency": currency, "payment_method": "pm_card_visa", **body})


@pytest.fixture
def mailing(launcher: Callable[..., RunningService], smtp_sink: SmtpSink,
            service_env: dict[str, str]) -> RunningService:
    """An instance that sends receipts to the sink."""
    return launcher({**service_env, "SMTP_URL": smtp_sink.url, "PAYMENTS_RECEIPT_FROM": SENDER})


def test_a_succeeded_payment_sends_a_receipt(mailing: RunningService, smtp_sink: SmtpSink, api_key: str) -> None:
    email = f"buyer-{secrets.token_hex(4)}@example.com"
    buyer = customer(mailing, api_key, email)
    payments = [pay(mailing, api_key, customer_id=buyer["id"]).json(),
                pay(mailing, api_key, amount=123456, currency="eur", customer_id=buyer["id"]).json()]
    eventually(lambda: len(smtp_sink.messages(to=email)) == 2, "two receipts at the sink")
    subjects = {}
    for payment in payments:
        [message] = smtp_sink.messages(header=f"X-Payment-Id:{payment['id']}")
        assert (message["from"], message["to"]) == (SENDER, [email])
        assert message["headers"]["X-Payment-Intent"] == payment["stripe_payment_intent_id"]
        assert message["headers"]["From"] == SENDER and message["headers"]["To"] == email
        assert message["message_id"].endswith("@payments.test>")
        subjects[payment["id"]] = message["subject"]
    assert subjects == {payments[0]["id"]: "Receipt for your payment of 0.50 USD",
                        payments[1]["id"]: "Receipt for your payment of 1234.56 EUR"}
    assert len({message["message_id"] for message in smtp_sink.messages(to=email)}) == 2
    stored = smtp_sink.messages(header=f"X-Payment-Id:{payments[0]['id']}")[0]["id"]
    body = message_from_bytes(smtp_sink.raw(stored), policy=policy.default).get_body()
    assert body is not None and payments[0]["id"] in body.get_content() and "pm_card_visa" not in body.get_content()
    assert mailing.metric('emails_total{kind="receipt",outcome="sent"}') == 2
    assert mailing.metric('emails_total{kind="receipt",outcome="failed"}') == 0
    assert mailing.metric('dependency_up{dependency="smtp"}') == 1


def test_no_receipt_without_a_customer_or_for_a_declined_card(mailing: RunningService, smtp_sink: SmtpSink,
                                                              api_key: str) -> None:
    buyer = customer(mailing, api_key, f"declined-{secrets.token_hex(4)}@example.com")
    declined = pay(mailing, api_key, customer_id=buyer["id"], payment_method="pm_card_chargeDeclinedInsufficientFunds")
    anonymous = pay(mailing, api_key)
    assert (declined.status, anonymous.status) == (402, 201)
    sent_with_customer = pay(mailing, api_key, customer_id=buyer["id"]).json()  # a marker that arrives after them
    eventually(lambda: bool(smtp_sink.messages(header=f"X-Payment-Id:{sent_with_customer['id']}")), "the receipt")
    assert [m["headers"]["X-Payment-Id"] for m in smtp_sink.messages()] == [sent_with_customer["id"]]


def test_readiness_checks_smtp_and_a_failed_receipt_is_counted(mailing: RunningService, smtp_sink: SmtpSink,
                                                               api_key: str, secret_values: list[str]) -> None:
    ready = mailing.call("GET", "/readyz")
    assert (ready.status, ready.json()["checks"]["smtp"]) == (200, "ok")
    buyer = customer(mailing, api_key, f"late-{secrets.token_hex(4)}@example.com")
    smtp_sink.proc.terminate()
    smtp_sink.proc.wait(30)
    eventually(lambda: mailing.call("GET", "/readyz").json()["checks"]["smtp"] == "error: ConnectionRefusedError",
               "readiness to report SMTP down")
    assert mailing.call("GET", "/readyz").status == 503
    assert mailing.call("GET", "/healthz/lb").status == 200  # the load balancer keeps the instance
    payment = pay(mailing, api_key, customer_id=buyer["id"])
    assert payment.status == 201  # the request never waits for the mail server
    eventually(lambda: mailing.metric('emails_total{kind="receipt",outcome="failed"}') == 1, "the failure counted")
    log = mailing.log()
    assert f"receipt for {payment.json()['id']} not sent after 3 attempt(s): ConnectionRefusedError" in log
    assert buyer["email"] not in log
    assert not [value for value in secret_values if value in log]
    assert mailing.metric('dependency_up{dependency="smtp"}') == 0


class CheckingAuthenticator:
    """Accepts one user and password (AUTH LOGIN/PLAIN) and records who logged in."""

    def __init__(self, user: str, password: str) -> None:
        self.expected = (user.encode(), password.encode())
        self.logins: list[bytes] = []

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == self.expected
        if ok:
            self.logins.append(auth_data.login)
        return AuthResult(success=ok)


class Collector:
    """An aiosmtpd handler that keeps the messages in memory."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), envelope.original_content or b""))
        return "250 OK"


def test_smtp_credentials_are_used_and_never_logged(launcher: Callable[..., RunningService],
                                                    service_env: dict[str, str], api_key: str) -> None:
    password = "pa:ss/" + secrets.token_hex(8)  # characters that must be percent-encoded in the URL
    authenticator, collector = CheckingAuthenticator("mailer", password), Collector()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(collector, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False)
    controller.start()
    try:
        encoded = password.replace(":", "%3A").replace("/", "%2F")
        running = launcher({**service_env, "SMTP_URL": f"smtp://mailer:{encoded}@127.0.0.1:{port}",
                            "PAYMENTS_RECEIPT_FROM": SENDER})
        buyer = customer(running, api_key, f"auth-{secrets.token_hex(4)}@example.com")
        payment = pay(running, api_key, customer_id=buyer["id"]).json()
        eventually(lambda: bool(collector.messages), "the receipt at the authenticating server")
        assert running.call("GET", "/readyz").json()["checks"]["smtp"] == "ok"
    finally:
        controller.stop()
    mail_from, rcpt_tos, content = collector.messages[0]
    assert (mail_from, rcpt_tos) == (SENDER, [buyer["email"]])
    assert message_from_bytes(content, policy=policy.default)["X-Payment-Id"] == payment["id"]
    assert authenticator.logins and set(authenticator.logins) == {b"mailer"}
    log = running.log()
    assert password not in log and encoded not in log


def test_smtp_url_needs_a_sender(launcher: Callable[..., RunningService], service_env: dict[str, str]) -> None:
    running = launcher({**service_env, "SMTP_URL": "smtp://127.0.0.1:25"}, wait=False)
    assert running.proc.wait(30) == 78
    assert "configuration error: PAYMENTS_RECEIPT_FROM must be set when SMTP_URL is set" in running.log()


def test_without_smtp_url_no_smtp_check(service: RunningService) -> None:
    assert "smtp" not in service.call("GET", "/readyz").json()["checks"]


def test_starttls_is_never_downgraded_to_plain_smtp(launcher: Callable[..., RunningService], smtp_sink: SmtpSink,
                                                    service_env: dict[str, str], api_key: str) -> None:
    # The sink offers no STARTTLS: a service told to use it must not send the receipt in clear instead.
    running = launcher({**service_env, "SMTP_URL": f"smtp+starttls://127.0.0.1:{smtp_sink.smtp_port}",
                        "PAYMENTS_RECEIPT_FROM": SENDER})
    assert running.call("GET", "/readyz").json()["checks"]["smtp"] == "error: SMTPNotSupportedError"
    buyer = customer(running, api_key, f"tls-{secrets.token_hex(4)}@example.com")
    assert pay(running, api_key, customer_id=buyer["id"]).status == 201
    eventually(lambda: running.metric('emails_total{kind="receipt",outcome="failed"}') == 1, "the failure counted")
    assert smtp_sink.messages() == []
