"""Every role documents its inputs: its README.md names every option of every entry point in meta/argument_specs.yml."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"


def role_options(role: Path) -> dict[str, list[str]]:
    """The options of each entry point of a role, from its meta/argument_specs.yml."""
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    return {entry: sorted((spec or {}).get("options") or {}) for entry, spec in specs.items()}


def undocumented(role: Path) -> list[str]:
    """The entry points and options that the role's README does not name (the README itself when it is missing)."""
    readme = role / "README.md"
    if not readme.is_file():
        return [f"{readme} is missing"]
    text = readme.read_text()
    missing = [f"entry point {entry}" for entry in role_options(role) if f"`{entry}`" not in text]
    missing += [f"{entry}: {option}" for entry, options in role_options(role).items() for option in options
                if f"`{option}`" not in text]
    return missing


@pytest.mark.parametrize("role", sorted(path.name for path in ROLES.iterdir() if path.is_dir()))
def test_readme_names_every_option_of_every_entry_point(role):
    assert (ROLES / role / "meta" / "argument_specs.yml").is_file(), f"{role} has no meta/argument_specs.yml"
    assert role_options(ROLES / role), f"{role} declares no entry point"
    assert undocumented(ROLES / role) == []


def test_a_readme_that_leaves_out_an_option_fails(tmp_path):
    role = ROLES / "deploy_lock"
    copy = tmp_path / role.name
    shutil.copytree(role, copy)
    entry, options = next((entry, options) for entry, options in role_options(copy).items() if options)
    option = options[0]
    readme = copy / "README.md"
    readme.write_text(readme.read_text().replace(f"`{option}`", "an option"))
    assert f"{entry}: {option}" in undocumented(copy)


def test_a_missing_readme_fails(tmp_path):
    copy = tmp_path / "migrate"
    shutil.copytree(ROLES / "migrate", copy)
    (copy / "README.md").unlink(missing_ok=True)
    assert undocumented(copy) == [f"{copy / 'README.md'} is missing"]
