"""meta/runtime.yml's action groups against the modules' documentation: every member says it belongs to its group, no
module claims a group it is not in, and every member accepts the options the group's defaults are meant to set (an
option a member lacks would fail that member's every task with ``Unsupported parameters``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import ansible_collections.payments.deploy as collection

ROOT = Path(collection.__path__[0])
# What module_defaults for each group is documented to set: the options of the group's doc fragment (PostgreSQL's
# pg_bin_dir only concerns the backup modules, which run the client programs).
SHARED = {"stripe": ("stripe", ()), "haproxy": ("haproxy", ()), "postgres": ("postgres", ("pg_bin_dir",))}


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    names = sorted(f"payments.deploy.{path.stem}" for path in (ROOT / "plugins" / "modules").glob("*.py"))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT.parents[2]), "ANSIBLE_CONFIG": str(tmp_path_factory.mktemp("cfg") / "ansible.cfg")}
    shown = subprocess.run([str(Path(sys.executable).with_name("ansible-doc")), "--json", "-t", "module", *names],
                           capture_output=True, text=True, check=False, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    return {name.rsplit(".", 1)[1]: info["doc"] for name, info in json.loads(shown.stdout).items()}


def fragment_options(name: str) -> set[str]:
    source = (ROOT / "plugins" / "doc_fragments" / f"{name}.py").read_text()
    documentation = source.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0]
    return set(yaml.safe_load(documentation)["options"])


def groups() -> dict[str, list[str]]:
    return yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["action_groups"]


def test_every_group_is_documented_by_its_members_and_only_by_them(docs: dict[str, dict]) -> None:
    assert set(groups()) == set(SHARED)
    claimed: dict[str, set[str]] = {}
    for module, doc in docs.items():
        for group in doc.get("attributes", {}).get("action_group", {}).get("membership", []):
            claimed.setdefault(group, set()).add(module)
    assert claimed == {f"payments.deploy.{group}": set(members) for group, members in groups().items()}
    for members in groups().values():
        for module in members:
            assert docs[module]["attributes"]["action_group"]["support"] == "full"


@pytest.mark.parametrize("group", sorted(SHARED))
def test_every_member_accepts_the_options_its_group_sets(docs: dict[str, dict], group: str) -> None:
    fragment, only_some = SHARED[group]
    wanted = fragment_options(fragment) - set(only_some)
    assert wanted, f"the {fragment} fragment documents no option"
    for module in groups()[group]:
        missing = wanted - set(docs[module]["options"])
        assert not missing, f"{module} does not accept {sorted(missing)}, which group/payments.deploy.{group} sets"
