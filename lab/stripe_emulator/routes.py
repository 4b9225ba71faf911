"""The endpoints the emulator implements: method, path, handler, the parameters it reads and where Stripe's list lives in the SDK."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from . import (account, charges, customers, events, invoices, payment_intents, refunds, sdk_catalog, webhook_endpoints)

PAGINATION = ("limit", "starting_after", "ending_before")


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/v1/payment_intents/{id}/confirm"
    handler: Callable[..., dict[str, Any]]
    params: tuple[str, ...] = ()  # what the emulator implements (expand is always accepted)
    sdk_params: tuple[str, str] | None = None  # (module, class) of the SDK's typed params: what Stripe accepts
    extra_known: tuple[str, ...] = ()  # parameters of older API versions that Stripe still accepts

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{id\}", r"(?P<id>[A-Za-z0-9_]+)", self.template) + "$")

    def stripe_known(self) -> frozenset[str]:
        known = sdk_catalog.known_params(*self.sdk_params) if self.sdk_params else frozenset()
        return known | frozenset(self.extra_known)


def _p(name: str, cls: str) -> tuple[str, str]:
    return (f"_{name}_params", cls)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/account", account.retrieve, (), _p("account_retrieve_current", "AccountRetrieveCurrentParams")),
    Route("GET", "/v1/balance", charges.balance, (), _p("balance_retrieve", "BalanceRetrieveParams")),
    Route("GET", "/v1/balance_transactions/{id}", charges.retrieve_balance_transaction, (),
          _p("balance_transaction_retrieve", "BalanceTransactionRetrieveParams")),
    Route("GET", "/v1/payment_methods/{id}", charges.retrieve_payment_method, (),
          _p("payment_method_retrieve", "PaymentMethodRetrieveParams")),
    Route("POST", "/v1/webhook_endpoints", webhook_endpoints.create,
          ("url", "enabled_events", "api_version", "connect", "description", "metadata"),
          _p("webhook_endpoint_create", "WebhookEndpointCreateParams")),
    Route("GET", "/v1/webhook_endpoints", webhook_endpoints.list_endpoints, PAGINATION,
          _p("webhook_endpoint_list", "WebhookEndpointListParams")),
    Route("GET", "/v1/webhook_endpoints/{id}", webhook_endpoints.retrieve, (),
          _p("webhook_endpoint_retrieve", "WebhookEndpointRetrieveParams")),
    Route("POST", "/v1/webhook_endpoints/{id}", webhook_endpoints.update, ("url", "enabled_events", "description", "metadata", "disabled"),
          _p("webhook_endpoint_update", "WebhookEndpointUpdateParams")),
    Route("DELETE", "/v1/webhook_endpoints/{id}", webhook_endpoints.delete, (),
          _p("webhook_endpoint_delete", "WebhookEndpointDeleteParams")),
    Route("POST", "/v1/payment_intents", payment_intents.create, payment_intents.CREATE_PARAMS,
          _p("payment_intent_create", "PaymentIntentCreateParams"), ("payment_method_types",)),
    Route("GET", "/v1/payment_intents", payment_intents.list_intents, payment_intents.LIST_PARAMS,
          _p("payment_intent_list", "PaymentIntentListParams")),
    Route("GET", "/v1/payment_intents/{id}", payment_intents.retrieve, (),
          _p("payment_intent_retrieve", "PaymentIntentRetrieveParams")),
    Route("POST", "/v1/payment_intents/{id}", payment_intents.update, payment_intents.UPDATE_PARAMS,
          _p("payment_intent_update", "PaymentIntentUpdateParams"), ("payment_method_types",)),
    Route("POST", "/v1/payment_intents/{id}/confirm", payment_intents.confirm, payment_intents.CONFIRM_PARAMS,
          _p("payment_intent_confirm", "PaymentIntentConfirmParams"), ("payment_method_types",)),
    Route("POST", "/v1/payment_intents/{id}/cancel", payment_intents.cancel, payment_intents.CANCEL_PARAMS,
          _p("payment_intent_cancel", "PaymentIntentCancelParams")),
    Route("GET", "/v1/charges", charges.list_charges, charges.LIST_PARAMS, _p("charge_list", "ChargeListParams")),
    Route("GET", "/v1/charges/{id}", charges.retrieve, (), _p("charge_retrieve", "ChargeRetrieveParams")),
    Route("POST", "/v1/refunds", refunds.create, refunds.CREATE_PARAMS, _p("refund_create", "RefundCreateParams")),
    Route("GET", "/v1/refunds", refunds.list_refunds, refunds.LIST_PARAMS, _p("refund_list", "RefundListParams")),
    Route("GET", "/v1/refunds/{id}", refunds.retrieve, (), _p("refund_retrieve", "RefundRetrieveParams")),
    Route("POST", "/v1/customers", customers.create, customers.CREATE_PARAMS, _p("customer_create", "CustomerCreateParams")),
    Route("GET", "/v1/customers", customers.list_customers, customers.LIST_PARAMS, _p("customer_list", "CustomerListParams")),
    Route("GET", "/v1/customers/{id}", customers.retrieve, (), _p("customer_retrieve", "CustomerRetrieveParams")),
    Route("POST", "/v1/customers/{id}", customers.update, customers.UPDATE_PARAMS, _p("customer_update", "CustomerUpdateParams")),
    Route("DELETE", "/v1/customers/{id}", customers.delete, (), _p("customer_delete", "CustomerDeleteParams")),
    Route("POST", "/v1/invoices", invoices.create, invoices.INVOICE_CREATE_PARAMS, _p("invoice_create", "InvoiceCreateParams")),
    Route("GET", "/v1/invoices", invoices.list_invoices, invoices.INVOICE_LIST_PARAMS, _p("invoice_list", "InvoiceListParams")),
    Route("GET", "/v1/invoices/{id}", invoices.retrieve, (), _p("invoice_retrieve", "InvoiceRetrieveParams")),
    Route("GET", "/v1/invoices/{id}/lines", invoices.list_lines, invoices.LINES_PARAMS, _p("invoice_list_lines", "InvoiceListLinesParams")),
    Route("POST", "/v1/invoices/{id}/finalize", invoices.finalize, invoices.FINALIZE_PARAMS,
          _p("invoice_finalize_invoice", "InvoiceFinalizeInvoiceParams")),
    Route("POST", "/v1/invoices/{id}/pay", invoices.pay, invoices.PAY_PARAMS, _p("invoice_pay", "InvoicePayParams")),
    Route("POST", "/v1/invoiceitems", invoices.create_item, invoices.ITEM_CREATE_PARAMS, _p("invoice_item_create", "InvoiceItemCreateParams")),
    Route("GET", "/v1/invoiceitems", invoices.list_items, invoices.ITEM_LIST_PARAMS, _p("invoice_item_list", "InvoiceItemListParams")),
    Route("GET", "/v1/invoiceitems/{id}", invoices.retrieve_item, (), _p("invoice_item_retrieve", "InvoiceItemRetrieveParams")),
    Route("DELETE", "/v1/invoiceitems/{id}", invoices.delete_item, (), _p("invoice_item_delete", "InvoiceItemDeleteParams")),
    Route("GET", "/v1/events", events.list_events, ("type", "types", "created", *PAGINATION), _p("event_list", "EventListParams")),
    Route("GET", "/v1/events/{id}", events.retrieve, (), _p("event_retrieve", "EventRetrieveParams")),
)
_COMPILED = tuple((route, route.regex) for route in ROUTES)


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route, regex in _COMPILED:
        if route.method == method:
            found = regex.match(path)
            if found:
                return route, found.groupdict()
    return None


def summary() -> str:
    return ", ".join(route.label for route in ROUTES)
