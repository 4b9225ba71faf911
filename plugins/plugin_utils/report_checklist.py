# Copyright: Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The production checklist's lines (checklist/map.yml) and what one run proved of each.

A ``verified`` line is verified in a run only when every evidence entry of the line matched a task result of the run
and each of those results succeeded; the line then shows the evidence values. A ``gate`` line shows the attestation or
waiver the run's production gate recorded for it, or the sign-off of its role; a gate line the run checks itself
(``gate.automated_by``, enabled by the inventory, listed in the gate record's ``automated_lines``) shows its check.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from ansible.module_utils.common.yaml import yaml_load

from ansible_collections.payments.deploy.plugins.plugin_utils.report_fields import MISSING

# The run statuses a line can have, in the order the report counts them.
RUN_STATUSES = ("verified", "done", "failed", "not run", "signed off", "attested", "not recorded", "automated", "waived",
                "planned")
DEFAULT_MAP = Path(__file__).resolve().parents[2] / "checklist" / "map.yml"


def load_map(path: str | None) -> tuple[list[dict], str | None]:
    """The lines of the map at PATH (the collection's own map when None) and why none could be read."""
    source = Path(path) if path else DEFAULT_MAP
    try:
        # libyaml's safe loader when PyYAML has it: the map is read at the start of every playbook run (about 0.1 s
        # instead of 0.8 s with the pure-Python loader)
        data = yaml_load(source.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [], f"checklist map {source} not read: {exc.__class__.__name__}: {exc}"
    lines = data.get("lines") if isinstance(data, dict) else None
    if not isinstance(lines, list):
        return [], f"checklist map {source} has no list of lines"
    return [line for line in lines if isinstance(line, dict)], None


def wanted_fields(lines: list[dict]) -> dict[str, dict[str, set[str]]]:
    """The result fields the map's evidence asks for: {"module": {fqcn: fields}, "task": {name: fields}}."""
    wanted: dict[str, dict[str, set[str]]] = {"module": {}, "task": {}}
    for line in lines:
        for entry in line.get("evidence") or []:
            for kind in ("module", "task"):
                if isinstance(entry, dict) and entry.get(kind):
                    wanted[kind].setdefault(str(entry[kind]), set()).update(str(f) for f in entry.get("fields") or [])
    return wanted


def name_pattern(name: str) -> re.Pattern:
    """A task name as Ansible shows it once templated: each {{ expression }} of NAME matches any text."""
    parts = re.split(r"\{\{.*?\}\}", name)
    return re.compile(".+?".join(re.escape(part) for part in parts), re.DOTALL)


def matches(entry: dict, result: dict) -> bool:
    if entry.get("module"):
        module = str(entry["module"])
        return result["action"] in (module, f"payments.deploy.{module}")
    name = str(entry.get("task") or "")
    if "{{" in name:
        return bool(name_pattern(name).fullmatch(result["task"]))
    return bool(name) and result["task"] == name


def judge_entry(entry: dict, results: list[dict]) -> dict:
    """What the run's results say about one evidence entry: its status and the values of its fields. A failure counts
    even when a rescue handled it: the check did not pass."""
    found = [result for result in results if matches(entry, result)]
    judged = {"evidence": entry.get("module") or entry.get("task"), "results": len(found), "values": []}
    if any(result["status"] in ("failed", "unreachable") and not result.get("ignored") for result in found):
        judged["status"] = "failed"
    elif any(result["status"] in ("ok", "changed") for result in found):
        judged["status"] = "verified"
    else:
        judged["status"] = "not run"
    for result in found:
        if result["status"] not in ("ok", "changed") or result.get("no_log"):
            continue
        kept = [item for item in result.get("items") or [] if not item.get("no_log")] or [result.get("fields", {})]
        for fields in kept:
            values = {}
            for field in entry.get("fields") or []:
                value = fields.get(field, MISSING)
                values[field] = None if value is MISSING else value
            judged["values"].append({"host": result["host"], "task": result["task"], "fields": values})
    return judged


def judge_gate(line_id: str, gate: dict, gate_record: dict) -> dict:
    """A gate line's status from the production gate's record: attested or waived (by line id), else signed off by the
    gate's role, else not recorded."""
    for kind, run_status in (("attestations", "attested"), ("waivers", "waived")):
        entry = (gate_record.get(kind) or {}).get(line_id)
        if isinstance(entry, dict):
            return {"run_status": run_status, "recorded": {kind[:-1]: entry}}
    signoff = (gate_record.get("signoffs") or {}).get(str(gate.get("role")))
    if isinstance(signoff, dict):
        return {"run_status": "signed off", "recorded": {"signoff": dict(signoff, role=gate.get("role"))}}
    return {"run_status": "not recorded", "recorded": {}}


def judge_named_check(entries: list[dict], check: str) -> str:
    """verified when the named check passed wherever it ran (in the ``checks`` lists the evidence shows) and ran at
    least once; failed when it failed anywhere; else not run (skipped everywhere, or no such result)."""
    if any(entry["status"] == "failed" for entry in entries):
        return "failed"
    outcomes = [item for entry in entries for value in entry["values"]
                for item in (value["fields"].get("checks") or []) if isinstance(item, dict) and item.get("name") == check]
    ran = [item for item in outcomes if "skipped" not in item]
    if any(item.get("passed") is not True for item in ran):
        return "failed"
    return "verified" if ran else "not run"


def judge_line(line: dict, results: list[dict], gate_record: dict) -> dict:
    """One map line with its status in this run."""
    judged = {key: line.get(key) for key in ("id", "line", "text", "section", "kind", "status")}
    judged["evidence"] = [judge_entry(entry, results) for entry in line.get("evidence") or [] if isinstance(entry, dict)]
    statuses = [entry["status"] for entry in judged["evidence"]]
    kind, status = line.get("kind", "item"), line.get("status")
    if kind == "group":
        judged["run_status"] = None
    elif status in ("verified", "automated") and statuses:
        if "failed" in statuses:
            judged["run_status"] = "failed"
        elif all(item == "verified" for item in statuses):
            judged["run_status"] = "verified" if status == "verified" else "done"
        else:
            judged["run_status"] = "not run"
    elif status == "verified":
        judged["run_status"] = "not run"
    elif status == "gate" and str(line.get("id")) in (gate_record.get("automated_lines") or []):
        # A gate the run checks itself where the inventory enables the check (gate.automated_by): the production gate
        # asked no attestation for it, so only the check's own outcome counts.
        judged["gate"] = line.get("gate") or {}
        check = str((judged["gate"].get("automated_by") or {}).get("check") or "")
        judged["run_status"] = judge_named_check(judged["evidence"], check) if check else "not run"
        judged["recorded"] = {"automated_by": judged["gate"].get("automated_by")}
    elif status == "gate":
        judged["gate"] = line.get("gate") or {}
        judged.update(judge_gate(str(line.get("id")), judged["gate"], gate_record))
    elif status == "waived":
        judged["justification"] = line.get("justification")
        judged["run_status"] = "waived"
    elif status == "planned":
        judged["planned"] = line.get("planned")
        judged["run_status"] = "planned"
    else:
        judged["run_status"] = "automated"
    return judged


# What a group line's items may have been in a run for the group to count as accounted for by people and checks
# together (a person signed, attested or waived the items no check covers): "signed off".
ACCOUNTED = ("verified", "done", "automated", "signed off", "attested", "waived")


def judge_group(group: dict, items: list[dict]) -> None:
    """A group line (a checklist heading with a checkbox of its own) is done when each of its items is: verified when
    every item was verified in this run, failed when one failed, signed off when every item was verified, done or
    automated or accounted for by a person, else not run (an item's check did not run) or not recorded. A group without items
    keeps no status."""
    statuses = [item["run_status"] for item in items]
    group["items"] = [item["id"] for item in items]
    if not statuses:
        group["run_status"] = None
    elif all(status == "verified" for status in statuses):
        group["run_status"] = "verified"
    elif "failed" in statuses:
        group["run_status"] = "failed"
    elif all(status in ACCOUNTED for status in statuses):
        group["run_status"] = "signed off"
    elif "not run" in statuses:
        group["run_status"] = "not run"
    else:
        group["run_status"] = "not recorded"


def judge(lines: list[dict], results: list[dict], gate_record: dict) -> dict:
    """Every line judged, and the count of lines per run status. GATE_RECORD is the production gate's record
    (production_gate_record: signoffs by role, attestations and waivers by line id), empty when the run set none.
    A group's items are the lines whose id extends the group's (``security.env`` holds ``security.env.hash-salt``)."""
    judged = [judge_line(line, results, gate_record) for line in lines]
    for group in (line for line in judged if line.get("kind") == "group"):
        prefix = f"{group['id']}."
        judge_group(group, [line for line in judged if line.get("kind") != "group" and str(line["id"]).startswith(prefix)])
    counts = {status: 0 for status in RUN_STATUSES}
    for line in judged:
        if line["run_status"]:
            counts[line["run_status"]] = counts.get(line["run_status"], 0) + 1
    return {"lines": judged, "counts": counts}
