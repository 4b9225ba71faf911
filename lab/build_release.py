"""Build reproducible release artifacts (NAME-VERSION.tar.gz plus .sha256) of the reference payment service."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
from pathlib import Path

import yaml

NAME = "payment-service"
DEFAULT_SOURCE = Path(__file__).resolve().parent / "payment_service"
INCLUDED = ("payment_service", "gunicorn.conf.py", "migrations")
EXCLUDED_PARTS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
MIGRATIONS = "migrations"
PLAN_FILES = ("plan.yml", "plan.yaml", "plan.json")
MIGRATION_SCRIPTS = ("deploy", "verify", "revert")
# Every entry gets the same timestamp (1980-01-01, the oldest date every archive format can hold).
FIXED_MTIME = 315532800
START_COMMAND = ("python3 -m gunicorn --config gunicorn.conf.py --bind 127.0.0.1:{port} "
                 "payment_service.wsgi:application")
ENV = ["DATABASE_URL", "REDIS_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "ENCRYPTION_KEY",
       "HASH_SALT", "PAYMENTS_API_KEY", "PAYMENTS_ADMIN_KEY", "PAYMENTS_RATE_LIMIT_PER_MINUTE", "PAYMENTS_CORS_ORIGINS",
       "PAYMENTS_SMOKE_KEY", "PAYMENTS_SMOKE_RATE_LIMIT_PER_MINUTE", "SMTP_URL", "PAYMENTS_RECEIPT_FROM",
       "PAYMENTS_LOAD_KEY", "PAYMENTS_LOAD_RATE_LIMIT_PER_MINUTE"]
HEALTH = {"liveness": "/healthz", "load_balancer": "/healthz/lb", "readiness": "/readyz", "version": "/version"}
# Deliberately wrong builds, to prove that smoke checks (or, for payment-regression, only the bake window's analysis
# of real traffic) catch them; the service reads build_faults.json at start.
FAULTS = ("auth-disabled", "no-security-headers", "payment-regression")
FAULTS_FILE = "payment_service/build_faults.json"
# The releases the lab builds (--all): version to faults. 1.1.1 passes every health check and the smoke test's small
# payments, but fails every 5th payment of 10.00 or more.
LAB_BUILDS: dict[str, tuple[str, ...]] = {"1.0.0": (), "1.1.0": (), "1.1.1": ("payment-regression",)}
DEFAULT_VERSIONS = tuple(LAB_BUILDS)


def manifest(version: str, faults: tuple[str, ...] = ()) -> bytes:
    """manifest.json of a release: what the deploy tooling reads to install and start it (a fault build lists its
    faults; a normal build has no "faults" key)."""
    data: dict[str, object] = {"name": NAME, "version": version, "start_command": START_COMMAND,
                               "migrations_dir": "migrations", "health": HEALTH, "env": ENV}
    if faults:
        data["faults"] = list(faults)
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def source_files(source: Path) -> list[Path]:
    """The files and directories shipped, relative to source; caches and dotfiles left out."""
    missing = [name for name in INCLUDED if not (source / name).exists()]
    if missing:
        raise SystemExit(f"build_release: {source} lacks {', '.join(missing)}")
    found: list[Path] = []
    for name in INCLUDED:
        top = source / name
        found.append(top.relative_to(source))
        if top.is_dir():
            found += [path.relative_to(source) for path in top.rglob("*") if _shipped(path.relative_to(source))]
    return found


def _shipped(relative: Path) -> bool:
    hidden = any(part.startswith(".") or part in EXCLUDED_PARTS for part in relative.parts)
    # A faults file left in a source tree never reaches a normal build: only --fault writes one.
    return not hidden and not relative.name.endswith(EXCLUDED_SUFFIXES) and relative.as_posix() != FAULTS_FILE


def _entry(name: str, is_dir: bool, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir else 0o644
    info.size = size
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def release_entries(source: Path, version: str, faults: tuple[str, ...] = ()) -> dict[str, bytes | None]:
    """Archive name to content (None for a directory) of every entry of the release."""
    top = f"{NAME}-{version}"
    entries: dict[str, bytes | None] = {top: None, f"{top}/manifest.json": manifest(version, faults)}
    left_out, plan_files = migrations_for(source, version)
    for relative in source_files(source):
        path = source / relative
        name = relative.as_posix()
        if name in left_out:
            continue
        if name in plan_files:
            entries[f"{top}/{name}"] = plan_files[name]
        else:
            entries[f"{top}/{name}"] = None if path.is_dir() else path.read_bytes()
    if faults:
        entries[f"{top}/{FAULTS_FILE}"] = (json.dumps(list(faults)) + "\n").encode("utf-8")
    return entries


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def migrations_for(source: Path, version: str) -> tuple[set[str], dict[str, bytes]]:
    """The migration files a release leaves out, and its plan filtered to the changes whose release is not newer than it.

    Paths are relative to source. Without a plan file the migrations directory ships as it is.
    """
    plans = [source / MIGRATIONS / name for name in PLAN_FILES if (source / MIGRATIONS / name).is_file()]
    if not plans:
        return set(), {}
    if len(plans) > 1:
        raise SystemExit(f"build_release: {source / MIGRATIONS} holds more than one plan file")
    plan_path = plans[0]
    text = plan_path.read_text(encoding="utf-8")
    data = json.loads(text) if plan_path.suffix == ".json" else yaml.safe_load(text)
    changes = data.get("changes") if isinstance(data, dict) else None
    if not isinstance(changes, list):
        raise SystemExit(f"build_release: {plan_path} has no list of changes")
    kept: list[dict[str, object]] = []
    for change in changes:
        release = str(change.get("release", "")) if isinstance(change, dict) else ""
        if not SEMVER.fullmatch(release):
            raise SystemExit(f"build_release: {plan_path}: change {change!r} has no release X.Y.Z")
        if _version_key(release) <= _version_key(version):
            kept.append(change)
    names = {str(change.get("name")) for change in kept}
    scripts = [f"{MIGRATIONS}/{script}/{name}.sql" for name in sorted(names) for script in MIGRATION_SCRIPTS]
    missing = [path for path in scripts if not (source / path).is_file()]
    if missing:
        raise SystemExit(f"build_release: the plan's changes lack {', '.join(missing)}")
    left_out: set[str] = set()
    for script in MIGRATION_SCRIPTS:
        directory = source / MIGRATIONS / script
        if directory.is_dir():
            left_out.update(path.relative_to(source).as_posix() for path in directory.rglob("*") if path.is_file())
    left_out.difference_update(scripts)
    return left_out, {plan_path.relative_to(source).as_posix(): render_plan(plan_path.suffix, kept, version)}


def render_plan(suffix: str, changes: list[dict[str, object]], version: str) -> bytes:
    """The plan file of release ``version``: the same format as the source plan, changes in plan order."""
    if suffix == ".json":
        return (json.dumps({"changes": changes}, indent=2) + "\n").encode("utf-8")
    header = f"# Migration plan shipped with {NAME} {version}: the changes of releases up to {version}, in deploy order.\n"
    body = yaml.safe_dump({"changes": changes}, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)
    return (header + body).encode("utf-8")


def tar_bytes(source: Path, version: str, faults: tuple[str, ...] = ()) -> bytes:
    """The uncompressed tar stream: one top directory, sorted entries, normalised metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(release_entries(source, version, faults).items()):
            if data is None:
                tar.addfile(_entry(name, is_dir=True))
            else:
                tar.addfile(_entry(name, is_dir=False, size=len(data)), io.BytesIO(data))
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with no file name and mtime 0 in the header, so equal input gives equal output."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as stream:
        stream.write(data)
    return buffer.getvalue()


