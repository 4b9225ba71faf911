"""checklist/map.yml against the production checklist and the collection's code, and docs/checklist.md against the map.

The checklist is parsed here on its own (a plain scan of its checkbox lines) as well as by checklist/validate.py; every
rule of the validator is shown to fail on a broken copy of the map.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CHECKLIST = ROOT / "checklist" / "production-checklist.txt"
RENDER = ROOT / "scripts" / "render-checklist.py"

spec = importlib.util.spec_from_file_location("checklist_validate", ROOT / "checklist" / "validate.py")
validator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(validator)


def checkbox_lines() -> dict[int, str]:
    """Line number -> text of every line holding "[ ]", read without the validator's parser."""
    found = {}
    for number, raw in enumerate(CHECKLIST.read_text(encoding="utf-8").splitlines(), start=1):
        if "[ ]" in raw:
            found[number] = raw.split("[ ]", 1)[1].replace("**", "").strip()
    return found


@pytest.fixture(name="real_map", scope="module")
def fixture_real_map() -> dict:
    return validator.load_map(ROOT)


@pytest.fixture(name="broken")
def fixture_broken(real_map: dict) -> dict:
    """A copy of the map that a test may break."""
    return copy.deepcopy(real_map)


@pytest.fixture(name="parsed", scope="module")
def fixture_parsed() -> list[dict]:
    return validator.parse_checklist(CHECKLIST)


def entry_at(data: dict, line: int) -> dict:
    return next(entry for entry in data["lines"] if entry["line"] == line)


def first_with(data: dict, status: str, kind: str = "item") -> dict:
    return next(entry for entry in data["lines"] if entry["status"] == status and entry["kind"] == kind)


def test_map_has_no_problem(real_map: dict) -> None:
    assert validator.validate(real_map, ROOT) == []


def test_every_checkbox_line_is_mapped_once_with_its_text(real_map: dict) -> None:
    expected = checkbox_lines()
    mapped = [entry["line"] for entry in real_map["lines"]]
    assert len(mapped) == len(set(mapped)), "a line is mapped twice"
    assert sorted(mapped) == sorted(expected)
    for entry in real_map["lines"]:
        assert entry["text"] == expected[entry["line"]]


def test_groups_are_the_bold_checkbox_lines(real_map: dict) -> None:
    lines = CHECKLIST.read_text(encoding="utf-8").splitlines()
    bold = {number for number in checkbox_lines() if re.match(r"^(-|\d+\.) \[ \] \*\*", lines[number - 1])}
    assert {entry["line"] for entry in real_map["lines"] if entry["kind"] == "group"} == bold


def test_parser_agrees_with_a_plain_scan(parsed: list[dict]) -> None:
    assert {line["line"]: line["text"] for line in parsed} == checkbox_lines()


def test_sections_follow_headings_and_groups(parsed: list[dict]) -> None:
    by_line = {line["line"]: line for line in parsed}
    assert by_line[8]["section"] == "Pre-Deployment Verification / Security Checklist / Environment Variables"
    assert by_line[6]["section"] == "Pre-Deployment Verification / Security Checklist"
    assert by_line[153]["section"] == "Rollback Plan / Rollback Triggers"
    assert by_line[171]["section"] == "Monitoring & Maintenance / Key Metrics to Monitor / Business Metrics"
    assert by_line[219]["section"] == "Sign-Off"


