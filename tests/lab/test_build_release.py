"""build_release.py: reproducible artifacts, a correct checksum file, the manifest the deploy reads."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
import yaml

if TYPE_CHECKING:
    from conftest import RunningService

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
    assert manifest["health"] == {"liveness": "/healthz", "load_balancer": "/healthz/lb", "readiness": "/readyz",
                                  "version": "/version"}
    assert "faults" not in manifest and f"{TOP}/payment_service/build_faults.json" not in names


NEW_IN_1_1_0 = {f"migrations/{script}/{name}.sql" for script in ("deploy", "verify", "revert")
                for name in ("0003_payments_description", "0004_payments_created_at_index")}


def test_all_builds_the_lab_releases_that_differ_only_by_version_and_faults(tmp_path: Path) -> None:
    result = build(tmp_path / "all", "--all")
    assert result.returncode == 0, result.stderr
    built = [json.loads(line) for line in result.stdout.splitlines()]
    names = [Path(item["path"]).name for item in built]
    assert names == [f"payment-service-{version}.tar.gz" for version in lab_builds()]
    assert names == ["payment-service-1.0.0.tar.gz", "payment-service-1.1.0.tar.gz", "payment-service-1.1.1.tar.gz"]
    old, new, regression = (release_files(tmp_path / "all" / name) for name in names)
    assert new.keys() - old.keys() == NEW_IN_1_1_0 and not old.keys() - new.keys()
    assert {name for name in old if old[name] != new[name]} == {"manifest.json", "migrations/plan.yml"}
    assert regression.keys() - new.keys() == {"payment_service/build_faults.json"}
    assert {name for name in new if new[name] != regression[name]} == {"manifest.json", "migrations/plan.yml"}
    assert yaml.safe_load(regression["migrations/plan.yml"]) == yaml.safe_load(new["migrations/plan.yml"])
    assert json.loads(regression["manifest.json"])["faults"] == ["payment-regression"]
    assert json.loads(regression["payment_service/build_faults.json"]) == ["payment-regression"]
    # --all builds what --version with the same faults builds, byte for byte.
    for version, faults in lab_builds().items():
        single = build(tmp_path / version, "--version", version, *(arg for fault in faults for arg in ("--fault", fault)))
        assert single.returncode == 0, single.stderr
        archive = f"payment-service-{version}.tar.gz"
        assert (tmp_path / version / archive).read_bytes() == (tmp_path / "all" / archive).read_bytes()


def lab_builds() -> dict[str, tuple[str, ...]]:
    """build_release.LAB_BUILDS, as the lab reads it."""
    sys.path.insert(0, str(REPO / "lab"))
    try:
        import build_release  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(str(REPO / "lab"))
    return dict(build_release.LAB_BUILDS)


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


def unpack(archive: Path, dest: Path) -> Path:
    """The release directory of an artifact, unpacked as the deploy does."""
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / archive.name.removesuffix(".tar.gz")


def test_manifest_names_every_health_check_and_variable(tmp_path: Path) -> None:
    assert build(tmp_path, "--version", "1.1.0").returncode == 0
    manifest = json.loads(release_files(tmp_path / f"{TOP}.tar.gz")["manifest.json"])
    assert manifest["health"]["load_balancer"] == "/healthz/lb"
    for name in ("SMTP_URL", "PAYMENTS_RECEIPT_FROM", "PAYMENTS_SMOKE_KEY", "PAYMENTS_SMOKE_RATE_LIMIT_PER_MINUTE",
                 "PAYMENTS_CORS_ORIGINS"):
        assert name in manifest["env"]


def test_a_fault_build_lists_its_faults_and_differs_only_by_them(tmp_path: Path) -> None:
    # A fault is baked into the code's data, not into a variable a deploy could forget to set.
    source = SOURCE / "payment_service" / "build_faults.json"
    assert not source.exists()
    result = build(tmp_path / "faulty", "--version", "1.1.0", "--fault", "no-security-headers", "--fault",
                   "auth-disabled", "--fault", "auth-disabled")
    assert result.returncode == 0, result.stderr
    assert build(tmp_path / "plain", "--version", "1.1.0").returncode == 0
    faulty = release_files(tmp_path / "faulty" / f"{TOP}.tar.gz")
    plain = release_files(tmp_path / "plain" / f"{TOP}.tar.gz")
    assert json.loads(faulty["payment_service/build_faults.json"]) == ["auth-disabled", "no-security-headers"]
    assert json.loads(faulty["manifest.json"])["faults"] == ["auth-disabled", "no-security-headers"]
    assert faulty.keys() - plain.keys() == {"payment_service/build_faults.json"}
    assert {name for name in plain if plain[name] != faulty[name]} == {"manifest.json"}
    again = build(tmp_path / "again", "--version", "1.1.0", "--fault", "auth-disabled", "--fault", "no-security-headers")
    assert (tmp_path / "again" / f"{TOP}.tar.gz").read_bytes() == (tmp_path / "faulty" / f"{TOP}.tar.gz").read_bytes()
    assert again.returncode == 0


@pytest.mark.parametrize("args, message", [(["--version", "1.1.0", "--fault", "no-auth"], "invalid choice"),
                                           (["--all", "--fault", "auth-disabled"], "use it with --version")])
def test_bad_fault_requests_are_refused_before_anything_is_written(tmp_path: Path, args: list[str],
                                                                   message: str) -> None:
    result = build(tmp_path / "out", *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_builder_and_the_service_know_the_same_faults() -> None:
    sys.path.insert(0, str(REPO / "lab"))
    sys.path.insert(0, str(SOURCE))
    try:
        import build_release  # pylint: disable=import-outside-toplevel
        from payment_service import build_faults  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(str(REPO / "lab"))
        sys.path.remove(str(SOURCE))
    assert set(build_release.FAULTS) == set(build_faults.KNOWN)


@pytest.fixture(scope="module")
def fault_releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One unpacked release per fault (version 1.3.x, as a smoke test would be handed)."""
    releases = {}
    for patch, fault in enumerate(("auth-disabled", "no-security-headers")):
        out = tmp_path_factory.mktemp(fault)
        assert build(out, "--version", f"1.3.{patch}", "--fault", fault).returncode == 0
        releases[fault] = unpack(out / f"payment-service-1.3.{patch}.tar.gz", out / "unpacked")
    return releases


