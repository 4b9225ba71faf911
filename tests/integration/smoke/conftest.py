"""Fixtures for smoke_test against the running lab: skipped cleanly when the lab is down (this suite never starts or
stops the shared lab; it only makes small test-mode payments on staging, each refunded)."""

from __future__ import annotations

import os
import shutil
import typing as t
from pathlib import Path

import pytest

from smoke_lab import collections_dir_for_checkout, lab_status, read_secrets, serving


def unavailable(why: str) -> None:
    """Skip on a workstation; under CI (`make e2e` started the lab and deployed staging) a missing lab is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"the lab is needed here: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def lab() -> dict[str, t.Any]:
    status, why = lab_status()
    if status is None:
        unavailable(why)
    secrets, why = read_secrets(status)
    if secrets is None:
        unavailable(why)
    for needed in ("staging_url", "stripe_api", "mailbox_url"):
        if not status.get(needed):
            unavailable(f"labctl status does not give {needed}")
    up, why = serving(status["staging_url"])
    if not up and why:
        unavailable(why)
    return dict(status, secrets=secrets)


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)
