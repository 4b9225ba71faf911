"""The Stripe API through the official SDK: the calls the service makes and a cached reachability check."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import stripe

from .checks import OK, CachedCheck, Result
from .config import Settings

if TYPE_CHECKING:
    from stripe.params import PaymentIntentCreateParams, RefundCreateParams

MAX_NETWORK_RETRIES = 2
# (connect, read) seconds per attempt. Every write carries an idempotency key, so the SDK's retries after a
# timeout are safe: Stripe replays the first result instead of charging twice.
REQUEST_TIMEOUT_S = (3.05, 20.0)
# Readiness and the dependency_up gauge: one cheap authenticated call, short timeout, no retry, the result reused
# for a few seconds so that health checks and scrapes do not turn into a stream of Stripe calls. The same result
# lets payments fail fast while Stripe is known to be unreachable.
CHECK_TIMEOUT_S = 2.0
CHECK_TTL_S = 5.0
# The check result of a Stripe that cannot be reached (refused, reset, no connection in time), as /readyz reports it:
# payments fail fast while it is fresh.
UNREACHABLE = "error: APIConnectionError"
# Connected but no answer within CHECK_TIMEOUT_S: not ready, but no reason to refuse payments without trying.
SLOW = "error: Timeout"


class StripeNotConfigured(Exception):
    """STRIPE_SECRET_KEY is not set: nothing can be sent to Stripe."""


class StripeUnavailable(Exception):
    """Stripe could not be reached or could not serve the request after the SDK's retries (the client gets a 503).

    Connection failures, timeouts, Stripe's 5xx and 429, and a key Stripe refuses (401/403): nothing the client
    could change in its request. Declines and refused parameters stay the SDK's own exceptions.
    """


class StripeKnownDown(StripeUnavailable):
    """The cached check already knows Stripe cannot be reached: the request fails at once, without the SDK's retries
    piling up (each of which would wait for its timeout while the client waits)."""


@dataclass(frozen=True)
class InvoiceRequest:
    """What an invoice is made of: one line for one stored customer."""

    customer_id: str
    email: str
    name: str
    amount: int
    currency: str
    description: str


def _client(settings: Settings, retries: int, timeout: float | tuple[float, float]) -> stripe.StripeClient:
    return stripe.StripeClient(settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base},
                               max_network_retries=retries, http_client=stripe.RequestsClient(timeout=timeout))


class StripeGateway:
    """One SDK client per process (thread-safe: the SDK keeps one HTTP session per thread)."""

    def __init__(self, settings: Settings) -> None:
        configured = bool(settings.stripe_secret_key)
        self._client = _client(settings, MAX_NETWORK_RETRIES, REQUEST_TIMEOUT_S) if configured else None
        self._check_client = _client(settings, 0, CHECK_TIMEOUT_S) if configured else None
        self._check = CachedCheck(self._call_balance, CHECK_TTL_S)

    @property
    def configured(self) -> bool:
        """True when a secret key is set."""
        return self._client is not None

    def api(self) -> stripe.StripeClient:
        """The SDK client, or StripeNotConfigured."""
        if self._client is None:
            raise StripeNotConfigured("STRIPE_SECRET_KEY is not set")
        return self._client

    def create_payment_intent(self, *, amount: int, currency: str, payment_method: str, metadata: dict[str, str],
                              description: str | None, idempotency_key: str) -> stripe.PaymentIntent:
        """Create and confirm a card PaymentIntent; raises stripe.CardError when the card is declined."""
        params: PaymentIntentCreateParams = {
            "amount": amount, "currency": currency, "payment_method": payment_method, "confirm": True,
            "payment_method_types": ["card"], "metadata": metadata}
        if description:
            params["description"] = description
        with self._calling_stripe():
            return self.api().v1.payment_intents.create(params, {"idempotency_key": idempotency_key})

    def create_refund(self, *, payment_intent: str, amount: int | None, metadata: dict[str, str],
                      idempotency_key: str) -> stripe.Refund:
        """Refund (part of) a PaymentIntent; without an amount Stripe refunds what remains."""
        params: RefundCreateParams = {"payment_intent": payment_intent, "metadata": metadata}
        if amount is not None:
            params["amount"] = amount
        with self._calling_stripe():
            return self.api().v1.refunds.create(params, {"idempotency_key": idempotency_key})

    def create_invoice(self, order: InvoiceRequest, idempotency_key: str | None) -> stripe.Invoice:
        """A Stripe customer, one invoice item, an invoice that includes it, finalized."""
        with self._calling_stripe():
            return self._invoice_steps(self.api(), order, idempotency_key)

    @staticmethod
    def _invoice_steps(api: stripe.StripeClient, order: InvoiceRequest, idempotency_key: str | None) -> stripe.Invoice:
        """The four calls; with a key, each uses '<key>:<step>' so a retry reuses what an earlier attempt made."""

        def options(step: str) -> stripe.RequestOptions:
            return {"idempotency_key": f"{idempotency_key}:{step}"} if idempotency_key else {}

        metadata = {"customer_id": order.customer_id}
        customer = api.v1.customers.create({"email": order.email, "name": order.name, "metadata": metadata},
                                           options("customer"))
        api.v1.invoice_items.create({"customer": customer.id, "amount": order.amount, "currency": order.currency,
                                     "description": order.description, "metadata": metadata}, options("item"))
        invoice = api.v1.invoices.create({"customer": customer.id, "collection_method": "send_invoice",
                                          "days_until_due": 30, "pending_invoice_items_behavior": "include",
                                          "auto_advance": False, "metadata": metadata}, options("invoice"))
        return api.v1.invoices.finalize_invoice(str(invoice.id), {"auto_advance": False}, options("finalize"))

    def check(self) -> Result:
        """('ok', '') or ('error: <class>', detail) of an authenticated GET /v1/balance, at most one call per
        CHECK_TTL_S (a connection failure of a real call counts as a check too)."""
        return self._check.result()

    @contextmanager
    def _calling_stripe(self) -> Iterator[None]:
        """Fail fast while Stripe is known to be unreachable; turn the SDK's 'cannot serve' errors into
        StripeUnavailable (other errors pass unchanged) and remember a connection failure."""
        known = self._check.fresh_result()
        if known is not None and known[0] == UNREACHABLE:
            raise StripeKnownDown("Stripe is unreachable (cached check)")
        try:
            yield
        except stripe.StripeError as exc:
            if isinstance(exc, stripe.APIConnectionError):
                self._check.record((UNREACHABLE, str(exc)))
            if isinstance(exc, (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError,
                                stripe.AuthenticationError, stripe.PermissionError)):
                raise StripeUnavailable(f"{type(exc).__name__}: {exc}") from exc
            raise

    def _call_balance(self) -> Result:
        if self._check_client is None:
            return "error: StripeNotConfigured", "STRIPE_SECRET_KEY is not set"
        try:
            self._check_client.v1.balance.retrieve()
        except stripe.APIConnectionError as exc:
            # Connected, then no answer within the check's short timeout: Stripe is slow, not unreachable. Not ready
            # (and dependency_up 0), but payments still try, with their own longer timeout and retries.
            if type(exc.__cause__).__name__ == "ReadTimeout":  # the SDK's HTTP client (requests or httpx)
                return SLOW, str(exc)
            return UNREACHABLE, str(exc)
        except Exception as exc:  # any other failure means Stripe cannot serve this instance
            return f"error: {type(exc).__name__}", str(exc)
        return OK, ""
