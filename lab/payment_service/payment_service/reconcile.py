"""python3 -m payment_service.reconcile --since EPOCH_SECONDS [--env-file PATH] [--dry-run]

Re-ingests the Stripe events created since a time, after the database was restored from a backup taken before
them: every event is stored, applied and marked processed as the webhook receiver does (an event already stored
is not stored again, a status only moves forward), and the payments and refunds the service made at Stripe
that the database lost are recreated from the events' objects. Run it from the release directory with the
service's environment (or --env-file, the colour's env file). Prints one JSON object; a second run stores
nothing new. With --dry-run it reads the database and Stripe and counts what it would do, writing nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import psycopg
import stripe

from . import payment_records, stripe_events, validation
from .config import ConfigError, Settings, load_settings
from .database import Database
from .logs import redact
from .payments import FAILED_STATUSES
from .stripe_gateway import MAX_NETWORK_RETRIES, StripeGateway

EX_SOFTWARE = 70  # sysexits.h: an unexpected failure
EX_UNAVAILABLE = 69  # Stripe could not be reached or refused the listing
EX_TEMPFAIL = 75  # the database could not be reached or refused a statement: re-run once it is back
EX_CONFIG = 78
PAGE_LIMIT = 100  # Stripe's largest page
NEEDED = ("DATABASE_URL", "STRIPE_SECRET_KEY")
# Settings the service needs to serve requests but reconcile does not use: placeholders let the service's own
# checks of every other variable run unchanged when they are absent.
UNUSED_BY_RECONCILE = {"REDIS_URL": "redis://127.0.0.1:6379/0", "PAYMENTS_API_KEY": "unused-by-reconcile"}
# payments.create calls Stripe with the key "payments:<client key>"; Stripe records it in the event's request.
PAYMENT_KEY_SCOPE = "payments:"
# The idempotency_key of a recreated payment whose client key Stripe's events do not tell (never a client's key).
UNKNOWN_KEY = "reconciled:{intent_id}"
NEW, UNPROCESSED, PROCESSED = "new", "unprocessed", "processed"


class ReconcileError(Exception):
    """A failure that ends the run: a one-line message without secrets and the exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Event:
    """A Stripe event as listed, with the JSON stored in stripe_events.payload."""

    id: str
    type: str
    livemode: bool
    created: int
    payload: str
    obj: dict[str, Any]
    request_key: str | None


@dataclass
class Summary:
    """What a run did (or, dry, would do)."""

    since: int
    events_seen: int = 0
    stored: int = 0
    already_present: int = 0
    payments_updated: int = 0
    payments_recreated: int = 0
    refunds_recreated: int = 0
    first_event: str | None = None
    last_event: str | None = None
    dry_run: bool = False
    duration_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


# --- configuration ------------------------------------------------------------------------------------------

def parse_env_file(path: str) -> dict[str, str]:
    """NAME=VALUE lines in systemd EnvironmentFile syntax as the deploy writes them (values double-quoted, a
    backslash takes the next character literally); blank lines and # comments are skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReconcileError(f"cannot read the env file {path}: {getattr(exc, 'strerror', None) or type(exc).__name__}",
                             EX_CONFIG) from None
    env: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.isidentifier():
            raise ReconcileError(f"the env file {path} line {number} is not NAME=VALUE", EX_CONFIG)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _unescape(value[1:-1])
        env[name] = value
    return env


def _unescape(quoted: str) -> str:
    out, chars = [], iter(quoted)
    for char in chars:
        out.append(next(chars, "") if char == "\\" else char)
    return "".join(out)


def load_config(environ: Mapping[str, str]) -> Settings:
    """The service's settings; DATABASE_URL and STRIPE_SECRET_KEY are required, Redis and the API keys are not."""
    missing = [name for name in NEEDED if not environ.get(name)]
    if missing:
        raise ReconcileError(f"configuration error: missing required environment variable(s): {', '.join(missing)}",
                             EX_CONFIG)
    try:
        return load_settings({**UNUSED_BY_RECONCILE, **environ})
    except ConfigError as exc:
        raise ReconcileError(f"configuration error: {exc}", EX_CONFIG) from None


# --- Stripe ---------------------------------------------------------------------------------------------------

