# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Production sign-offs, attestations and waivers judged against the artifact and the checklist map.

Private to the payments.deploy collection: the interface may change without notice.
Every function collects problems (plain sentences) instead of raising, so that a run reports all of them at once.
"""

from __future__ import annotations

import datetime
import re
import typing as t

ROLES = ("development_lead", "security_officer", "operations_manager", "business_owner")
SIGNOFF_KEYS = ("name", "date", "reference", "sha256", "comment")
ATTESTATION_KEYS = ("by", "date", "reference", "comment")
WAIVER_KEYS = ("by", "date", "justification")
PLACEHOLDERS = frozenset(("na", "n/a", "tbd", "tba", "none", "nil", "null", "todo", "-", "?", "x", "xxx", "...",
                          "not applicable", "changeme", "change me", "later", "see above", "same", "ok", "yes"))
SHA256 = re.compile(r"[0-9a-f]{64}\Z")
# The latest time zone is UTC+14: a date alone is "in the future" only once no time zone has reached it yet.
DATE_ONLY_SLACK = datetime.timedelta(hours=14)
CLOCK_SLACK = datetime.timedelta(minutes=5)
DAY = 86400.0


def is_placeholder(text: str) -> bool:
    """An empty text, a stand-in (n/a, TBD, none...) or the blank line of a paper form (_____)."""
    folded = " ".join(text.split()).strip().lower()
    return not folded.strip("_-. ") or folded in PLACEHOLDERS


def parse_date(value: t.Any) -> datetime.datetime | datetime.date | None:
    """A date or a date and time in ISO 8601 (as text, or as YAML already turned it into); None when it is neither."""
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    if isinstance(value, datetime.date):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.date.fromisoformat(text)
        moment = datetime.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)  # no offset: read as UTC


def date_text(value: datetime.datetime | datetime.date) -> str:
    return value.isoformat()


def age_problem(value: t.Any, now: datetime.datetime, max_age_days: float | None) -> tuple[str | None, str | None]:
    """(problem, the date as ISO 8601 text): a date that is missing, not ISO 8601, in the future or too old."""
    parsed = parse_date(value)
    if parsed is None:
        return ("has no date" if value in (None, "") else "has a date that is not ISO 8601 (YYYY-MM-DD or "
                "YYYY-MM-DDTHH:MM:SS+00:00)"), None
    if isinstance(parsed, datetime.datetime):
        age = (now - parsed).total_seconds() / DAY
        future = parsed > now + CLOCK_SLACK
    else:
        age = float((now.date() - parsed).days)
        future = parsed > (now + DATE_ONLY_SLACK).date()
    if future:
        return f"is dated {date_text(parsed)}, in the future", date_text(parsed)
    if max_age_days is not None and age > max_age_days:
        return (f"is dated {date_text(parsed)}, {age:.0f} days ago, older than the {max_age_days:g} days allowed",
                date_text(parsed))
    return None, date_text(parsed)


def text_field(entry: t.Mapping[str, t.Any], key: str) -> str:
    value = entry.get(key)
    return " ".join(str(value).split()) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""


def unknown_keys(where: str, entry: t.Mapping[str, t.Any], known: t.Sequence[str]) -> list[str]:
    return [f"{where} has an unknown key {key!r} (known: {', '.join(known)})" for key in entry if key not in known]


def judge_signoff(role: str, entry: t.Any, sha256: str, now: datetime.datetime,
                  max_age_days: float) -> tuple[list[str], dict[str, t.Any]]:
    """(problems, the accepted record) of one role's sign-off."""
    where = f"the {role} sign-off"
    if not isinstance(entry, t.Mapping):
        return [f"{where} must be a mapping with name, date, reference and sha256"], {}
    problems = unknown_keys(where, entry, SIGNOFF_KEYS)
    record: dict[str, t.Any] = {key: text_field(entry, key) for key in ("name", "reference")}
    for key, label in (("name", "the name of who signs"), ("reference", "a reference (the ticket or change id)")):
        if is_placeholder(record[key]):
            problems.append(f"{where} has no {key}: it needs {label}")
    problem, record["date"] = age_problem(entry.get("date"), now, max_age_days)
    if problem:
        problems.append(f"{where} {problem}")
    signed = text_field(entry, "sha256").lower()
    if not signed:
        problems.append(f"{where} names no artifact: it needs the sha256 it approves")
    elif not SHA256.match(signed):
        problems.append(f"{where} has a sha256 that is not 64 hex characters")
    elif signed != sha256:
        problems.append(f"{where} approves another artifact (sha256 {signed[:12]}..., this deploy is {sha256[:12]}...)")
    record["sha256"] = signed
    if text_field(entry, "comment"):
        record["comment"] = text_field(entry, "comment")
    return problems, record


