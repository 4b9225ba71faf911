# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic file writes shared by the modules (map files, signing secrets, backups, releases)."""

from __future__ import annotations

import os
import tempfile
import typing as t


def write_text_atomic(path: str, text: str, default_mode: int = 0o644, mode: int | None = None, module: t.Any = None) -> None:
    """Replace ``path`` with ``text`` atomically: temp file in the same directory, fsync, rename.

    Keeps the mode and owner of the file it replaces (``mode``, when given, is used instead: 0o600 for a
    secret, which the temporary file already has from its creation); readers see the old or the new file,
    never a mix.

    With ``module`` (an AnsibleModule) and no ``mode``, the rename is ``module.atomic_move``, which also keeps the
    replaced file's SELinux context; a new file then gets ``default_mode`` as without it. A secret (``mode`` given)
    never goes through atomic_move: it chmods a new file to the umask's default (0644 under umask 022) after the
    rename, and gives a replacement the replaced file's mode, so the secret would be readable by others for a moment
    or for good.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        current = os.stat(path)
        kept_mode, owner = current.st_mode & 0o7777, (current.st_uid, current.st_gid)
    except FileNotFoundError:
        kept_mode, owner = default_mode, None
    by_module = module is not None and mode is None
    mode = kept_mode if mode is None else mode
    fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if owner is not None and (os.geteuid() == 0 or owner[0] == os.geteuid()):
                os.fchown(handle.fileno(), *owner)
            os.fsync(handle.fileno())
        if by_module:
            module.atomic_move(tmp_path, path)
            if owner is None:  # atomic_move gave the new file the umask's mode
                os.chmod(path, default_mode)
        else:
            os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)


def fsync_dir(path: str) -> None:
    """Make a rename or a new file in directory ``path`` durable (the directory entry itself is fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