def list_events(settings: Settings, since: int) -> list[Event]:
    """Every event created at or after since, all pages, oldest first (Stripe lists newest first)."""
    api = StripeGateway(settings).api()
    try:
        page = api.v1.events.list({"created": {"gte": since}, "limit": PAGE_LIMIT})
        listed = [_event(item.to_dict(for_json=True)) for item in page.auto_paging_iter()]
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        raise ReconcileError(f"Stripe refused STRIPE_SECRET_KEY ({type(exc).__name__}, HTTP {exc.http_status})",
                             EX_CONFIG) from None
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as exc:
        status = f", HTTP {exc.http_status}" if exc.http_status else ""
        raise ReconcileError(f"the Stripe API at {settings.stripe_api_base} could not list events after "
                             f"{MAX_NETWORK_RETRIES + 1} attempts ({type(exc).__name__}{status})", EX_UNAVAILABLE) from None
    except stripe.StripeError as exc:
        raise ReconcileError(f"Stripe refused to list events ({type(exc).__name__}, HTTP {exc.http_status}): "
                             f"{_first_line(str(exc.user_message), settings)}", EX_UNAVAILABLE) from None
    listed.reverse()
    listed.sort(key=lambda event: event.created)  # stable: events of one second keep Stripe's order
    return listed


def _event(raw: dict[str, Any]) -> Event:
    event_id, event_type, livemode, created = (raw.get(name) for name in ("id", "type", "livemode", "created"))
    data = raw.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not (isinstance(event_id, str) and isinstance(event_type, str) and isinstance(livemode, bool)
            and isinstance(created, int) and isinstance(obj, dict)):
        raise ReconcileError(f"Stripe listed an event without id, type, livemode, created or data.object: {event_id}",
                             EX_UNAVAILABLE)
    request = raw.get("request")
    key = request.get("idempotency_key") if isinstance(request, dict) else None
    return Event(event_id, event_type, livemode, created, json.dumps(raw), obj, key if isinstance(key, str) else None)


# --- the database: written through the service's own SQL, or only read in a dry run ---------------------------

@dataclass(frozen=True)
class PaymentRow:
    """A payments row recreated from a PaymentIntent the service made."""

    payment_id: str
    intent_id: str
    customer_id: str | None
    amount: int
    currency: str
    status: str
    idempotency_key: str
    created: int | None


@dataclass(frozen=True)
class RefundRow:
    """A refunds row recreated from a refund the service made."""

    refund_id: str
    payment_id: str
    stripe_refund_id: str
    amount: int
    status: str
    created: int | None


class Ledger:
    """The webhook receiver's steps (stripe_events) and the inserts of payments.py and refunds.py."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def store(self, event: Event) -> str:
        """NEW when this call stored the event, else PROCESSED or UNPROCESSED (stored, effects not applied yet)."""
        if stripe_events.store(self.database, event.id, event.type, event.livemode, event.created, event.payload):
            return NEW
        return PROCESSED if stripe_events.processed(self.database, event.id) else UNPROCESSED

    def mark_processed(self, event_id: str) -> None:
        """Record that the event's effects were applied."""
        stripe_events.mark_processed(self.database, event_id)

    def payment_of(self, intent_id: str) -> str | None:
        """The id of the stored payment of a PaymentIntent."""
        payment = payment_records.payment_by(self.database, "stripe_payment_intent_id", intent_id)
        return payment.id if payment else None

    def customer_exists(self, customer_id: str) -> bool:
        """True when the customer is stored."""
        return payment_records.customer(self.database, customer_id) is not None

    def add_payment(self, row: PaymentRow) -> bool:
        """Insert the payment; False when it (or its id or key) is already stored."""
        return payment_records.insert_payment(self.database, row.payment_id, row.intent_id, row.customer_id, row.amount,
                                              row.currency, row.status, row.idempotency_key, row.created) is not None

    def add_refund(self, row: RefundRow) -> bool:
        """Insert the refund; False when it is already stored."""
        return payment_records.insert_refund(self.database, row.refund_id, row.payment_id, row.stripe_refund_id,
                                             row.amount, row.status, row.created) is not None

    def apply(self, update: stripe_events.PaymentUpdate | None) -> bool:
        """Move the payment's status forward; False when nothing changed."""
        return stripe_events.apply(self.database, update)