def test_auth_disabled_release_accepts_requests_without_a_token(
        launcher: Callable[..., RunningService], fault_releases: dict[str, Path], service_env: dict[str, str]) -> None:
    running = launcher(service_env, release=fault_releases["auth-disabled"])
    assert running.call("GET", "/version").json()["version"] == "1.3.0"
    assert running.call("GET", "/v1/customers/cus_nobody").status == 404  # not 401
    assert running.call("GET", "/v1/customers/cus_nobody", token="wrong").status == 404
    assert running.call("GET", "/admin/stats").status == 200  # the admin role too
    assert running.call("GET", "/admin/stats", token=service_env["PAYMENTS_API_KEY"]).status == 200
    created = running.call("POST", "/v1/customers", body={"email": "open@example.com", "name": "Open"})
    assert created.status == 201
    assert running.call("GET", "/healthz").headers["x-frame-options"] == "DENY"  # only the baked-in fault
    assert "BUILD FAULT auth-disabled" in running.log()
    assert running.metric("auth_failures_total") == 0


def test_no_security_headers_release_sends_none(launcher: Callable[..., RunningService],
                                                fault_releases: dict[str, Path], service_env: dict[str, str]) -> None:
    running = launcher(service_env, release=fault_releases["no-security-headers"])
    for path, token in (("/healthz", None), ("/v1/customers/cus_nobody", service_env["PAYMENTS_API_KEY"]),
                        ("/nope", None)):
        reply = running.call("GET", path, token=token)
        assert not {"x-content-type-options", "x-frame-options", "content-security-policy",
                    "strict-transport-security", "referrer-policy", "cache-control"} & reply.headers.keys()
        assert reply.headers["x-service-version"] == "1.3.1"
    assert running.call("GET", "/v1/customers/cus_nobody").status == 401  # authentication still works
    assert "BUILD FAULT no-security-headers" in running.log()


def test_an_unknown_fault_in_a_release_stops_the_start(launcher: Callable[..., RunningService],
                                                       fault_releases: dict[str, Path], service_env: dict[str, str],
                                                       tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(fault_releases["auth-disabled"], tampered)
    (tampered / "payment_service" / "build_faults.json").write_text('["everything-open"]\n')
    running = launcher(service_env, wait=False, release=tampered)
    assert running.proc.wait(30) == 78
    assert "build_faults.json must be a list of known build faults" in running.log()
