"""``GET /v1/account``: the one account of the keys file, a fully onboarded standard account in the US."""

from __future__ import annotations

from typing import Any

from .context import Ctx

ACCOUNT_NAME = "Payments Lab"


def retrieve(ctx: Ctx) -> dict[str, Any]:
    settings = ctx.store.settings
    created = ctx.store.data["created"]
    nothing_due = {"alternatives": [], "current_deadline": None, "currently_due": [], "disabled_reason": None, "errors": [],
                   "eventually_due": [], "past_due": [], "pending_verification": []}
    address = {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None}
    return {
        "id": settings.account,
        "object": "account",
        "business_profile": {
            "annual_revenue": None, "estimated_worker_count": None, "mcc": "5734", "minority_owned_business_designation": None,
            "name": ACCOUNT_NAME, "product_description": None, "support_address": address, "support_email": None,
            "support_phone": None, "support_url": None, "url": None,
        },
        "business_type": "company",
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": "US",
        "created": created,
        "default_currency": "usd",
        "details_submitted": True,
        "email": None,
        "external_accounts": {"object": "list", "data": [], "has_more": False, "url": f"/v1/accounts/{settings.account}/external_accounts"},
        "future_requirements": dict(nothing_due),
        "metadata": {},
        "payouts_enabled": True,
        "requirements": dict(nothing_due),
        "settings": {
            "bacs_debit_payments": {"display_name": None, "service_user_number": None},
            "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
            "card_issuing": {"tos_acceptance": {"date": None, "ip": None}},
            "card_payments": {"decline_on": {"avs_failure": False, "cvc_failure": False}, "statement_descriptor_prefix": None,
                              "statement_descriptor_prefix_kana": None, "statement_descriptor_prefix_kanji": None},
            "dashboard": {"display_name": ACCOUNT_NAME, "timezone": "Etc/UTC"},
            "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": "offer"},
            "payments": {"statement_descriptor": "PAYMENTS LAB", "statement_descriptor_kana": None, "statement_descriptor_kanji": None,
                         "statement_descriptor_prefix_kana": None, "statement_descriptor_prefix_kanji": None},
            "payouts": {"debit_negative_balances": True, "schedule": {"delay_days": 2, "interval": "daily"}, "statement_descriptor": None},
            "sepa_debit_payments": {},
        },
        "tos_acceptance": {"date": created, "ip": "127.0.0.1", "user_agent": None},
        "type": "standard",
    }