class DryRunLedger(Ledger):
    """Reads the database and keeps what a real run would write in memory: the same answers, nothing written."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self._events: dict[str, str] = {}
        self._payments: dict[str, tuple[str, str]] = {}  # intent id -> (payment id, status)
        self._refunds: set[str] = set()

    def store(self, event: Event) -> str:
        if event.id in self._events:
            return self._events[event.id]
        rows = self.database.fetch(stripe_events.PROCESSED, (event.id,))
        state = NEW if not rows else PROCESSED if rows[0][0] else UNPROCESSED
        self._events[event.id] = UNPROCESSED if state == NEW else state
        return state

    def mark_processed(self, event_id: str) -> None:
        self._events[event_id] = PROCESSED

    def payment_of(self, intent_id: str) -> str | None:
        if intent_id in self._payments:
            return self._payments[intent_id][0]
        return super().payment_of(intent_id)

    def add_payment(self, row: PaymentRow) -> bool:
        if self.payment_of(row.intent_id) is not None or payment_records.payment_by(self.database, "id", row.payment_id):
            return False
        self._payments[row.intent_id] = (row.payment_id, row.status)
        return True

    def add_refund(self, row: RefundRow) -> bool:
        if row.refund_id in self._refunds or payment_records.refund_by_id(self.database, row.refund_id):
            return False
        self._refunds.add(row.refund_id)
        return True

    def apply(self, update: stripe_events.PaymentUpdate | None) -> bool:
        if update is None:
            return False
        if update.intent_id in self._payments:
            payment_id, current = self._payments[update.intent_id]
        else:
            payment = payment_records.payment_by(self.database, "stripe_payment_intent_id", update.intent_id)
            if payment is None:
                return False
            payment_id, current = payment.id, payment.status
        if not moves_forward(current, update.status):
            return False
        self._payments[update.intent_id] = (payment_id, update.status)
        return True


def moves_forward(current: str, status: str) -> bool:
    """The rule of payment_records.advance_status: a different status that does not rank below the current one."""
    rank = payment_records.STATUS_RANK
    return current != status and rank.get(current, 0) <= rank.get(status, 0)


# --- the run ------------------------------------------------------------------------------------------------

def client_keys(events: Sequence[Event]) -> dict[str, str]:
    """PaymentIntent id -> the client's Idempotency-Key, from the events of the service's create requests.

    The key is accepted only when it derives the payment id in the intent's metadata, as payments.create does."""
    keys: dict[str, str] = {}
    for event in events:
        key, payment_id = event.request_key, _metadata(event.obj).get("payment_id")
        if event.type.startswith("payment_intent.") and key and key.startswith(PAYMENT_KEY_SCOPE) \
                and payment_id == validation.derived_id("pay", key):
            keys[str(event.obj.get("id"))] = key[len(PAYMENT_KEY_SCOPE):]
    return keys


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def reconcile(ledger: Ledger, events: Sequence[Event], summary: Summary) -> None:
    """Store, recreate, apply and mark processed each event in order; counts go into summary."""
    keys = client_keys(events)
    recreated: set[str] = set()  # PaymentIntents whose payment row this run recreated
    updated: set[str] = set()
    for event in events:
        state = ledger.store(event)
        if state == NEW:
            summary.stored += 1
        else:
            summary.already_present += 1
        if event.type.startswith("payment_intent.") and _recreate_payment(ledger, event, keys, summary):
            recreated.add(str(event.obj["id"]))
        elif event.type == "refund.created":
            summary.refunds_recreated += _recreate_refund(ledger, event.obj)
        update = stripe_events.payment_update(event.type, event.obj)
        # An event stored after the restore (a webhook) was applied to no row: apply it again to the recreated one.
        if state != PROCESSED or (update is not None and update.intent_id in recreated):
            if ledger.apply(update) and update is not None and update.intent_id not in recreated:
                updated.add(update.intent_id)
        if state != PROCESSED:
            ledger.mark_processed(event.id)
    summary.events_seen = len(events)
    summary.payments_recreated = len(recreated)
    summary.payments_updated = len(updated)
    if events:
        summary.first_event, summary.last_event = events[0].id, events[-1].id