def test_docs_page_is_what_the_map_renders() -> None:
    run = subprocess.run([sys.executable, str(RENDER), "--check"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


def test_stale_page_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "checklist.md"
    subprocess.run([sys.executable, str(RENDER), "--output", str(page)], check=True)
    fresh = subprocess.run([sys.executable, str(RENDER), "--check", "--output", str(page)], check=False)
    page.write_text(page.read_text(encoding="utf-8").replace("| verified |", "| automated |", 1), encoding="utf-8")
    stale = subprocess.run([sys.executable, str(RENDER), "--check", "--output", str(page)], capture_output=True, text=True,
                           check=False)
    assert (fresh.returncode, stale.returncode) == (0, 1)
    assert "stale" in stale.stderr


def test_counts_add_up_to_every_line(real_map: dict) -> None:
    table = validator.counts(real_map)
    assert sum(table["item"].values()) + sum(table["group"].values()) == len(checkbox_lines())


def test_nested_task_names_are_found(tmp_path: Path) -> None:
    playbook = tmp_path / "nested.yml"
    playbook.write_text("""---
- name: A play
  hosts: all
  pre_tasks:
    - name: Before
      ansible.builtin.ping:
  tasks:
    - name: Outer block
      block:
        - name: In the block
          ansible.builtin.ping:
      rescue:
        - name: Inner block
          block:
            - name: In a rescue's block
              ansible.builtin.debug:
                msg: !unsafe "{{ not templated }}"
      always:
        - name: Always {{ templated }}
          ansible.builtin.ping:
  handlers:
    - name: A handler
      ansible.builtin.ping:
""", encoding="utf-8")
    assert validator.task_names(playbook) == {"A play", "Before", "Outer block", "In the block", "Inner block",
                                              "In a rescue's block", "Always {{ templated }}", "A handler"}


def test_dotted_return_keys_go_through_contains() -> None:
    documentation, returns = validator.module_docs(ROOT, "payments.deploy.frontend_sample_info")
    assert documentation["module"] == "frontend_sample_info"
    keys = validator.return_keys(returns)
    assert "answers.version" in keys
    assert "answers" in keys
    assert "version" not in keys


def test_missing_line_is_reported(broken: dict) -> None:
    broken["lines"] = [entry for entry in broken["lines"] if entry["line"] != 9]
    assert "line 9 (STRIPE_WEBHOOK_SECRET is configured) is not mapped" in validator.check_coverage(broken, validator.parse_checklist(CHECKLIST))


def test_line_mapped_twice_is_reported(broken: dict, parsed: list[dict]) -> None:
    twin = copy.deepcopy(entry_at(broken, 9))
    twin["id"] = "security.env.twin"
    broken["lines"].append(twin)
    assert any("line 9 is mapped twice" in problem for problem in validator.check_coverage(broken, parsed))


def test_wrong_line_number_is_reported(broken: dict, parsed: list[dict]) -> None:
    entry_at(broken, 9)["line"] = 10
    problems = validator.check_coverage(broken, parsed)
    assert any("line 10 is mapped twice" in problem for problem in problems)
    assert any("line 9 " in problem and "not mapped" in problem for problem in problems)


def test_line_without_checkbox_is_reported(broken: dict, parsed: list[dict]) -> None:
    entry_at(broken, 9)["line"] = 2
    assert any("line 2 of checklist/production-checklist.txt holds no checkbox" in problem
               for problem in validator.check_coverage(broken, parsed))


@pytest.mark.parametrize("key, value", [("text", "STRIPE_WEBHOOK_SECRET is set"), ("kind", "group"),
                                        ("section", "Pre-Deployment Verification / Security Checklist")])
def test_text_kind_and_section_must_match(broken: dict, parsed: list[dict], key: str, value: str) -> None:
    entry_at(broken, 9)[key] = value
    assert any(f": {key} is {value!r}, the checklist says" in problem for problem in validator.check_coverage(broken, parsed))


def test_duplicate_id_is_reported(broken: dict) -> None:
    entry_at(broken, 10)["id"] = entry_at(broken, 9)["id"]
    assert f"id {entry_at(broken, 9)['id']} is used twice" in validator.check_ids(broken)


def test_malformed_id_is_reported(broken: dict) -> None:
    entry_at(broken, 9)["id"] = "Security Env"
    assert any("id must be a lower-case slug" in problem for problem in validator.check_ids(broken))


def test_unknown_status_is_reported(broken: dict, parsed: list[dict]) -> None:
    entry_at(broken, 9)["status"] = "done"
    assert any("unknown status 'done'" in problem for problem in validator.check_statuses(broken, parsed))


def test_waived_line_needs_a_justification(broken: dict, parsed: list[dict]) -> None:
    entry = first_with(broken, "gate")
    entry.pop("gate")
    entry["status"] = "waived"
    problems = validator.check_statuses(broken, parsed)
    assert any(problem.startswith(validator.where(entry)) and "needs a `justification`" in problem for problem in problems)
    entry["justification"] = "the service keeps no cache"
    assert not any(problem.startswith(validator.where(entry)) for problem in validator.check_statuses(broken, parsed))


def test_planned_line_needs_its_plan(broken: dict, parsed: list[dict]) -> None:
    entry = first_with(broken, "gate")  # made a planned line whose plan is blank
    entry.pop("gate")
    entry.update(status="planned", planned="  ")
    assert any(problem.startswith(validator.where(entry)) and "needs a `planned`" in problem
               for problem in validator.check_statuses(broken, parsed))


@pytest.mark.parametrize("gate", [None, {"role": "security_officer"}, {"role": "auditor", "reason": "yearly"}])
def test_gate_line_needs_a_known_role_and_a_reason(broken: dict, parsed: list[dict], gate: dict | None) -> None:
    entry = first_with(broken, "gate")
    if gate is None:
        entry.pop("gate")
    else:
        entry["gate"] = gate
    assert any(problem.startswith(validator.where(entry)) and "a gate line needs gate" in problem
               for problem in validator.check_statuses(broken, parsed))


def test_reason_of_another_status_is_refused(broken: dict, parsed: list[dict]) -> None:
    entry = first_with(broken, "verified")
    entry["justification"] = "not needed"
    assert any(problem.startswith(validator.where(entry)) and "belongs to waived lines only" in problem
               for problem in validator.check_statuses(broken, parsed))


def test_group_status_is_derived_from_its_items(broken: dict, parsed: list[dict]) -> None:
    group = entry_at(broken, 6)
    items = [entry_at(broken, line["line"])["status"] for line in parsed if line["group_line"] == 6]
    assert group["status"] == validator.derived_status(items)
    group["status"] = "automated" if group["status"] == "verified" else "verified"
    assert any("a group's status is derived from its items" in problem for problem in validator.check_statuses(broken, parsed))


def test_derived_status_takes_the_least_advanced_item() -> None:
    assert validator.derived_status(["verified", "verified"]) == "verified"
    assert validator.derived_status(["verified", "automated", "waived"]) == "automated"
    assert validator.derived_status(["verified", "gate", "planned"]) == "planned"
    assert validator.derived_status(["waived"]) == "waived"


def test_verified_line_must_name_a_task_or_module(broken: dict) -> None:
    entry = first_with(broken, "verified")
    entry["covered_by"] = [ref for ref in entry["covered_by"] if "test" in ref]
    assert any(problem.startswith(validator.where(entry)) and "must name the task or module" in problem
               for problem in validator.check_references(broken, ROOT))


def test_task_name_must_exist_in_its_file(broken: dict) -> None:
    entry = first_with(broken, "verified")
    task = next(ref for line in broken["lines"] for ref in line["covered_by"] if "task" in ref)
    entry["covered_by"] = [{"task": task["task"] + " now", "file": task["file"]}]
    assert any(f"no task named {task['task'] + ' now'!r} in {task['file']}" in problem
               for problem in validator.check_references(broken, ROOT))


def test_task_file_must_exist_where_tasks_live(broken: dict) -> None:
    entry = first_with(broken, "verified")
    entry["covered_by"] = [{"task": "Preflight", "file": "roles/preflight/tasks/absent.yml"},
                           {"task": "Preflight", "file": "docs/deploy.md"}]
    problems = validator.check_references(broken, ROOT)
    assert any("task file roles/preflight/tasks/absent.yml does not exist" in problem for problem in problems)
    assert any("task file docs/deploy.md is neither" in problem for problem in problems)


def test_module_must_exist(broken: dict) -> None:
    entry = first_with(broken, "verified")
    entry["covered_by"].append({"module": "payments.deploy.no_such_module"})
    assert any("no module payments.deploy.no_such_module under plugins/modules" in problem
               for problem in validator.check_references(broken, ROOT))


@pytest.mark.parametrize("module, check", [("smoke_test", "refunds"), ("release_analysis", "payment_rate"),
                                           ("haproxy_switch", "switched")])
def test_module_check_must_be_known(broken: dict, module: str, check: str) -> None:
    first_with(broken, "verified")["covered_by"].append({"module": f"payments.deploy.{module}", "check": check})
    assert any(f"payments.deploy.{module} has no check or result field {check!r}" in problem
               for problem in validator.check_references(broken, ROOT))


def test_test_reference_must_exist(broken: dict) -> None:
    first_with(broken, "gate")["covered_by"].append({"test": "tests/unit/test_nothing_here.py"})
    assert any("no test file tests/unit/test_nothing_here.py" in problem for problem in validator.check_references(broken, ROOT))


def test_docs_link_must_reach_a_heading(broken: dict) -> None:
    entry = first_with(broken, "verified")
    entry["docs"] = "deploy.md#no-such-heading"
    assert any("docs/deploy.md has no heading #no-such-heading" in problem for problem in validator.check_references(broken, ROOT))


def test_evidence_field_must_be_documented_in_return(broken: dict) -> None:
    entry = first_with(broken, "verified")
    entry["evidence"] = [{"module": "payments.deploy.smoke_test", "fields": ["checks", "latency.p95"]},
                         {"module": "payments.deploy.frontend_sample_info", "fields": ["answers.version", "answers.colour"]}]
    problems = [problem for problem in validator.check_evidence(broken, ROOT) if problem.startswith(validator.where(entry))]
    assert problems == [f"{validator.where(entry)}: latency.p95 is not in the RETURN of payments.deploy.smoke_test"]


def test_verified_line_needs_evidence(broken: dict) -> None:
    entry = first_with(broken, "verified")
    entry["evidence"] = []
    assert any(problem.startswith(validator.where(entry)) and "must say which result fields show it" in problem
               for problem in validator.check_evidence(broken, ROOT))


def test_evidence_task_must_be_seen_by_a_report(broken: dict) -> None:
    entry = first_with(broken, "verified")
    entry["evidence"] = [
        {"task": "Stop before anything changes when an input is wrong", "file": "roles/preflight/tasks/validate.yml", "fields": ["msg"]},
        {"task": "Switch the environment to colour {{ traffic_switch_colour }}", "file": "roles/traffic_switch/tasks/main.yml", "fields": ["colour"]},
        {"task": "Keep the published checksum", "file": "roles/preflight/tasks/validate.yml", "fields": []},
    ]
    problems = validator.check_evidence(broken, ROOT)
    assert any("is a fail task" in problem for problem in problems)
    assert any("has a templated name" in problem for problem in problems)
    assert any("needs a list of fields" in problem for problem in problems)


def test_document_shape_is_checked(broken: dict) -> None:
    broken["schema"] = 2
    entry_at(broken, 9)["owner"] = "someone"
    del entry_at(broken, 10)["evidence"]
    problems = validator.check_document(broken)
    assert "schema must be 1 (got 2)" in problems
    assert any("has unknown keys owner" in problem for problem in problems)
    assert any("lacks evidence" in problem for problem in problems)
