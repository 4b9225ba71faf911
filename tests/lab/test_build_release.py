"""build_release.py: reproducible artifacts, a correct checksum file, the manifest the deploy reads."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "lab" / "build_release.py"
SOURCE = REPO / "lab" / "payment_service"
TOP = "payment-service-1.1.0"

pytestmark = pytest.mark.timeout(120)


def build(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BUILD_SCRIPT), "--output-dir", str(out), *args],
                          capture_output=True, text=True, check=False)


def test_same_source_and_version_give_identical_bytes(tmp_path: Path) -> None:
    # A copy with a different mtime and compiled caches must still give the same artifact.
    copy = tmp_path / "src"
    shutil.copytree(SOURCE, copy)
    (copy / "payment_service" / "__pycache__").mkdir(exist_ok=True)
    (copy / "payment_service" / "__pycache__" / "app.cpython-313.pyc").write_bytes(b"cache")
    (copy / "gunicorn.conf.py").touch()
    first = build(tmp_path / "a", "--version", "1.1.0")
    second = build(tmp_path / "b", "--version", "1.1.0", "--source", str(copy))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a = (tmp_path / "a" / f"{TOP}.tar.gz").read_bytes()
    assert a == (tmp_path / "b" / f"{TOP}.tar.gz").read_bytes()
    assert json.loads(first.stdout) == {"path": str(tmp_path / "a" / f"{TOP}.tar.gz"),
                                        "sha256": hashlib.sha256(a).hexdigest(), "size": len(a)}


def test_sha256_file_is_in_sha256sum_format(tmp_path: Path) -> None:
    assert build(tmp_path, "--version", "1.1.0").returncode == 0
    digest = hashlib.sha256((tmp_path / f"{TOP}.tar.gz").read_bytes()).hexdigest()
    assert (tmp_path / f"{TOP}.tar.gz.sha256").read_text() == f"{digest}  {TOP}.tar.gz\n"
    check = subprocess.run(["sha256sum", "-c", f"{TOP}.tar.gz.sha256"], cwd=tmp_path, capture_output=True, check=False)
    assert check.returncode == 0


def test_tarball_layout_and_normalised_metadata(tmp_path: Path) -> None:
    assert build(tmp_path, "--version", "1.1.0").returncode == 0
    with tarfile.open(tmp_path / f"{TOP}.tar.gz") as tar:
        members = tar.getmembers()
        manifest = json.load(tar.extractfile(f"{TOP}/manifest.json"))  # type: ignore[arg-type]
    names = [member.name for member in members]
    assert names == sorted(names)
    assert {name.split("/")[0] for name in names} == {TOP}
    for expected in ("payment_service/wsgi.py", "gunicorn.conf.py", "manifest.json", "migrations",
                     "migrations/README.md"):
        assert f"{TOP}/{expected}" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "root", "root", 315532800)}
    assert manifest["version"] == "1.1.0" and manifest["migrations_dir"] == "migrations"
    assert "{port}" in manifest["start_command"]
    assert manifest["health"] == {"liveness": "/healthz", "readiness": "/readyz", "version": "/version"}


NEW_IN_1_1_0 = {f"migrations/{script}/{name}.sql" for script in ("deploy", "verify", "revert")
                for name in ("0003_payments_description", "0004_payments_created_at_index")}


def test_all_builds_the_lab_versions_that_differ_only_by_version(tmp_path: Path) -> None:
    result = build(tmp_path, "--all")
    assert result.returncode == 0, result.stderr
    built = [json.loads(line) for line in result.stdout.splitlines()]
    names = [Path(item["path"]).name for item in built]
    assert names == ["payment-service-1.0.0.tar.gz", "payment-service-1.1.0.tar.gz"]
    old, new = (release_files(tmp_path / name) for name in names)
    assert new.keys() - old.keys() == NEW_IN_1_1_0 and not old.keys() - new.keys()
    assert {name for name in old if old[name] != new[name]} == {"manifest.json", "migrations/plan.yml"}


def test_each_release_ships_the_migrations_up_to_its_version(tmp_path: Path) -> None:
    assert build(tmp_path, "--all").returncode == 0
    old = release_files(tmp_path / "payment-service-1.0.0.tar.gz")
    new = release_files(tmp_path / "payment-service-1.1.0.tar.gz")
    old_plan, new_plan = (yaml.safe_load(files["migrations/plan.yml"]) for files in (old, new))
    assert [c["name"] for c in old_plan["changes"]] == ["0001_customers", "0002_payments_and_events"]
    assert [c["name"] for c in new_plan["changes"]] == ["0001_customers", "0002_payments_and_events",
                                                        "0003_payments_description", "0004_payments_created_at_index"]
    assert not NEW_IN_1_1_0 & old.keys() and NEW_IN_1_1_0 <= new.keys()
    source = yaml.safe_load((SOURCE / "migrations" / "plan.yml").read_text())
    assert new_plan["changes"] == source["changes"]  # every field kept, in plan order
    for name in NEW_IN_1_1_0:
        assert new[name] == (SOURCE / name).read_bytes()


def test_a_plan_change_newer_than_every_release_is_left_out(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    plan = yaml.safe_load((copy / "migrations" / "plan.yml").read_text())
    plan["changes"].append({"name": "0005_future", "kind": "contract", "release": "1.10.0"})
    (copy / "migrations" / "plan.yml").write_text(yaml.safe_dump(plan, sort_keys=False))
    for script in ("deploy", "verify", "revert"):
        (copy / "migrations" / script / "0005_future.sql").write_text("SELECT 1;\n")
    assert build(tmp_path / "out", "--version", "1.9.0", "--source", str(copy)).returncode == 0  # 1.10.0 > 1.9.0 as versions
    files = release_files(tmp_path / "out" / "payment-service-1.9.0.tar.gz")
    assert "0005_future" not in files["migrations/plan.yml"].decode()
    assert not [name for name in files if "0005_future" in name]
    assert build(tmp_path / "out", "--version", "1.10.0", "--source", str(copy)).returncode == 0
    files = release_files(tmp_path / "out" / "payment-service-1.10.0.tar.gz")
    assert yaml.safe_load(files["migrations/plan.yml"])["changes"][-1]["name"] == "0005_future"
    assert "migrations/deploy/0005_future.sql" in files


def release_files(archive: Path) -> dict[str, bytes]:
    """Path inside the top directory to content, for every file of an artifact."""
    with tarfile.open(archive) as tar:
        files = [member for member in tar if member.isfile()]
        return {member.name.split("/", 1)[1]: tar.extractfile(member).read()  # type: ignore[union-attr]
                for member in files}


@pytest.mark.parametrize("version", ["1.1", "v1.1.0", "1.1.0-rc1", "01.1.0", ""])
def test_bad_version_is_rejected_before_anything_is_written(tmp_path: Path, version: str) -> None:
    result = build(tmp_path / "out", "--version", version)
    assert result.returncode == 2
    assert "semantic version" in result.stderr
    assert not (tmp_path / "out").exists()
