"""Fixtures for the Stripe modules against the lab's Stripe emulator; the emulator process is stopped at the end."""

from __future__ import annotations

import shutil
import tempfile
import typing as t
from pathlib import Path

import pytest

from stripe_lab import EMULATOR_MAIN, StripeEmulator, collections_dir_for_checkout


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    """A directory for ANSIBLE_COLLECTIONS_PATH holding this checkout as payments.deploy."""
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def emulator_process() -> t.Iterator[StripeEmulator]:
    if not EMULATOR_MAIN.exists():
        pytest.skip(f"the Stripe emulator is not in this checkout ({EMULATOR_MAIN})")
    directory = Path(tempfile.mkdtemp(prefix="stripe-emulator-"))
    emulator = StripeEmulator(directory)
    try:
        emulator.start()
        yield emulator
    finally:
        emulator.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def emulator(emulator_process: StripeEmulator) -> StripeEmulator:
    """The emulator, emptied (objects, faults, request log) before each test."""
    emulator_process.reset()
    return emulator_process