def _recreate_payment(ledger: Ledger, event: Event, keys: dict[str, str], summary: Summary) -> bool:
    """Insert the payment row of a PaymentIntent the service made (its metadata names the payment) when missing."""
    obj, intent_id = event.obj, event.obj.get("id")
    payment_id = _metadata(obj).get("payment_id")
    if not (isinstance(payment_id, str) and payment_id.startswith("pay_") and isinstance(intent_id, str)):
        return False  # made outside the service (a probe, the Dashboard): only its events are kept
    if ledger.payment_of(intent_id) is not None:
        return False
    amount, currency = obj.get("amount"), obj.get("currency")
    if not (isinstance(amount, int) and amount > 0 and isinstance(currency, str) and len(currency) == 3):
        summary.warnings.append(f"PaymentIntent {intent_id} has no usable amount or currency: payment {payment_id} "
                                "not recreated")
        return False
    customer_id = str(_metadata(obj).get("customer_id") or "") or None
    if customer_id and not ledger.customer_exists(customer_id):
        summary.warnings.append(f"payment {payment_id}: customer {customer_id} is not in the database (created after "
                                "the backup?); the payment is recreated without it")
        customer_id = None
    key = keys.get(intent_id)
    if key is None:
        key = UNKNOWN_KEY.format(intent_id=intent_id)
        summary.warnings.append(f"payment {payment_id}: Stripe's events do not tell its Idempotency-Key; "
                                f"stored as {key}")
    update = stripe_events.payment_update(event.type, obj)
    status = update.status if update else "failed" if obj.get("status") in FAILED_STATUSES else str(obj.get("status"))
    created = obj.get("created") if isinstance(obj.get("created"), int) else None
    return ledger.add_payment(PaymentRow(payment_id, intent_id, customer_id, amount,
                                         currency.lower(), status, key, created))


def _recreate_refund(ledger: Ledger, obj: dict[str, Any]) -> bool:
    """Insert the refunds row of a refund the service made (its metadata names it) when missing."""
    metadata = _metadata(obj)
    refund_id, payment_id = metadata.get("refund_id"), metadata.get("payment_id")
    stripe_id, intent_id, amount = obj.get("id"), obj.get("payment_intent"), obj.get("amount")
    if not (isinstance(refund_id, str) and refund_id.startswith("ref_") and isinstance(stripe_id, str)
            and isinstance(intent_id, str) and isinstance(amount, int)):
        return False
    if payment_id is None or ledger.payment_of(intent_id) != payment_id:
        return False  # no stored payment to attach it to
    created = obj.get("created") if isinstance(obj.get("created"), int) else None
    return ledger.add_refund(RefundRow(refund_id, payment_id, stripe_id, amount, str(obj.get("status")), created))


def run(settings: Settings, since: int, dry_run: bool) -> Summary:
    """Check the database, list the events, reconcile them; ReconcileError on any failure."""
    database = Database(settings.database_url)
    summary = Summary(since=since, dry_run=dry_run)
    try:
        database.ping()  # fail before Stripe is asked when the database cannot be reached
        events = list_events(settings, since)
        reconcile(DryRunLedger(database) if dry_run else Ledger(database), events, summary)
    except psycopg.Error as exc:
        raise ReconcileError(f"database error: {type(exc).__name__}: {_first_line(str(exc), settings)}",
                             EX_TEMPFAIL) from None
    finally:
        _close(database)
    return summary


def _close(database: Database) -> None:
    try:
        database.close()
    except psycopg.Error:
        pass  # the run's outcome is already decided


def _first_line(text: str, settings: Settings) -> str:
    lines = text.strip().splitlines()
    return redact(lines[0] if lines else "", settings.secret_values())


def _since(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError("must be epoch seconds, a non-negative integer")
    return int(value)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m payment_service.reconcile",
                                     description="Re-ingest the Stripe events created since a time, idempotently.")
    parser.add_argument("--since", required=True, type=_since, help="epoch seconds: events created at or after it")
    parser.add_argument("--env-file", help="the service's env file (systemd EnvironmentFile syntax); "
                                           "overrides the environment")
    parser.add_argument("--dry-run", action="store_true", help="count what would be done, write nothing")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run once; the summary as one JSON line on stdout, warnings and a failure's one-line reason on stderr."""
    args = _arguments(argv)
    started = time.monotonic()
    settings: Settings | None = None
    try:
        env = dict(os.environ)
        if args.env_file:
            env.update(parse_env_file(args.env_file))
        settings = load_config(env)
        summary = run(settings, args.since, args.dry_run)
    except ReconcileError as error:
        print(f"reconcile: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as exc:  # pylint: disable=broad-exception-caught  # one line, never a traceback with values
        detail = _first_line(str(exc), settings) if settings else ""
        print(f"reconcile: unexpected {type(exc).__name__}: {detail}", file=sys.stderr)
        return EX_SOFTWARE
    for warning in summary.warnings:
        print(f"reconcile: warning: {warning}", file=sys.stderr)
    summary.duration_seconds = round(time.monotonic() - started, 3)
    result = {name: value for name, value in vars(summary).items() if name != "warnings"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
