"""Fixtures for the loadbalancer role tests (helpers in lb_lab.py); every process and thread they start is stopped
at the end."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import typing as t
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lb_lab import ANSIBLE_PLAYBOOK, HAPROXY, LoadBalancerLab, collections_dir_for_checkout  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def lb(collections_dir: Path) -> t.Iterator[LoadBalancerLab]:
    """The role's first run (no HAProxy yet: written, nothing to reload), then HAProxy started from that file."""
    if not os.access(HAPROXY, os.X_OK):
        pytest.skip("haproxy is not installed")
    if ANSIBLE_PLAYBOOK is None:
        pytest.skip("ansible-playbook is not installed")
    directory = Path(tempfile.mkdtemp(prefix="lbt-"))  # short: unix socket paths are limited to 107 bytes
    lab = LoadBalancerLab(directory, collections_dir)
    try:
        first = lab.run_role()
        assert first.rc == 0, first.output
        lab.start()
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(directory, ignore_errors=True)
