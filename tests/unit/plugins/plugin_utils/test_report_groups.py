"""A group line of the checklist (a heading with a checkbox of its own) takes its run status from its items: the lines
whose id extends the group's."""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.payments.deploy.plugins.plugin_utils.report_checklist import judge

GROUP = {"id": "deploy.migration", "line": 90, "text": "Database Migration", "section": "Deployment", "kind": "group",
         "status": "verified"}
OTHER_GROUP = {"id": "deploy.migrations-archive", "line": 99, "text": "Not a child", "section": "Deployment", "kind": "group",
               "status": "verified"}


def item(suffix: str, status: str = "verified", task: str = "") -> dict[str, t.Any]:
    line = {"id": f"deploy.migration.{suffix}", "line": 91, "text": suffix, "section": "Deployment / Database Migration",
            "kind": "item", "status": status, "evidence": [{"task": task or f"Check {suffix}"}] if status == "verified" else []}
    if status == "gate":
        line["gate"] = {"role": "operations_manager", "reason": "a person checks it"}
    return line


def ran(task: str, status: str = "ok") -> dict[str, t.Any]:
    return {"action": "ansible.builtin.assert", "task": task, "host": "lb1", "status": status, "fields": {}}


SIGNED = {"signoffs": {"operations_manager": {"name": "Ada Lovelace", "date": "2026-11-28", "reference": "CHG-1"}}}


@pytest.mark.parametrize(("items", "results", "gate_record", "expected"), [
    ([item("backup"), item("run")], [ran("Check backup"), ran("Check run")], {}, "verified"),
    ([item("backup"), item("run")], [ran("Check backup"), ran("Check run", "failed")], {}, "failed"),
    ([item("backup"), item("run")], [ran("Check backup")], {}, "not run"),  # one check was skipped or absent
    ([item("backup"), item("pooling", "gate")], [ran("Check backup")], SIGNED, "signed off"),
    ([item("backup"), item("pooling", "gate")], [ran("Check backup")], {}, "not recorded"),
    ([item("backup"), item("env", "automated")], [ran("Check backup")], {}, "signed off"),  # done without a check
])
def test_a_group_takes_its_status_from_its_items(items, results, gate_record, expected) -> None:
    report = judge([GROUP, *items, OTHER_GROUP], results, gate_record)
    group, *_rest, other = report["lines"]
    assert group["run_status"] == expected
    assert group["items"] == [line["id"] for line in items]
    assert other["run_status"] is None and other["items"] == []  # a shared prefix without the dot is not a child
    counted = [line["run_status"] for line in report["lines"] if line["run_status"]]
    assert sum(report["counts"].values()) == len(counted)
    assert report["counts"][expected] == counted.count(expected)
