# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic file writes shared by the modules (map files, signing secrets, backups, releases)."""

from __future__ import annotations

import os
import tempfile


def write_text_atomic(path: str, text: str, default_mode: int = 0o644, mode: int | None = None) -> None:
    """Replace ``path`` with ``text`` atomically: temp file in the same directory, fsync, rename.

    Keeps the mode and owner of the file it replaces (``mode``, when given, is used instead: 0o600 for a
    secret, which the temporary file already has from its creation); readers see the old or the new file,
    never a mix.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        current = os.stat(path)
        kept_mode, owner = current.st_mode & 0o7777, (current.st_uid, current.st_gid)
    except FileNotFoundError:
        kept_mode, owner = default_mode, None
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
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def fsync_dir(path: str) -> None:
    """Make a rename or a new file in directory ``path`` durable (the directory entry itself is fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
