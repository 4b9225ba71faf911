"""Fixtures for the tests against a real HAProxy; every process and thread they start is stopped at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
import typing as t
from pathlib import Path

import pytest

from real_haproxy import HAPROXY, HAProxyLab, collections_dir_for_checkout


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    """A directory for ANSIBLE_COLLECTIONS_PATH holding this checkout as payments.deploy."""
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def haproxy_lab() -> t.Iterator[HAProxyLab]:
    if not os.access(HAPROXY, os.X_OK):
        pytest.skip("haproxy is not installed")
    directory = Path(tempfile.mkdtemp(prefix="hxlab-"))  # short: unix socket paths are limited to 107 bytes
    lab = HAProxyLab(directory)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(directory, ignore_errors=True)