def artifact(source: Path, version: str, faults: tuple[str, ...] = ()) -> bytes:
    """The bytes of NAME-VERSION.tar.gz: equal source, version and faults give equal bytes."""
    return gzip_bytes(tar_bytes(source, version, faults))


def build(source: Path, version: str, output_dir: Path, faults: tuple[str, ...] = ()) -> dict[str, object]:
    """Write the tarball and its sha256 file atomically; return what was built."""
    archive = artifact(source, version, faults)
    digest = hashlib.sha256(archive).hexdigest()
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{NAME}-{version}.tar.gz"
    _write_atomically(path, archive)
    _write_atomically(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n".encode("ascii"))
    return {"path": str(path), "sha256": digest, "size": len(archive)}


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def semver(value: str) -> str:
    """argparse type: a plain X.Y.Z version."""
    if not SEMVER.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a semantic version X.Y.Z (e.g. 1.1.0)")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", type=semver, help="release version X.Y.Z")
    lab = ", ".join(version + "".join(f" ({fault})" for fault in faults) for version, faults in LAB_BUILDS.items())
    which.add_argument("--all", action="store_true", help=f"build the lab releases: {lab}")
    parser.add_argument("--output-dir", type=Path, required=True, help="directory for the artifacts")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="service source directory")
    parser.add_argument("--fault", action="append", choices=FAULTS, default=[],
                        help="bake a deliberate fault into the build, to test smoke checks (repeatable; with --version)")
    args = parser.parse_args(argv)
    if args.fault and args.all:
        parser.error("--fault builds one deliberately wrong release: use it with --version, not --all")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the requested versions and print one JSON line per artifact."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    builds = LAB_BUILDS if args.all else {args.version: tuple(args.fault)}
    for version, faults in builds.items():
        print(json.dumps(build(args.source.resolve(), version, args.output_dir, tuple(sorted(set(faults))))),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
