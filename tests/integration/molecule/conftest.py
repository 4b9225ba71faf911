"""Fixtures for the molecule scenario tests (the runner is in molecule_runner.py): each scenario runs in a fresh
ephemeral directory, and what a failed test leaves is destroyed and removed."""

from __future__ import annotations

import shutil
import sys
import tempfile
import typing as t
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "haproxy"))
from real_haproxy import collections_dir_for_checkout  # noqa: E402  pylint: disable=wrong-import-position
from molecule_runner import MOLECULE, Scenario  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def scenario(collections_dir: Path) -> t.Iterator[t.Callable[[str], Scenario]]:
    """Makes a Scenario in a fresh ephemeral directory; at the end runs its destroy playbook when its state is still
    there (a failed test), then removes the directory."""
    if MOLECULE is None:
        pytest.skip("molecule is not installed")
    made: list[Scenario] = []

    def make(name: str) -> Scenario:
        # short: the loadbalancer scenario puts HAProxy's admin socket in it (unix socket paths are limited to 107 bytes)
        made.append(Scenario(name, collections_dir, Path(tempfile.mkdtemp(prefix="mol-"))))
        return made[-1]

    yield make
    for one in made:
        if one.state.exists():
            one.molecule("destroy")
        shutil.rmtree(one.ephemeral, ignore_errors=True)
