# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The smoke test's record: one outcome per check and target, the failure message, and secret redaction.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import re
import time
import typing as t
from contextlib import contextmanager

from ansible_collections.payments.deploy.plugins.module_utils._smoke_http import HttpFailure
from ansible_collections.payments.deploy.plugins.module_utils._stripe import redact

# The checks, in the order they run and are reported.
CHECK_NAMES = ("contract", "authentication", "admin_role", "rate_limit", "cors", "security_headers", "payment",
               "idempotency", "stripe_record", "service_record", "webhooks", "refund", "invoice", "email")
# The latency gate over every payment POST, recorded like a check on all targets together.
LATENCY = "latency"
ALL_TARGETS = "all targets"
# 13 to 19 digits, optionally grouped: what a card number looks like in text.
CARD_NUMBER = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
MAX_DETAIL_PARTS = 5


class CheckFailed(Exception):
    """A check saw something wrong; the message says what was seen."""


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn check every card number passes."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    # only what could be a card number: other long numbers (timestamps in a run_id) stay readable
    return "<card number>" if luhn_valid(re.sub(r"[ -]", "", match.group(0))) else match.group(0)


class Redactor:
    """Replaces the given secrets by their names, and anything shaped like a Stripe key, webhook secret or card
    number, in any text or nested result."""

    def __init__(self, secrets: t.Mapping[str, str | None]) -> None:
        # longest first, so that a secret containing another is replaced whole
        self.secrets = sorted(((value, name) for name, value in secrets.items() if value), key=lambda p: -len(p[0]))

    def text(self, value: t.Any) -> str:
        out = str(value)
        for secret, name in self.secrets:
            out = out.replace(secret, f"<{name}>")
        return CARD_NUMBER.sub(_mask_card, redact(out))

    def deep(self, value: t.Any) -> t.Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.deep(k): self.deep(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.deep(v) for v in value]
        return value


class Outcome:
    """What one check saw on one target: problems (failed), things that held (passed) or why it did not run."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target
        self.problems: list[str] = []
        self.seen: list[str] = []
        self.skip_reasons: list[str] = []
        self.seconds = 0.0

    def fail(self, text: str) -> None:
        self.problems.append(text)

    def ok(self, text: str) -> None:
        self.seen.append(text)

    def skip(self, reason: str) -> None:
        if reason not in self.skip_reasons:
            self.skip_reasons.append(reason)

    @contextmanager
    def guard(self, prefix: str = "") -> t.Iterator[None]:
        """Time the block and turn what goes wrong in it into a problem of this check (the next check still runs)."""
        started = time.monotonic()
        try:
            yield
        except CheckFailed as exc:
            self.fail(f"{prefix}{exc}")
        except HttpFailure as exc:
            self.fail(f"{prefix}{exc}")
        # a bug or a surprise in one check must not stop the others, above all not the refunds
        except Exception as exc:  # pylint: disable=broad-except
            self.fail(f"{prefix}unexpected {type(exc).__name__}: {exc}")
        finally:
            self.seconds += time.monotonic() - started

    @property
    def failed(self) -> bool:
        return bool(self.problems)

    @property
    def skipped(self) -> bool:
        return not self.problems and not self.seen and bool(self.skip_reasons)

    def as_dict(self) -> dict[str, t.Any]:
        record: dict[str, t.Any] = {"name": self.name, "target": self.target, "seconds": round(self.seconds, 3)}
        if self.problems:
            record.update(passed=False, detail=_joined(self.problems))
        elif self.seen or not self.skip_reasons:
            detail = _joined(self.seen)
            if self.skip_reasons:
                detail += f" (partly skipped: {'; '.join(self.skip_reasons)})"
            record.update(passed=True, detail=detail)
        else:
            reason = "; ".join(self.skip_reasons)
            record.update(skipped=reason, detail=reason)
        return record


def _joined(parts: t.Sequence[str]) -> str:
    shown = list(parts[:MAX_DETAIL_PARTS])
    if len(parts) > MAX_DETAIL_PARTS:
        shown.append(f"and {len(parts) - MAX_DETAIL_PARTS} more")
    return "; ".join(shown)


class Report:
    """Every outcome, in check order then target order."""

    def __init__(self, targets: t.Sequence[str]) -> None:
        self.targets = list(targets)
        self._outcomes: dict[tuple[str, str], Outcome] = {}

    def outcome(self, name: str, target: str) -> Outcome:
        key = (name, target)
        if key not in self._outcomes:
            self._outcomes[key] = Outcome(name, target)
        return self._outcomes[key]

    def has(self, name: str, target: str) -> bool:
        return (name, target) in self._outcomes

    def skip_everywhere(self, name: str, reason: str) -> None:
        for target in self.targets:
            self.outcome(name, target).skip(reason)

    def _ordered(self) -> list[Outcome]:
        order = {name: i for i, name in enumerate((*CHECK_NAMES, LATENCY))}
        places = {name: i for i, name in enumerate((*self.targets, ALL_TARGETS))}
        return sorted(self._outcomes.values(), key=lambda o: (order.get(o.name, 99), places.get(o.target, 99)))

    def records(self) -> list[dict[str, t.Any]]:
        return [outcome.as_dict() for outcome in self._ordered()]

    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self._ordered() if outcome.failed]

    def failed_names(self) -> list[str]:
        names: list[str] = []
        for outcome in self.failures():
            if outcome.name not in names:
                names.append(outcome.name)
        return names

    def failure_message(self) -> str:
        """``smoke test failed: authentication on app1-green: ...; webhooks on app2-green: ...``."""
        parts = [f"{o.name} on {o.target}: {_joined(o.problems)}" for o in self.failures()]
        return f"smoke test failed {len(parts)} check(s): " + "; ".join(parts)
