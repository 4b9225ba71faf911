"""Every *_info module documents its attributes through the shared payments.deploy.info_module fragment (check mode
full, diff mode N/A), instead of a copy of its own that could drift."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

MODULES = Path(__file__).resolve().parents[3] / "plugins" / "modules"
INFO_MODULES = sorted(path for path in MODULES.glob("*_info.py"))


def documentation(path: Path) -> dict:
    source = path.read_text()
    start = source.index('DOCUMENTATION = r"""') + len('DOCUMENTATION = r"""')
    return yaml.safe_load(source[start:source.index('"""', start)])


def test_there_are_info_modules() -> None:
    assert len(INFO_MODULES) >= 10


@pytest.mark.parametrize("path", INFO_MODULES, ids=[path.stem for path in INFO_MODULES])
def test_info_module_uses_the_shared_attributes_fragment(path: Path) -> None:
    doc = documentation(path)
    assert "payments.deploy.info_module" in doc.get("extends_documentation_fragment", []), path.name
    assert "attributes" not in doc, f"{path.name} repeats attributes the fragment gives"