def judge_signoffs(signoffs: t.Any, sha256: str, now: datetime.datetime, max_age_days: float,
                   roles: t.Sequence[str] = ROLES, distinct_signers: bool = True) -> tuple[list[str], dict[str, t.Any]]:
    """(problems, accepted sign-offs by role) for every required role."""
    if not isinstance(signoffs, t.Mapping):
        return [f"the sign-offs must be a mapping of role to sign-off (roles: {', '.join(roles)})"], {}
    problems = [f"a sign-off for an unknown role {role!r} (the roles are {', '.join(roles)})"
                for role in signoffs if role not in roles]
    accepted: dict[str, t.Any] = {}
    for role in roles:
        if signoffs.get(role) is None:
            problems.append(f"the {role} has not signed off")
            continue
        found, record = judge_signoff(role, signoffs[role], sha256, now, max_age_days)
        problems.extend(found)
        if not found:
            accepted[role] = record
    if distinct_signers:
        by_name: dict[str, list[str]] = {}
        for role in roles:
            name = text_field(signoffs.get(role) or {}, "name") if isinstance(signoffs.get(role), t.Mapping) else ""
            if not is_placeholder(name):
                by_name.setdefault(name.casefold(), []).append(role)
        for shared in (found_roles for found_roles in by_name.values() if len(found_roles) > 1):
            problems.append(f"one person signed as {' and '.join(shared)}: each role needs its own signer")
            for role in shared:
                accepted.pop(role, None)
    return problems, accepted


class ChecklistMapError(ValueError):
    """The checklist map cannot be used."""


def gate_lines(document: t.Any) -> tuple[dict[str, dict[str, t.Any]], list[str]]:
    """(every line of the map by id, the ids of the items whose status is gate) of a parsed checklist map."""
    if not isinstance(document, t.Mapping) or not isinstance(document.get("lines"), list):
        raise ChecklistMapError("the checklist map must have a top-level 'lines' list")
    lines: dict[str, dict[str, t.Any]] = {}
    for index, line in enumerate(document["lines"]):
        if not isinstance(line, t.Mapping) or not isinstance(line.get("id"), (str, int)) or isinstance(line.get("id"), bool):
            raise ChecklistMapError(f"line {index + 1} of the checklist map has no id")
        ident = str(line["id"])
        if ident in lines:
            raise ChecklistMapError(f"the checklist map has the id {ident!r} twice")
        lines[ident] = dict(line)
    return lines, [ident for ident, line in lines.items() if line.get("status") == "gate" and line.get("kind", "item") == "item"]


def automated_gates(requested: t.Any, lines: t.Mapping[str, t.Mapping[str, t.Any]],
                    gated: t.Sequence[str]) -> tuple[list[str], list[str]]:
    """(problems, ids): the gate items the run checks itself, which then need no attestation. Only a gate item whose
    map entry names the check (gate.automated_by) may be one."""
    if requested is None:
        return [], []
    if not isinstance(requested, (list, tuple)):
        return ["automated_lines must be a list of checklist line ids"], []
    problems: list[str] = []
    accepted: list[str] = []
    for ident in (str(item) for item in requested):
        gate = lines.get(ident, {}).get("gate")
        if ident not in lines:
            problems.append(f"automated line {ident}: no line of the checklist map has this id (a typo?)")
        elif ident not in gated or not isinstance(gate, t.Mapping) or not isinstance(gate.get("automated_by"), t.Mapping):
            problems.append(f"automated line {ident}: the checklist map names no check that the run makes for it "
                            "(gate.automated_by): it needs an attestation or a waiver")
        elif ident not in accepted:
            accepted.append(ident)
    return problems, accepted


