"""Plan directories for the tests: a copy of the service's plan, cut at a change or extended with test changes."""

from __future__ import annotations

import shutil
import typing as t
from pathlib import Path

import yaml

from migration_cluster import FIXTURES, SERVICE_PLAN

SCRIPTS = ("deploy", "verify", "revert")


def service_plan(dest: Path, upto: str | None = None) -> Path:
    """A copy of the service's migrations in ``dest``; with ``upto``, only the changes up to that one."""
    shutil.copytree(SERVICE_PLAN, dest)
    if upto is not None:
        plan = read_plan(dest)
        names = [c["name"] for c in plan["changes"]]
        plan["changes"] = plan["changes"][:names.index(upto) + 1]
        write_plan(dest, plan)
    return dest


def read_plan(plan_dir: Path) -> dict[str, t.Any]:
    """The parsed plan.yml."""
    data: dict[str, t.Any] = yaml.safe_load((plan_dir / "plan.yml").read_text())
    return data


def write_plan(plan_dir: Path, plan: dict[str, t.Any]) -> None:
    """Replace plan.yml."""
    (plan_dir / "plan.yml").write_text(yaml.safe_dump(plan, sort_keys=False))


def append_change(plan_dir: Path, name: str, deploy: str, verify: str, revert: str, **fields: t.Any) -> None:
    """Add a change (expand, release 9.0.0 unless ``fields`` say otherwise) with its three scripts at the end of the plan."""
    plan = read_plan(plan_dir)
    plan["changes"].append({"name": name, "kind": "expand", "release": "9.0.0", **fields})
    write_plan(plan_dir, plan)
    for script, sql in zip(SCRIPTS, (deploy, verify, revert)):
        (plan_dir / script / f"{name}.sql").write_text(sql)


def append_fixture(plan_dir: Path, fixture: str) -> list[str]:
    """Add the changes of fixtures/<fixture> (changes.yml plus scripts) to the plan; return their names."""
    source = FIXTURES / fixture
    changes: list[dict[str, t.Any]] = yaml.safe_load((source / "changes.yml").read_text())
    plan = read_plan(plan_dir)
    plan["changes"].extend(changes)
    write_plan(plan_dir, plan)
    for change in changes:
        for script in SCRIPTS:
            shutil.copy(source / script / f"{change['name']}.sql", plan_dir / script)
    return [c["name"] for c in changes]
