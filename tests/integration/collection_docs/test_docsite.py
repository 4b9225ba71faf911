"""The collection's reference documentation as antsibull-docs builds it: `lint-collection-docs` finds nothing, and the
generated site has a page for every module, role and callback, each naming what the plugin's own documentation says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collections directory holding this checkout as payments.deploy."""
    path = tmp_path_factory.mktemp("collections")
    (path / "ansible_collections" / "payments").mkdir(parents=True)
    (path / "ansible_collections" / "payments" / "deploy").symlink_to(ROOT)
    return path


def antsibull(collections: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_COLLECTIONS_PATH": str(collections),
           "ANSIBLE_CONFIG": str(cwd / "no-ansible.cfg")}
    return subprocess.run([str(BIN / "antsibull-docs"), *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600, check=False)


def test_lint_collection_docs_is_clean(collections: Path) -> None:
    done = antsibull(collections, "lint-collection-docs", "--plugin-docs", ".",
                     cwd=collections / "ansible_collections" / "payments" / "deploy")
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def short_description(path: Path) -> str:
    source = path.read_text()
    return yaml.safe_load(source.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0])["short_description"]


def test_the_site_has_a_page_for_every_plugin_and_role(collections: Path, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir(mode=0o700)
    done = antsibull(collections, "collection", "--use-current", "--dest-dir", str(tmp_path / "site"), "payments.deploy",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    pages = tmp_path / "site" / "collections" / "payments" / "deploy"
    expected = {f"{path.stem}_module.rst": short_description(path) for path in (ROOT / "plugins" / "modules").glob("*.py")}
    expected |= {f"{path.stem}_callback.rst": short_description(path) for path in (ROOT / "plugins" / "callback").glob("*.py")}
    for role in (ROOT / "roles").iterdir():
        spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        expected[f"{role.name}_role.rst"] = [entry["short_description"] for entry in spec.values()]  # every entry point
    for page, descriptions in expected.items():
        assert (pages / page).exists(), f"antsibull-docs wrote no {page}"
        text = " ".join((pages / page).read_text().replace("\\", "").split())  # RST escapes - and _
        for description in descriptions if isinstance(descriptions, list) else [descriptions]:
            plain = re.split(r"\b[A-Z]\(|\(", " ".join(description.split()), maxsplit=1)[0][:60]  # the words before any markup
            assert plain in text, f"{page} does not carry {description!r}"
    assert (pages / "index.rst").exists()
