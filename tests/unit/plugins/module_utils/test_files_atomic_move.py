"""write_text_atomic through AnsibleModule.atomic_move (non-secret files) and through os.replace (secrets): the mode
and owner a file ends with are the same either way, a secret is never readable by others at any point, and a failed
move leaves neither a temporary file nor a changed target."""

from __future__ import annotations

import os
import stat
import threading
import typing as t
from pathlib import Path

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _files


@pytest.fixture(name="module")
def ansible_module() -> AnsibleModule:
    with patch_module_args({}):
        return AnsibleModule(argument_spec={})


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_new_file_gets_the_default_mode_with_or_without_the_module(module: AnsibleModule, tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        _files.write_text_atomic(str(tmp_path / "plain"), "a b\n")
        _files.write_text_atomic(str(tmp_path / "moved"), "a b\n", module=module)
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "moved") == mode_of(tmp_path / "plain")
    assert (tmp_path / "moved").read_text() == (tmp_path / "plain").read_text() == "a b\n"


def test_a_replaced_file_keeps_its_mode_through_atomic_move(module: AnsibleModule, tmp_path: Path) -> None:
    target = tmp_path / "map"
    target.write_text("old\n")
    target.chmod(0o640)
    _files.write_text_atomic(str(target), "new\n", module=module)
    assert target.read_text() == "new\n"
    assert mode_of(target) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["map"], "no temporary file is left"


def test_atomic_move_is_what_replaces_the_file(module: AnsibleModule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moves: list[tuple[str, str]] = []
    real = module.atomic_move

    def recording(src: str, dest: str, *args: t.Any, **kwargs: t.Any) -> None:
        moves.append((src, dest))
        real(src, dest, *args, **kwargs)

    monkeypatch.setattr(module, "atomic_move", recording)
    target = tmp_path / "map"
    _files.write_text_atomic(str(target), "x\n", module=module)
    _files.write_text_atomic(str(tmp_path / "secret"), "s\n", mode=0o600, module=module)
    assert [dest for src, dest in moves] == [str(target)], "a secret never goes through atomic_move"
    assert os.path.dirname(moves[0][0]) == str(tmp_path), "the temporary file is beside the target (same file system)"


def test_a_secret_is_never_readable_by_others_while_it_is_written(module: AnsibleModule, tmp_path: Path) -> None:
    """Watch the directory while secrets are written over a 0644 file: no secret content is ever seen with group or
    other bits set."""
    target = tmp_path / "secret"
    target.write_text("public\n")
    target.chmod(0o644)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                with open(target, encoding="utf-8") as handle:  # mode and content of the same file
                    info = os.fstat(handle.fileno())
                    if handle.read().startswith("whsec_"):
                        seen.append(stat.S_IMODE(info.st_mode))
            except (FileNotFoundError, PermissionError):
                continue

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for number in range(200):
            _files.write_text_atomic(str(target), f"whsec_{number}\n", mode=0o600, module=module)
    finally:
        stop.set()
        watcher.join()
    assert seen, "the watcher saw the secret"
    assert {mode & 0o077 for mode in seen} == {0}
    assert mode_of(target) == 0o600


def test_a_failed_move_leaves_the_target_and_no_temporary_file(module: AnsibleModule, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "map"
    target.write_text("old\n")

    def broken(src: str, dest: str, *args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "atomic_move", broken)
    with pytest.raises(OSError, match="No space left"):
        _files.write_text_atomic(str(target), "new\n", module=module)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["map"]