def justification_problem(text: str, min_length: int) -> str | None:
    if is_placeholder(text):
        return "has no justification (a placeholder such as n/a, TBD or none is not one)"
    if len(text) < min_length:
        return f"has a justification of {len(text)} characters: say why the item does not apply (at least {min_length})"
    return None


def judge_lines(attestations: t.Any, waivers: t.Any, lines: t.Mapping[str, t.Mapping[str, t.Any]], gated: t.Sequence[str],
                now: datetime.datetime, max_age_days: float,
                min_justification: int, automated: t.Sequence[str] = ()) -> tuple[list[str], list[str], dict[str, t.Any], dict[str, t.Any]]:
    """(problems, notes, accepted attestations, accepted waivers): every gate item covered by one of them, but for
    the AUTOMATED ones (checked by the run itself), for which one is accepted but not needed."""
    problems: list[str] = []
    notes: list[str] = []
    accepted: tuple[dict[str, t.Any], dict[str, t.Any]] = ({}, {})
    given: list[t.Mapping[str, t.Any]] = []
    for label, entries in (("attestations", attestations), ("waivers", waivers)):
        if entries is None:
            entries = {}
        if not isinstance(entries, t.Mapping):
            problems.append(f"the {label} must be a mapping of checklist line id to entry")
            entries = {}
        given.append({str(ident): entry for ident, entry in entries.items()})
    for kind, entries, keys in (("attestation", given[0], ATTESTATION_KEYS), ("waiver", given[1], WAIVER_KEYS)):
        for ident, entry in entries.items():
            where = f"the {kind} of checklist line {ident}"
            if ident not in lines:
                problems.append(f"{where}: no line of the checklist map has this id (a typo?)")
                continue
            if ident not in gated:
                notes.append(f"{where} is not needed: the line's status is {lines[ident].get('status', 'unset')}")
            if not isinstance(entry, t.Mapping):
                problems.append(f"{where} must be a mapping with {', '.join(keys[:3])}")
                continue
            found = unknown_keys(where, entry, keys)
            record: dict[str, t.Any] = {"by": text_field(entry, "by"), "text": str(lines[ident].get("text", ""))}
            if is_placeholder(record["by"]):
                found.append(f"{where} does not say who gives it (by)")
            problem, record["date"] = age_problem(entry.get("date"), now, max_age_days if kind == "attestation" else None)
            if problem:
                found.append(f"{where} {problem}")
            if kind == "attestation":
                record["reference"] = text_field(entry, "reference")
                if is_placeholder(record["reference"]):
                    found.append(f"{where} has no reference (the ticket, report or evidence it rests on)")
                if text_field(entry, "comment"):
                    record["comment"] = text_field(entry, "comment")
            else:
                record["justification"] = text_field(entry, "justification")
                problem = justification_problem(record["justification"], min_justification)
                if problem:
                    found.append(f"{where} {problem}")
            gate = lines[ident].get("gate")
            if isinstance(gate, t.Mapping) and gate.get("role"):
                record["gate_role"] = str(gate["role"])
            problems.extend(found)
            if not found:
                accepted[0 if kind == "attestation" else 1][ident] = record
    for ident in (ident for ident in gated if ident not in automated):
        attested, waived = ident in given[0], ident in given[1]
        if attested and waived:
            problems.append(f"checklist line {ident} is both attested and waived: keep one")
            accepted[0].pop(ident, None)
            accepted[1].pop(ident, None)
        elif not attested and not waived:
            line = lines[ident]
            gate = line.get("gate") if isinstance(line.get("gate"), t.Mapping) else {}
            who = f" (by the {gate['role']})" if gate.get("role") else ""
            problems.append(f"checklist line {ident} ({' '.join(str(line.get('text', '')).split())}) is a manual gate "
                            f"with no attestation{who} and no waiver")
    return problems, notes, accepted[0], accepted[1]
