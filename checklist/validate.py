# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check checklist/map.yml against the production checklist and the collection's code.

    python checklist/validate.py            # prints every problem, exits 1 when there is one

Each check_* function takes the loaded map (and the collection's root where it reads code) and returns a list of
problems, so that a test can feed it a broken copy and see the one rule it breaks.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MAP_FILE = "checklist/map.yml"
SOURCE = "checklist/production-checklist.txt"
STATUSES = ("verified", "automated", "gate", "waived", "planned")
KINDS = ("group", "item")
GATE_ROLES = ("development_lead", "security_officer", "operations_manager", "business_owner", "attestation")
ENTRY_KEYS = {"id", "line", "text", "section", "kind", "status", "covered_by", "evidence", "gate", "justification", "planned",
              "docs"}
REQUIRED_KEYS = ("id", "line", "text", "section", "kind", "status", "covered_by", "evidence")
# A group is only as far along as its least advanced item (waived items do not count).
STATUS_RANK = {"planned": 0, "gate": 1, "automated": 2, "verified": 3}
ID_PATTERN = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*\Z")
CHECKBOX = re.compile(r"^(?P<indent>\s*)(?:[-*]|\d+\.)\s+\[ \]\s+(?P<rest>.*?)\s*$")
LABEL = re.compile(r"^(?P<indent>\s*)[-*]\s+\*\*(?P<label>[^*]+)\*\*\s*$")
HEADING = re.compile(r"^(?P<level>#{2,3})\s+(?P<title>.+?)\s*$")
TASK_LISTS = ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")
FAIL_ACTIONS = ("ansible.builtin.fail", "ansible.legacy.fail", "fail")


class AnyTagLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A SafeLoader that reads Ansible's own tags (!unsafe, !vault) as plain values."""


def construct_tagged(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> object:
    del tag_suffix
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


AnyTagLoader.add_multi_constructor("!", construct_tagged)


@functools.lru_cache(maxsize=None)
def load_yaml(path: Path) -> object:
    """A YAML file, read once per process (the map names the same task files many times); callers must not change it."""
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=AnyTagLoader)  # nosec B506: a SafeLoader subclass


def heading_title(title: str) -> str:
    """The words of a heading without its leading emoji (which the checklist holds as mis-decoded bytes)."""
    words = title.split()
    while words and not words[0].isascii():
        words.pop(0)
    return " ".join(words)


def plain_text(rest: str) -> str:
    return rest.replace("**", "").strip()


def parse_checklist(path: Path) -> list[dict]:
    """Every line holding a checkbox: {line, text, kind, section, group_line}.

    A checkbox line at the left margin whose text is bold is a group; the indented checkbox lines below it are its
    items. A bold bullet without a checkbox (``- **Daily**``) only names the section of the items below it.
    """
    found: list[dict] = []
    headings = {2: "", 3: ""}
    group: dict | None = None
    label = ""
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        heading = HEADING.match(raw)
        if heading:
            level = len(heading.group("level"))
            headings[level] = heading_title(heading.group("title"))
            if level == 2:
                headings[3] = ""
            group, label = None, ""
            continue
        path_parts = [part for part in (headings[2], headings[3]) if part]
        bullet = LABEL.match(raw)
        if bullet and not bullet.group("indent"):
            group, label = None, bullet.group("label").strip()
            continue
        box = CHECKBOX.match(raw)
        if not box:
            continue
        text = plain_text(box.group("rest"))
        top = not box.group("indent")
        if top and box.group("rest").startswith("**"):
            group = {"line": number, "text": text}
            found.append({"line": number, "text": text, "kind": "group", "section": " / ".join(path_parts), "group_line": None})
            continue
        if top:
            group = None
        owner = group["text"] if group else label
        found.append({"line": number, "text": text, "kind": "item", "section": " / ".join(path_parts + ([owner] if owner else [])),
                      "group_line": group["line"] if group else None})
    return found


def entries_of(data: object) -> list[dict]:
    if isinstance(data, dict) and isinstance(data.get("lines"), list):
        return [entry for entry in data["lines"] if isinstance(entry, dict)]
    return []


def where(entry: dict) -> str:
    return f"{entry.get('id', '?')} (line {entry.get('line', '?')})"


def check_document(data: object) -> list[str]:
    """The top of the map: schema 1, the source file, a list of line entries with the known keys."""
    if not isinstance(data, dict):
        return ["the map must be a mapping with schema, source and lines"]
    problems = []
    if data.get("schema") != 1:
        problems.append(f"schema must be 1 (got {data.get('schema')!r})")
    if data.get("source") != SOURCE:
        problems.append(f"source must be {SOURCE} (got {data.get('source')!r})")
    lines = data.get("lines")
    if not isinstance(lines, list):
        return problems + ["lines must be a list"]
    for index, entry in enumerate(lines):
        if not isinstance(entry, dict):
            problems.append(f"lines[{index}] must be a mapping")
            continue
        missing = [key for key in REQUIRED_KEYS if key not in entry]
        if missing:
            problems.append(f"{where(entry)} lacks {', '.join(missing)}")
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown:
            problems.append(f"{where(entry)} has unknown keys {', '.join(unknown)}")
        for key in ("covered_by", "evidence"):
            if key in entry and not isinstance(entry[key], list):
                problems.append(f"{where(entry)}: {key} must be a list")
    return problems


def check_coverage(data: object, checklist: list[dict]) -> list[str]:
    """Every checkbox line mapped exactly once, with its own text, kind and section; nothing mapped that is not one."""
    problems = []
    by_line = {line["line"]: line for line in checklist}
    seen: dict[int, str] = {}
    for entry in entries_of(data):
        number = entry.get("line")
        if not isinstance(number, int) or number not in by_line:
            problems.append(f"{where(entry)}: line {number!r} of {SOURCE} holds no checkbox")
            continue
        if number in seen:
            problems.append(f"line {number} is mapped twice: {seen[number]} and {entry.get('id')}")
            continue
        seen[number] = str(entry.get("id"))
        expected = by_line[number]
        for key in ("text", "kind", "section"):
            if entry.get(key) != expected[key]:
                problems.append(f"{where(entry)}: {key} is {entry.get(key)!r}, the checklist says {expected[key]!r}")
    for number in sorted(set(by_line) - set(seen)):
        problems.append(f"line {number} ({by_line[number]['text']}) is not mapped")
    return problems


def check_ids(data: object) -> list[str]:
    problems = []
    seen: set[str] = set()
    for entry in entries_of(data):
        ident = entry.get("id")
        if not isinstance(ident, str) or not ID_PATTERN.match(ident):
            problems.append(f"{where(entry)}: id must be a lower-case slug of letters, digits, dots and hyphens")
        elif ident in seen:
            problems.append(f"id {ident} is used twice")
        seen.add(str(ident))
    return problems


def derived_status(statuses: list[str]) -> str:
    counted = [status for status in statuses if status != "waived"]
    if not counted:
        return "waived"
    return min(counted, key=lambda status: STATUS_RANK.get(status, -1))


def check_statuses(data: object, checklist: list[dict]) -> list[str]:
    """Known statuses; the reason each status needs; a group's status derived from its items."""
    problems = []
    entries = entries_of(data)
    for entry in entries:
        status = entry.get("status")
        if status not in STATUSES:
            problems.append(f"{where(entry)}: unknown status {status!r} (known: {', '.join(STATUSES)})")
            continue
        if entry.get("kind") not in KINDS:
            problems.append(f"{where(entry)}: kind must be group or item")
        # A group's status is derived: its items carry the gate, the justification or the plan.
        item = entry.get("kind") != "group"
        for key, needed_by in (("justification", "waived"), ("planned", "planned")):
            has_text = isinstance(entry.get(key), str) and bool(entry[key].strip())
            if item and status == needed_by and not has_text:
                problems.append(f"{where(entry)}: a {needed_by} line needs a `{key}`")
            if status != needed_by and key in entry:
                problems.append(f"{where(entry)}: `{key}` belongs to {needed_by} lines only")
        gate = entry.get("gate")
        if status == "gate" and (item or gate is not None):
            if not isinstance(gate, dict) or gate.get("role") not in GATE_ROLES or not str(gate.get("reason") or "").strip():
                problems.append(f"{where(entry)}: a gate line needs gate: {{role: {'|'.join(GATE_ROLES)}, reason: ...}}")
            elif "automated_by" in gate:
                problems.extend(automated_by_problems(entry, gate["automated_by"]))
        elif status != "gate" and gate is not None:
            problems.append(f"{where(entry)}: `gate` belongs to gate lines only")
    by_line = {entry.get("line"): entry for entry in entries}
    for group in (line for line in checklist if line["kind"] == "group"):
        items = [by_line[line["line"]].get("status") for line in checklist
                 if line["group_line"] == group["line"] and line["line"] in by_line]
        entry = by_line.get(group["line"])
        if entry and items and entry.get("status") in STATUSES and all(item in STATUSES for item in items):
            expected = derived_status(items)
            if entry.get("status") != expected:
                problems.append(f"{where(entry)}: a group's status is derived from its items: {expected}, not {entry.get('status')}")
    return problems


def automated_by_problems(entry: dict, automated_by: object) -> list[str]:
    """A gate the run checks itself where the inventory sets a variable: it names the variable, and the module and
    check whose outcome the report shows, which must be one of the line's evidence modules."""
    if not isinstance(automated_by, dict) or set(automated_by) != {"variable", "module", "check"}:
        return [f"{where(entry)}: gate.automated_by needs variable, module and check (and nothing else)"]
    problems = []
    if not re.fullmatch(r"[a-z][a-z0-9_]*", str(automated_by["variable"])):
        problems.append(f"{where(entry)}: gate.automated_by.variable must be a variable name")
    evidence = [item for item in entry.get("evidence") or [] if isinstance(item, dict)]
    modules = {str(item.get("module")) for item in evidence}
    fields = {field for item in evidence for field in item.get("fields") or []}
    if automated_by["module"] not in modules or "checks" not in fields:
        problems.append(f"{where(entry)}: gate.automated_by.module must be an evidence module of the line whose fields hold checks")
    return problems


def tasks_by_name(path: Path) -> dict[str, dict]:
    """Every task (and play) of a task file or playbook by its raw name, blocks, rescues and always sections included."""
    found: dict[str, dict] = {}

    def walk(node: object) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            if isinstance(node.get("name"), str):
                found.setdefault(node["name"], node)
            for key in TASK_LISTS:
                walk(node.get(key))

    walk(load_yaml(path))
    return found


def task_names(path: Path) -> set[str]:
    return set(tasks_by_name(path))


@functools.lru_cache(maxsize=None)
def module_docs(root: Path, fqcn: str) -> tuple[dict, dict] | None:
    """(DOCUMENTATION, RETURN) of payments.deploy.NAME, or None when there is no such module."""
    prefix = "payments.deploy."
    name = fqcn[len(prefix):] if isinstance(fqcn, str) and fqcn.startswith(prefix) else ""
    path = root / "plugins" / "modules" / f"{name}.py"
    if not name or not path.is_file():
        return None
    docs = {"DOCUMENTATION": {}, "RETURN": {}}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in docs and isinstance(node.value, ast.Constant):
                docs[node.targets[0].id] = yaml.safe_load(node.value.value) or {}
    return docs["DOCUMENTATION"], docs["RETURN"]


def return_keys(returns: dict, prefix: str = "") -> set[str]:
    """The documented result keys, nested ones dotted (``answers.version``) through ``contains``."""
    keys: set[str] = set()
    for key, spec in (returns or {}).items():
        keys.add(prefix + key)
        if isinstance(spec, dict) and isinstance(spec.get("contains"), dict):
            keys |= return_keys(spec["contains"], f"{prefix}{key}.")
    return keys


def module_checks(root: Path, fqcn: str, documentation: dict, returns: dict) -> set[str]:
    """What `check:` may name: smoke_test's checks, the bake's metrics for release_analysis, else a result key."""
    if fqcn == "payments.deploy.smoke_test":
        choices = documentation.get("options", {}).get("checks", {}).get("choices", [])
        return set(choices) | {"latency"}
    if fqcn == "payments.deploy.release_analysis":
        defaults = load_yaml(root / "roles" / "bake" / "defaults" / "main.yml") or {}
        return set(defaults.get("bake_metric_names", []))
    return return_keys(returns)


def task_file_problem(root: Path, name: object, file: object) -> str | None:
    if not isinstance(name, str) or not isinstance(file, str):
        return "a task needs its exact name and its file"
    if not re.match(r"^(roles/[a-z0-9_]+/tasks/[A-Za-z0-9_./-]+|playbooks/[A-Za-z0-9_./-]+)\.yml\Z", file):
        return f"task file {file} is neither roles/ROLE/tasks/*.yml nor playbooks/*.yml"
    if not (root / file).is_file():
        return f"task file {file} does not exist"
    if name not in task_names(root / file):
        return f"no task named {name!r} in {file}"
    return None


def check_references(data: object, root: Path) -> list[str]:
    """covered_by names real tasks, modules (and their checks) and tests; a verified line names a task or a module."""
    problems = []
    for entry in entries_of(data):
        carriers = entry.get("covered_by") if isinstance(entry.get("covered_by"), list) else []
        for ref in carriers:
            kinds = [key for key in ("task", "module", "test") if isinstance(ref, dict) and key in ref]
            if len(kinds) != 1:
                problems.append(f"{where(entry)}: each covered_by entry names one task, module or test (got {ref!r})")
                continue
            if kinds == ["task"]:
                problem = task_file_problem(root, ref.get("task"), ref.get("file"))
            elif kinds == ["module"]:
                problem = module_problem(root, ref.get("module"), ref.get("check"))
            else:
                test = str(ref.get("test"))
                problem = None if re.match(r"^tests/\S+\.py\Z", test) and (root / test).is_file() else f"no test file {test}"
            if problem:
                problems.append(f"{where(entry)}: {problem}")
        if entry.get("status") in ("verified", "automated") and entry.get("kind") == "item":
            if not any(isinstance(ref, dict) and ("task" in ref or "module" in ref) for ref in carriers):
                problems.append(f"{where(entry)}: a {entry.get('status')} line must name the task or module that carries it")
        if "docs" in entry:
            problem = docs_problem(root, entry.get("docs"))
            if problem:
                problems.append(f"{where(entry)}: {problem}")
    return problems


def module_problem(root: Path, fqcn: object, check: object) -> str | None:
    docs = module_docs(root, str(fqcn))
    if docs is None:
        return f"no module {fqcn} under plugins/modules"
    if check is not None and check not in module_checks(root, str(fqcn), *docs):
        return f"{fqcn} has no check or result field {check!r}"
    return None


def docs_problem(root: Path, link: object) -> str | None:
    page, anchor = (str(link).split("#", 1) + [""])[:2]
    path = root / "docs" / page
    if not re.match(r"^[a-z0-9-]+(/[a-z0-9-]+)*\.md\Z", page) or not path.is_file():
        return f"docs page {page} does not exist under docs/"
    if anchor and anchor not in heading_anchors(path):
        return f"docs/{page} has no heading #{anchor}"
    return None


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def check_evidence(data: object, root: Path) -> list[str]:
    """Evidence names result keys a run's report can read: a module's documented RETURN keys, or a real task's."""
    problems = []
    for entry in entries_of(data):
        evidence = entry.get("evidence") if isinstance(entry.get("evidence"), list) else []
        if entry.get("status") == "verified" and entry.get("kind") == "item" and not evidence:
            problems.append(f"{where(entry)}: a verified line must say which result fields show it")
        for ref in evidence:
            fields = ref.get("fields") if isinstance(ref, dict) else None
            if not isinstance(fields, list) or not fields or not all(isinstance(field, str) and field for field in fields):
                problems.append(f"{where(entry)}: each evidence entry needs a list of fields (got {ref!r})")
                continue
            if "module" in ref and "task" not in ref:
                docs = module_docs(root, str(ref["module"]))
                if docs is None:
                    problems.append(f"{where(entry)}: no module {ref['module']} under plugins/modules")
                    continue
                documented = return_keys(docs[1])
                for field in fields:
                    if field not in documented:
                        problems.append(f"{where(entry)}: {field} is not in the RETURN of {ref['module']}")
            elif "task" in ref and "module" not in ref:
                problem = task_file_problem(root, ref.get("task"), ref.get("file")) or evidence_task_problem(root, ref)
                if problem:
                    problems.append(f"{where(entry)}: {problem}")
            else:
                problems.append(f"{where(entry)}: each evidence entry names one module or one task (got {ref!r})")
    return problems


def evidence_task_problem(root: Path, ref: dict) -> str | None:
    """A run's report finds a task by the name it ran under and counts only its ok results: the name must not be
    templated, and the task must not be a fail task (skipped whenever its check passes)."""
    if "{{" in ref["task"] or "{%" in ref["task"]:
        return f"evidence task {ref['task']!r} has a templated name, which a run's report never sees as written"
    task = tasks_by_name(root / ref["file"])[ref["task"]]
    if any(key in task for key in FAIL_ACTIONS):
        return f"evidence task {ref['task']!r} is a fail task: it is skipped in every run that passes"
    return None


def load_map(root: Path = ROOT) -> object:
    with (root / MAP_FILE).open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=AnyTagLoader)  # nosec B506: a SafeLoader subclass


def validate(data: object, root: Path = ROOT) -> list[str]:
    """Every problem of the map, all rules together."""
    problems = check_document(data)
    if problems and not entries_of(data):
        return problems
    checklist = parse_checklist(root / SOURCE)
    for check in (check_coverage(data, checklist), check_ids(data), check_statuses(data, checklist)):
        problems += check
    return problems + check_references(data, root) + check_evidence(data, root)


def counts(data: object) -> dict[str, dict[str, int]]:
    """{kind: {status: count}} for every status, zeros included."""
    table = {kind: dict.fromkeys(STATUSES, 0) for kind in KINDS}
    for entry in entries_of(data):
        if entry.get("kind") in table and entry.get("status") in STATUSES:
            table[entry["kind"]][entry["status"]] += 1
    return table


def main() -> int:
    problems = validate(load_map())
    for problem in problems:
        print(problem)
    if not problems:
        table = counts(load_map())
        for kind in KINDS:
            print(f"{kind}s: " + ", ".join(f"{status} {table[kind][status]}" for status in STATUSES))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
