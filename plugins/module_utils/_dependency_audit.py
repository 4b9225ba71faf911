# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Match pinned Python packages against an offline OSV advisory database (https://ossf.github.io/osv-schema/).

Only PyPI advisories are read; ECOSYSTEM and SEMVER ranges are compared as PEP 440 versions (GIT ranges name commits,
which a pin does not have). A malformed advisory raises AdvisoryError naming its file and id: a database that cannot be
read completely must not pass a release.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import typing as t

try:
    from packaging.version import InvalidVersion, Version
except ImportError:  # the module reports it with missing_required_lib
    Version = None  # type: ignore[assignment,misc]
    InvalidVersion = ValueError  # type: ignore[assignment,misc]

SEVERITIES = ("low", "medium", "high", "critical")
# GitHub's advisories say "moderate" where CVSS says "medium".
SEVERITY_ALIASES = {"moderate": "medium"}
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
ADVISORY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*===?\s*([^\s;#]+)\s*(;[^#]*)?(#.*)?\Z")
MIN_JUSTIFICATION = 20


class AdvisoryError(ValueError):
    """The database, a requirements file or a package list cannot be read as it must be."""


def normalize(name: str) -> str:
    """A package name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_version(text: str, where: str) -> t.Any:
    try:
        return Version(text)
    except InvalidVersion as exc:
        raise AdvisoryError(f"{where}: {text!r} is not a PEP 440 version") from exc


# CVSS 3.x base metrics (https://www.first.org/cvss/v3.1/specification-document, section 7.4).
CVSS_WEIGHTS = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
CVSS_PRIVILEGES = {"U": {"N": 0.85, "L": 0.62, "H": 0.27}, "C": {"N": 0.85, "L": 0.68, "H": 0.5}}


def cvss_roundup(value: float) -> float:
    scaled = int(round(value * 100000))
    return scaled / 100000.0 if scaled % 10000 == 0 else (math.floor(scaled / 10000) + 1) / 10.0


def cvss3_score(vector: str) -> float:
    """The base score of a CVSS:3.0 or 3.1 vector; ValueError when a base metric is missing or unknown."""
    parts = vector.split("/")
    if not re.fullmatch(r"CVSS:3\.[01]", parts[0]):
        raise ValueError(f"{vector!r} is not a CVSS 3 vector")
    metrics = dict(part.split(":", 1) for part in parts[1:] if ":" in part)
    scope = metrics.get("S")
    if scope not in CVSS_PRIVILEGES or metrics.get("PR") not in CVSS_PRIVILEGES[scope]:
        raise ValueError(f"{vector!r} lacks a valid S or PR metric")
    try:
        weight = {name: values[metrics[name]] for name, values in CVSS_WEIGHTS.items()}
    except KeyError as exc:
        raise ValueError(f"{vector!r} lacks a valid base metric ({exc})") from exc
    iss = 1 - (1 - weight["C"]) * (1 - weight["I"]) * (1 - weight["A"])
    impact = 6.42 * iss if scope == "U" else 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15
    exploitability = 8.22 * weight["AV"] * weight["AC"] * CVSS_PRIVILEGES[scope][metrics["PR"]] * weight["UI"]
    if impact <= 0:
        return 0.0
    total = impact + exploitability if scope == "U" else 1.08 * (impact + exploitability)
    return cvss_roundup(min(total, 10.0))


def score_severity(score: float) -> str:
    return "critical" if score >= 9.0 else "high" if score >= 7.0 else "medium" if score >= 4.0 else "low"


def severity_of(advisory: dict[str, t.Any], where: str) -> tuple[str, str]:
    """(level, where it came from): database_specific.severity, else the highest CVSS 3 score, else "unknown"."""
    label = (advisory.get("database_specific") or {}).get("severity")
    if isinstance(label, str) and label.strip():
        level = SEVERITY_ALIASES.get(label.strip().lower(), label.strip().lower())
        if level not in SEVERITIES:
            raise AdvisoryError(f"{where}: database_specific.severity {label!r} is none of {', '.join(SEVERITIES)}, moderate")
        return level, "database_specific.severity"
    scores = []
    for entry in advisory.get("severity") or []:
        if isinstance(entry, dict) and entry.get("type") == "CVSS_V3":
            try:
                scores.append(cvss3_score(str(entry.get("score", ""))))
            except ValueError as exc:
                raise AdvisoryError(f"{where}: {exc}") from exc
    if scores:
        return score_severity(max(scores)), f"CVSS_V3 {max(scores)}"
    return "unknown", "none"


def check_range(rng: t.Any, where: str) -> list[tuple[str, t.Any, str]]:
    """A range's events as (kind, parsed version or None for introduced "0", text), sorted by version."""
    if not isinstance(rng, dict) or not isinstance(rng.get("events"), list) or not rng["events"]:
        raise AdvisoryError(f"{where}: a range needs a non-empty list of events")
    events = []
    for event in rng["events"]:
        if not isinstance(event, dict) or len(event) != 1 or next(iter(event)) not in EVENT_KINDS:
            raise AdvisoryError(f"{where}: event {event!r} must have exactly one of {', '.join(EVENT_KINDS)}")
        kind, text = next(iter(event.items()))
        if not isinstance(text, str) or not text:
            raise AdvisoryError(f"{where}: event {event!r} needs a version string")
        version = None if kind == "introduced" and text == "0" else parse_version(text, where)
        events.append((kind, version, text))
    kinds = {kind for kind, dummy, dummy2 in events}
    if "introduced" not in kinds:
        raise AdvisoryError(f"{where}: a range needs an introduced event")
    if "fixed" in kinds and "last_affected" in kinds:
        raise AdvisoryError(f"{where}: a range may not have both fixed and last_affected events")
    # introduced "0" sorts first; at one version an introduced event comes before the event that ends it
    events.sort(key=lambda e: (e[1] is not None, e[1] or Version("0"), EVENT_KINDS.index(e[0])))
    return events


def in_range(version: t.Any, events: list[tuple[str, t.Any, str]]) -> bool:
    """Whether a version is affected by one range (the OSV specification's evaluation of sorted events)."""
    if any(kind == "limit" and version >= bound for kind, bound, dummy in events):
        return False
    affected = False
    for kind, bound, dummy in events:
        if kind == "introduced" and (bound is None or version >= bound):
            affected = True
        elif kind == "fixed" and version >= bound:
            affected = False
        elif kind == "last_affected" and version > bound:
            affected = False
    return affected


def check_advisory(advisory: t.Any, where: str) -> dict[str, t.Any]:
    """A validated advisory: its id, aliases, summary, severity and PyPI packages with parsed ranges."""
    if not isinstance(advisory, dict):
        raise AdvisoryError(f"{where}: an advisory must be a JSON object")
    ident = advisory.get("id")
    if not isinstance(ident, str) or not ADVISORY_ID.match(ident):
        raise AdvisoryError(f"{where}: the advisory has no valid id")
    where = f"{where} ({ident})"
    aliases = advisory.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise AdvisoryError(f"{where}: aliases must be a list of strings")
    affected = advisory.get("affected", [])
    if not isinstance(affected, list):
        raise AdvisoryError(f"{where}: affected must be a list")
    packages = []
    for entry in affected:
        package = entry.get("package") if isinstance(entry, dict) else None
        if not isinstance(package, dict) or not isinstance(package.get("name"), str) or not isinstance(package.get("ecosystem"), str):
            raise AdvisoryError(f"{where}: every affected entry needs a package with a name and an ecosystem")
        if package["ecosystem"] != "PyPI":
            continue
        ranges = entry.get("ranges", [])
        versions = entry.get("versions", [])
        if not isinstance(ranges, list) or not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise AdvisoryError(f"{where}: ranges and versions of {package['name']} must be lists")
        if any(not isinstance(rng, dict) or rng.get("type") not in ("ECOSYSTEM", "SEMVER", "GIT") for rng in ranges):
            raise AdvisoryError(f"{where}: every range of {package['name']} needs a type ECOSYSTEM, SEMVER or GIT")
        parsed = [check_range(rng, f"{where} {package['name']}") for rng in ranges if rng["type"] != "GIT"]
        packages.append({"name": normalize(package["name"]), "ranges": parsed,
                         "versions": {parse_version(v, where) for v in versions if _pep440(v)}})
    level, source = severity_of(advisory, where)
    return {"id": ident, "aliases": list(aliases), "summary": str(advisory.get("summary") or advisory.get("details") or "")[:300],
            "severity": level, "severity_source": source, "packages": packages,
            "withdrawn": bool(advisory.get("withdrawn"))}


def _pep440(text: str) -> bool:
    # an advisory's explicit version list may hold legacy versions of old uploads that no pin can be
    try:
        Version(text)
        return True
    except InvalidVersion:
        return False


def load_database(path: str) -> list[dict[str, t.Any]]:
    """Every advisory of a directory (its *.json files, recursively) or of one JSON file."""
    if os.path.isdir(path):
        files = sorted(os.path.join(top, name) for top, dirs, names in os.walk(path) for name in names if name.endswith(".json"))
    elif os.path.isfile(path):
        files = [path]
    else:
        raise AdvisoryError(f"the advisory database {path} does not exist")
    if not files:
        raise AdvisoryError(f"the advisory database {path} holds no *.json advisory")
    advisories = []
    for name in files:
        try:
            with open(name, encoding="utf-8") as stream:
                data = json.load(stream)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise AdvisoryError(f"advisory {name} cannot be read as JSON: {exc}") from exc
        for item in data if isinstance(data, list) else [data]:
            advisories.append(check_advisory(item, name))
    return advisories


def parse_requirements(lines: t.Iterable[str], source: str) -> list[dict[str, str]]:
    """The pins (name==version) of requirements lines; an unpinned requirement or an include is refused."""
    pins = []
    for number, raw in enumerate(lines, start=1):
        line = raw.split(" \\")[0].strip()
        if not line or line.startswith("#") or line.startswith("--hash"):
            continue
        match = PIN.match(line)
        if not match:
            raise AdvisoryError(f"{source}:{number}: {line[:120]!r} is not pinned as name==version")
        pins.append({"name": match.group(1), "version": match.group(3), "source": f"{source}:{number}"})
    return pins


def audit(packages: list[dict[str, str]], advisories: list[dict[str, t.Any]]) -> tuple[list[dict[str, t.Any]], list[str]]:
    """Findings for every (package, advisory) match, and the packages whose version PEP 440 cannot read."""
    findings, unreadable = [], []
    seen = set()
    for package in packages:
        name, text = normalize(package["name"]), package["version"]
        try:
            version = Version(text)
        except InvalidVersion:
            unreadable.append(f"{package['name']}=={text}")
            continue
        for advisory in advisories:
            if advisory["withdrawn"] or (name, text, advisory["id"]) in seen:
                continue
            entries = [entry for entry in advisory["packages"] if entry["name"] == name]
            if not any(version in entry["versions"] or any(in_range(version, events) for events in entry["ranges"])
                       for entry in entries):
                continue
            seen.add((name, text, advisory["id"]))
            fixed = sorted({text for entry in entries for events in entry["ranges"] for kind, dummy, text in events if kind == "fixed"})
            findings.append({"id": advisory["id"], "aliases": advisory["aliases"], "package": package["name"],
                             "installed_version": text, "fixed_versions": fixed, "severity": advisory["severity"],
                             "severity_source": advisory["severity_source"], "summary": advisory["summary"],
                             "source": package.get("source", "")})
    return findings, unreadable


def rank(level: str) -> int:
    """Severity order; an unknown severity ranks as critical, so that an unrated advisory cannot slip through."""
    return SEVERITIES.index(level) if level in SEVERITIES else len(SEVERITIES) - 1


def check_waivers(waivers: dict[str, t.Any]) -> list[str]:
    """Problems with the waivers: each names who waived, when (YYYY-MM-DD, not in the future) and why."""
    problems = []
    today = datetime.datetime.now(datetime.timezone.utc).date()
    for ident, waiver in waivers.items():
        if not isinstance(waiver, dict):
            problems.append(f"waivers.{ident} must be a dictionary with by, date and justification")
            continue
        if not str(waiver.get("by") or "").strip():
            problems.append(f"waivers.{ident} names nobody (by)")
        try:
            date = datetime.date.fromisoformat(str(waiver.get("date", "")))
            if date > today:
                problems.append(f"waivers.{ident} is dated in the future ({date})")
        except ValueError:
            problems.append(f"waivers.{ident} needs a date YYYY-MM-DD")
        justification = str(waiver.get("justification") or "").strip()
        if len(justification) < MIN_JUSTIFICATION:
            problems.append(f"waivers.{ident} is not justified: its justification has {len(justification)} characters, "
                            f"fewer than {MIN_JUSTIFICATION}")
        unknown = sorted(set(waiver) - {"by", "date", "justification"})
        if unknown:
            problems.append(f"waivers.{ident} has unknown keys {', '.join(map(str, unknown))}")
    return problems


def gate(findings: list[dict[str, t.Any]], threshold: str, waivers: dict[str, t.Any]) -> tuple[list[dict[str, t.Any]], list[dict[str, t.Any]]]:
    """(blocking, waived): findings at or above the threshold, split by whether a waiver names the advisory or an alias."""
    blocking, waived = [], []
    for finding in findings:
        if rank(finding["severity"]) < rank(threshold):
            continue
        names = [finding["id"], *finding["aliases"]]
        waiver = next((waivers[name] for name in names if name in waivers), None)
        if waiver is None:
            blocking.append(finding)
        else:
            waived.append({**finding, "waiver": waiver})
    return blocking, waived
