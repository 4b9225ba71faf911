# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render docs/checklist.md from checklist/map.yml, after checking the map (checklist/validate.py).

    python scripts/render-checklist.py           # writes docs/checklist.md
    python scripts/render-checklist.py --check   # exit 1 when docs/checklist.md is not what the map renders
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "checklist.md"


def load_validator():
    spec = importlib.util.spec_from_file_location("checklist_validate", ROOT / "checklist" / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validator = load_validator()

MEANINGS = {
    "verified": "a task or module checks it on every deploy and fails closed: the run stops (and, after the traffic switch, "
                "flips traffic back) when it does not hold. Checks that need an endpoint (TLS endpoints, Alertmanager) run "
                "when the inventory names it, as the example production inventory does.",
    "automated": "the collection does it, but nothing checks the outcome on every run.",
    "gate": "a person attests it; the role that signs is named (the attestation is recorded per run).",
    "waived": "not applicable to this service; the justification is given.",
    "planned": "not done yet; the capability that will carry it is named.",
}
INTRO = """# The checklist, item by item

<!-- Rendered by scripts/render-checklist.py from checklist/map.yml: edit the map, then run the script. -->

Every checkbox line of the production checklist ([checklist/production-checklist.txt](../checklist/production-checklist.txt))
has one entry in [checklist/map.yml](../checklist/map.yml): what carries it and which result fields of a run show it.
`checklist/validate.py` checks the map against the checklist and against the roles, playbooks and modules it names (a
task must exist under that exact name, an evidence field must be documented in the module's `RETURN`), and the test
suite fails when this page is not what the map renders. A group line's status is derived from its items: verified only
when every item is verified, else the least advanced status among them (planned, then gate, then automated); a
group's gate, plan or justification is its items'. A run's report (the `run_report` callback) reads the evidence fields
below from the run's results. Some of what a deploy does is no checklist line, for example one deploy per
environment at a time ([deploy-lock.md](deploy-lock.md)). The checklist's Emergency Contacts hold no checkbox and
are not mapped; who is told of a rollback is the inventory's notification setting ([rollback-mirror.md](rollback-mirror.md)).

| status | meaning |
|---|---|
"""


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def task_label(ref: dict) -> str:
    return f"task `{ref['task']}` in `{ref['file']}`"


def covered_cell(entry: dict) -> str:
    parts = []
    for ref in entry.get("covered_by") or []:
        if "task" in ref:
            parts.append(task_label(ref))
        elif "module" in ref:
            name = ref["module"].rsplit(".", 1)[-1]
            parts.append(f"`{name}`" + (f" check `{ref['check']}`" if ref.get("check") else ""))
        else:
            parts.append(f"test `{ref['test']}`")  # no link: tests/ is not part of the built collection
    status = entry.get("status")
    if status == "gate" and entry.get("gate"):
        parts.append(f"**gate** ({entry['gate']['role']}): {entry['gate']['reason']}")
        automated_by = entry["gate"].get("automated_by")
        if automated_by:
            parts.append(f"**checked by the run instead** where `{automated_by['variable']}` is set: the "
                         f"`{automated_by['check']}` check of `{automated_by['module']}` (no attestation then)")
    if status == "waived" and entry.get("justification"):
        parts.append(f"**waived**: {entry['justification']}")
    if status == "planned" and entry.get("planned"):
        parts.append(f"**planned**: {entry['planned']}")
    if entry.get("kind") == "group" and not parts:
        parts.append("its items below")
    if entry.get("docs"):
        parts.append(f"see [{entry['docs']}]({entry['docs']})")
    return cell("<br>".join(parts))


def evidence_cell(entry: dict) -> str:
    parts = []
    for ref in entry.get("evidence") or []:
        where = f"`{ref['module'].rsplit('.', 1)[-1]}`" if "module" in ref else task_label(ref)
        parts.append(f"{where}: " + ", ".join(f"`{field}`" for field in ref["fields"]))
    return cell("<br>".join(parts)) or "–"


def table_of(entry: dict) -> str:
    """The section whose table shows the entry: a group opens the table of its own items."""
    if entry["kind"] == "group":
        return f"{entry['section']} / {entry['text']}" if entry["section"] else entry["text"]
    return entry["section"]


def render(data: dict) -> str:
    out = [INTRO.rstrip("\n")]
    out += [f"| {status} | {meaning} |" for status, meaning in MEANINGS.items()]
    table = validator.counts(data)
    out += ["", "| status | items | groups |", "|---|---|---|"]
    out += [f"| {status} | {table['item'][status]} | {table['group'][status]} |" for status in validator.STATUSES]
    total_items, total_groups = sum(table["item"].values()), sum(table["group"].values())
    out.append(f"| all | {total_items} | {total_groups} |")
    sections: dict[str, list[dict]] = {}
    for entry in sorted(validator.entries_of(data), key=lambda entry: entry["line"]):
        sections.setdefault(table_of(entry), []).append(entry)
    for title, entries in sections.items():
        out += ["", f"## {title}", "", "| line | checklist | status | covered by | evidence |", "|---|---|---|---|---|"]
        for entry in entries:
            text = f"**{entry['text']}**" if entry["kind"] == "group" else entry["text"]
            out.append(f"| {entry['line']} | {cell(text)} | {entry['status']} | {covered_cell(entry)} | {evidence_cell(entry)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the page differs from what the map renders")
    parser.add_argument("--output", type=Path, default=PAGE, help="the page to write or check (default docs/checklist.md)")
    args = parser.parse_args(argv)
    data = validator.load_map(ROOT)
    problems = validator.validate(data, ROOT)
    if problems:
        print("checklist/map.yml has problems; nothing rendered:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    page = render(data)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        if current != page:
            print(f"{args.output} is stale: run scripts/render-checklist.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
