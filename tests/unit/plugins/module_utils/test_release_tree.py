"""Release archives are checked member by member before anything is written, unpacked with our owner and modes, and
an unpacked tree is checked against its record: changed content, modes, added and removed files are all noticed."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from ansible_collections.payments.deploy.plugins.module_utils import _release_tree as tree

TOP = "payment-service-1.0.0"
SHA = "a" * 64


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
          link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, len(data), link
    info.uid = info.gid = 4242
    return info, data


def archive(path: Path, *entries: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return path


def good(path: Path) -> Path:
    return archive(path, entry(TOP, tarfile.DIRTYPE, mode=0o777),
                   entry(f"{TOP}/manifest.json", data=b"{}\n", mode=0o666),
                   entry(f"{TOP}/bin/run", data=b"#!/bin/sh\n", mode=0o4777),
                   entry(f"{TOP}/current", tarfile.SYMTYPE, link="bin/run"),
                   entry(f"{TOP}/copy", tarfile.LNKTYPE, link=f"{TOP}/manifest.json"))


def test_unpacks_with_our_owner_and_modes_not_the_archives(tmp_path):
    staging = tmp_path / "staging"
    assert tree.extract(str(good(tmp_path / "a.tar.gz")), str(staging), os.getuid(), os.getgid()) == 4
    modes = {path.relative_to(staging).as_posix(): stat.S_IMODE(path.lstat().st_mode)
             for path in [staging, *staging.rglob("*")] if not path.is_symlink()}
    assert modes == {".": 0o755, "bin": 0o755, "bin/run": 0o755, "manifest.json": 0o644, "copy": 0o644}
    assert {path.lstat().st_uid for path in [staging, *staging.rglob("*")]} == {os.getuid()}
    assert os.readlink(staging / "current") == "bin/run"
    assert (staging / "copy").read_bytes() == b"{}\n"


@pytest.mark.parametrize(("member", "message"), [
    (entry("/etc/passwd", data=b"x"), "absolute path"),
    (entry(f"{TOP}/../../evil", data=b"x"), "holds '..'"),
    (entry("other-top/file", data=b"x"), "outside the archive's top directory"),
    (entry(f"{TOP}/escape", tarfile.SYMTYPE, link="../../etc"), "points outside the release"),
    (entry(f"{TOP}/abs", tarfile.SYMTYPE, link="/etc/passwd"), "points outside the release"),
    (entry(f"{TOP}/hard", tarfile.LNKTYPE, link="/etc/passwd"), "absolute path"),
    (entry(f"{TOP}/hard", tarfile.LNKTYPE, link=f"{TOP}/nothing"), "does not name a regular file"),
    (entry(f"{TOP}/dev", tarfile.CHRTYPE), "device, FIFO or other special file"),
    (entry(f"{TOP}/fifo", tarfile.FIFOTYPE), "device, FIFO or other special file"),
    (entry(f"{TOP}/manifest.json", data=b"again"), "appears twice"),
])
def test_unsafe_members_are_refused_before_anything_is_written(tmp_path, member, message):
    path = archive(tmp_path / "bad.tar.gz", entry(TOP, tarfile.DIRTYPE), entry(f"{TOP}/manifest.json", data=b"{}"),
                   member)
    with pytest.raises(tree.ArchiveError, match=message):
        tree.extract(str(path), str(tmp_path / "staging"), os.getuid(), os.getgid())
    assert not (tmp_path / "staging").exists()
    assert not (tmp_path / "evil").exists()


def test_members_below_a_symbolic_link_are_refused(tmp_path):
    path = archive(tmp_path / "bad.tar.gz", entry(TOP, tarfile.DIRTYPE),
                   entry(f"{TOP}/lib", tarfile.SYMTYPE, link="."), entry(f"{TOP}/lib/file", data=b"x"))
    with pytest.raises(tree.ArchiveError, match="lies below 'lib', which is not a directory"):
        tree.extract(str(path), str(tmp_path / "staging"), os.getuid(), os.getgid())


@pytest.fixture()
def installed(tmp_path: Path) -> Path:
    directory = tmp_path / "1.0.0"
    tree.extract(str(good(tmp_path / "a.tar.gz")), str(directory), os.getuid(), os.getgid())
    tree.write_record(str(directory), SHA, "ABCDEF", os.getuid(), os.getgid())
    return directory


def test_untouched_release_matches_its_record(installed):
    record = tree.check_installed(str(installed), SHA)
    assert record["signature_key_id"] == "ABCDEF"
    assert record["files"]["manifest.json"]["type"] == "file"


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: (d / "manifest.json").write_text('{"x": 1}\n'), r"changed: manifest.json"),
    (lambda d: (d / "bin" / "run").chmod(0o777), r"changed: bin/run"),
    (lambda d: (d / "bin" / "extra.py").write_text("x"), r"added: bin/extra.py"),
    (lambda d: (d / "copy").unlink(), r"missing: copy"),
    (lambda d: (d / tree.RECORD).unlink(), "has no install record"),
    (lambda d: (d / tree.RECORD).write_text("[]"), "not in the expected format"),
])
def test_changed_release_is_refused(installed, change, message):
    change(installed)
    with pytest.raises(tree.RefusedError, match=message):
        tree.check_installed(str(installed), SHA)


def test_release_of_another_artifact_is_refused(installed):
    with pytest.raises(tree.RefusedError, match=f"not from the verified artifact {'b' * 64}"):
        tree.check_installed(str(installed), "b" * 64)
