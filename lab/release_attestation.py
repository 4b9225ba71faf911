"""Test attestations of the lab's releases (NAME-VERSION.tar.gz.tests.json), as a release pipeline writes them.

The reference service's own suites run for real (pytest with --junitxml, no running lab needed) and every count is
read back from the JUnit XML; docs/release-test-report.md describes the format. Loaded by pytest as a plugin
(``-p release_attestation``), this module also leaves out the tests that start servers, so a suite takes seconds.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

REPO = Path(__file__).resolve().parent.parent
SUFFIX = ".tests.json"
# Suite kind to the pytest arguments that run it (paths relative to the checkout).
SUITES: dict[str, tuple[str, ...]] = {
    "unit": ("tests/lab/test_service_units.py",),
    "integration": ("tests/lab/test_build_release.py",),
    "security": ("tests/lab/test_service_security.py",),
}
COUNTS = ("tests", "failures", "errors", "skipped")
# Tests that use these fixtures start PostgreSQL, Redis or the service: the e2e tests cover them, not the release run.
SERVER_FIXTURES = frozenset({"postgres", "redis_server", "redis_factory", "smtp_sink", "stripe_emulator",
                             "stripe_emulator_factory", "launcher", "service", "stripe_service"})
# An attestation older than this is written again, so that the lab's stays inside the deploy's freshness limit.
REFRESH_DAYS = 7
PLACEHOLDER_COMMIT = "0" * 40  # outside a git checkout: all zeros, which no real commit has
RUN_ID_PREFIX = "lab-"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """pytest hook: deselect the tests that need servers."""
    kept = [item for item in items if not SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))]
    deselected = [item for item in items if item not in kept]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def junit_counts(xml_path: Path) -> dict[str, int]:
    """tests, failures, errors and skipped summed over every <testsuite> of a JUnit XML file."""
    root = ElementTree.parse(xml_path).getroot()
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    totals = dict.fromkeys(COUNTS, 0)
    for suite in suites:
        for name in COUNTS:
            totals[name] += int(suite.get(name, "0"))
    return totals


def start_suite(kind: str, args: tuple[str, ...], out: Path, python: str) -> subprocess.Popen[bytes]:
    """Start pytest on one suite, writing out/KIND.xml."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "lab"), os.environ.get("PYTHONPATH")]))}
    # A pytest run empties its base directory first: inheriting the caller's (PYTEST_ADDOPTS=--basetemp=..., as the
    # test targets set it) would delete the files of the pytest run that called this one. Each suite gets its own.
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.Popen([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "release_attestation",
                             f"--basetemp={out / f'{kind}-tmp'}",
                             f"--junitxml={out / f'{kind}.xml'}", "-o", f"junit_suite_name={kind}", *args],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def suite_result(kind: str, out: Path) -> dict[str, Any]:
    """A suite's counts and the sha256 of the JUnit XML they were read from."""
    junit = out / f"{kind}.xml"
    if not junit.exists():
        raise SystemExit(f"release_attestation: the {kind} suite wrote no JUnit XML (pytest could not start)")
    return {**junit_counts(junit), "junit_sha256": hashlib.sha256(junit.read_bytes()).hexdigest()}


def run_suites(python: str = sys.executable, suites: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    """Run every suite at once (each its own pytest) and read their results. The exit status does not matter: a
    failing suite is recorded as it is, and the deploy refuses it."""
    with tempfile.TemporaryDirectory(prefix="release-tests-") as scratch:
        out = Path(scratch)
        running = {kind: start_suite(kind, args, out, python) for kind, args in (suites or SUITES).items()}
        for process in running.values():
            process.wait(timeout=600)
        return {kind: suite_result(kind, out) for kind in running}


def git(*args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False, timeout=30)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def source() -> dict[str, Any]:
    """The commit the lab builds from and its ref, ``lab/<branch>``, so that the lab's ref pattern tells its
    attestations from a pipeline's; outside a git checkout a placeholder commit and ``lab/unversioned``."""
    commit = git("rev-parse", "HEAD")
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    if len(commit) != 40:
        return {"commit": PLACEHOLDER_COMMIT, "ref": "lab/unversioned", "source_modified": True}
    # The service's source or its tests differ from the commit: said, not hidden.
    modified = bool(git("status", "--porcelain", "--", "lab/payment_service", "tests/lab"))
    return {"commit": commit, "ref": f"lab/{branch or 'detached'}", "source_modified": modified}


def attestation(tarball: Path, version: str, name: str, suites: dict[str, Any], origin: dict[str, Any],
                finished_at: str) -> dict[str, Any]:
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    return {"format": 1, "name": name, "version": version, "artifact": tarball.name, "artifact_sha256": digest,
            **origin, "run_id": f"{RUN_ID_PREFIX}{finished_at}", "run_url": f"file://{tarball.parent}",
            "finished_at": finished_at, "suites": suites}


def stale(tarball: Path, now: datetime.datetime) -> bool:
    """Whether the attestation beside tarball is missing, of another artifact, unreadable or older than REFRESH_DAYS."""
    path = tarball.with_name(tarball.name + SUFFIX)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        finished = datetime.datetime.fromisoformat(data["finished_at"].replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return True
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    return data.get("artifact_sha256") != digest or (now - finished).days >= REFRESH_DAYS


def write_attestations(artifacts: Path, versions: dict[str, Any], name: str, python: str = sys.executable,
                       suites: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Write NAME-VERSION.tar.gz.tests.json for each version whose attestation is stale; the suites run once for all
    of them (the releases come from the same source). Returns the versions written."""
    now = datetime.datetime.now(datetime.timezone.utc)
    todo = [version for version in versions if stale(artifacts / f"{name}-{version}.tar.gz", now)]
    if not todo:
        return []
    results = run_suites(python, suites)
    finished_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    origin = source()
    for version in todo:
        tarball = artifacts / f"{name}-{version}.tar.gz"
        target = tarball.with_name(tarball.name + SUFFIX)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(json.dumps(attestation(tarball, version, name, results, origin, finished_at), indent=2,
                                      sort_keys=True) + "\n", encoding="ascii")
        os.replace(partial, target)
    return todo


def sign(path: Path, secret_key: Path) -> None:
    """minisign's detached signature PATH.minisig, with the trusted comment naming the release."""
    subprocess.run(["minisign", "-S", "-s", str(secret_key), "-m", str(path), "-t", path.name.split(".tar.gz")[0]],
                   check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    """Attest (and sign) every NAME-X.Y.Z.tar.gz of a directory whose attestation is stale, e.g. a release built for a
    test with build_release.py into the lab's artifacts."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--artifacts-dir", type=Path, required=True)
    parser.add_argument("--name", default="payment-service")
    parser.add_argument("--sign-key", type=Path, help="a minisign secret key without a password (the lab's)")
    args = parser.parse_args(argv)
    prefix = f"{args.name}-"
    versions = {path.name[len(prefix):-len(".tar.gz")]: () for path in sorted(args.artifacts_dir.glob(f"{prefix}*.tar.gz"))}
    written = write_attestations(args.artifacts_dir, versions, args.name)
    for version in written:
        target = args.artifacts_dir / f"{prefix}{version}.tar.gz{SUFFIX}"
        if args.sign_key:
            sign(target, args.sign_key)
        print(json.dumps({"attestation": str(target), "signed": bool(args.sign_key)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
