"""Fixtures for release_analysis against a real Prometheus: one Prometheus for the session, on a free loopback port
with a temporary data directory, scraping an exporter per scenario every second; all stopped at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
import typing as t
from pathlib import Path

import pytest

from real_prometheus import PROMETHEUS, Exporter, RealPrometheus, collections_dir_for_checkout

LABELS = {"environment": "production", "host": "app1", "release": "1.2.0"}


@pytest.fixture(scope="session")
def exporters() -> t.Iterator[dict[str, Exporter]]:
    made = {"good": Exporter(per_second=20, failed_share=0.05), "bad": Exporter(per_second=20, failed_share=0.2),
            "reset": Exporter(per_second=20, failed_share=0.05, initial=5000)}
    yield made
    for exporter in made.values():
        exporter.stop()


@pytest.fixture(scope="session")
def prometheus(exporters: dict[str, Exporter]) -> t.Iterator[RealPrometheus]:
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip("prometheus is not installed")
    directory = Path(tempfile.mkdtemp(prefix="prom-analysis-"))
    # green: a healthy release; blue: one failing a fifth of its payments; staging green: the one that restarts
    targets = {"good": (exporters["good"], dict(LABELS, colour="green")),
               "bad": (exporters["bad"], dict(LABELS, colour="blue")),
               "reset": (exporters["reset"], dict(LABELS, environment="staging", colour="green"))}
    server = RealPrometheus(directory, targets)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    """A directory for PYTHONPATH holding this checkout as ansible_collections.payments.deploy."""
    path = collections_dir_for_checkout()
    yield path
    if path.name.startswith("payments-deploy-collections-"):
        shutil.rmtree(path, ignore_errors=True)
