# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reads from Stripe's REST API what the smoke test made through the service: GET only, with the standard library.

Private to the payments.deploy collection: the interface may change without notice.

The smoke test never writes to Stripe itself: the service makes and refunds the payments, and this only looks
them up, so the host that runs the smoke test needs no Stripe SDK.
"""

from __future__ import annotations

import typing as t
from urllib.parse import quote

from ansible_collections.payments.deploy.plugins.module_utils._smoke_http import HttpClient, HttpResponse, join_url
from ansible_collections.payments.deploy.plugins.module_utils._smoke_report import CheckFailed

# Stripe asks for a retry with these (a lock timeout, its own trouble); a GET may always be sent again.
RETRY_STATUSES = (409, 429, 500, 502, 503, 504)


class StripeReader:
    """``GET /v1/<kind>/<id>`` with the secret key as a bearer token."""

    def __init__(self, http: HttpClient, api_base: str, api_key: str, attempts: int = 3) -> None:
        self.http = http
        self.api_base = api_base
        self.api_key = api_key
        self.attempts = attempts

    def get(self, path: str) -> HttpResponse:
        """The answer to a GET, after retrying connection errors and the statuses Stripe means to be retried."""
        url = join_url(self.api_base, path)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        response = self.http.request("GET", url, headers, retry=True)
        for delay in self.http.retry_delays[:self.attempts - 1]:
            if response.status not in RETRY_STATUSES:
                break
            self.http.sleep(delay)
            response = self.http.request("GET", url, headers, retry=True)
        return response

    def fetch(self, kind: str, object_id: str) -> dict[str, t.Any]:
        """The object, or CheckFailed saying what Stripe answered (``not found at Stripe``, ``401 ...``)."""
        path = f"/v1/{kind}/{quote(object_id, safe='')}"
        response = self.get(path)
        if response.status == 404:
            raise CheckFailed(f"{object_id} not found at Stripe (GET {path} answered {response.describe()})")
        data = response.json_object()
        if response.status != 200 or data.get("id") != object_id:
            raise CheckFailed(f"Stripe answered {response.describe()} to GET {path}")
        return data

    def payment_intent(self, intent_id: str) -> dict[str, t.Any]:
        return self.fetch("payment_intents", intent_id)

    def refund(self, refund_id: str) -> dict[str, t.Any]:
        return self.fetch("refunds", refund_id)

    def charge(self, charge_id: str) -> dict[str, t.Any]:
        return self.fetch("charges", charge_id)

    def invoice(self, invoice_id: str) -> dict[str, t.Any]:
        return self.fetch("invoices", invoice_id)
