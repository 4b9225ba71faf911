# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unpack a release archive safely and keep a record that later runs check the release directory against.

Private to the payments.deploy collection: the interface may change without notice.

- Every member is checked before anything is written: one top directory (stripped, like ``tar --strip-components=1``),
  no absolute path, no ``..``, no device, FIFO or other special file, no duplicate, nothing below a symbolic link,
  symbolic links relative and inside the tree, hard links only to a regular file of the archive.
- Owners and modes of the archive are ignored: directories get 0755, files 0644 (0755 when the archive marks them
  executable for their owner), all owned by the given owner and group.
- The record (``RECORD``, JSON, written last) holds the artifact's sha256, the signing key id and the type, sha256,
  mode, uid and gid of every entry; a directory whose record is missing, names another artifact or no longer matches
  its files is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import stat
import tarfile
import typing as t

from ansible_collections.payments.deploy.plugins.module_utils._files import fsync_dir

RECORD = ".release-record.json"
RECORD_FORMAT = 1
DIR_MODE, FILE_MODE, EXEC_MODE = 0o755, 0o644, 0o755
CHUNK = 1 << 20
SHOWN = 5


class ArchiveError(Exception):
    """The archive holds a member that must not be unpacked."""


class RefusedError(Exception):
    """An existing release directory cannot be trusted."""


class Member(t.NamedTuple):
    path: str  # relative to the top directory
    member: tarfile.TarInfo


def _relative(name: str, top: str | None) -> tuple[str, str]:
    """(top component, the rest) of a member name; ArchiveError when it is absolute or climbs."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"member {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"member {name!r} holds '..'")
    if not parts:
        raise ArchiveError(f"member {name!r} has an empty path")
    if top is not None and parts[0] != top:
        raise ArchiveError(f"member {name!r} is outside the archive's top directory {top!r}")
    return parts[0], "/".join(parts[1:])


def check_members(archive: tarfile.TarFile) -> list[Member]:
    """The members below the top directory, in archive order; ArchiveError on the first unsafe one."""
    members = archive.getmembers()
    if not members:
        raise ArchiveError("the archive is empty")
    top = _relative(members[0].name, None)[0]
    kept: list[Member] = []
    seen: dict[str, tarfile.TarInfo] = {}
    for member in members:
        rest = _relative(member.name, top)[1]
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise ArchiveError(f"member {member.name!r} is a device, FIFO or other special file")
        if not rest:
            if not member.isdir():
                raise ArchiveError(f"the archive's top entry {member.name!r} is not a directory")
            continue
        if rest in seen:
            raise ArchiveError(f"member {member.name!r} appears twice")
        parent = posixpath.dirname(rest)
        while parent:
            if parent in seen and not seen[parent].isdir():
                raise ArchiveError(f"member {member.name!r} lies below {parent!r}, which is not a directory")
            parent = posixpath.dirname(parent)
        if member.issym():
            target = member.linkname
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rest), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise ArchiveError(f"symbolic link {member.name!r} -> {target!r} points outside the release")
        if member.islnk():
            linked = _relative(member.linkname, top)[1]
            if linked not in seen or not seen[linked].isfile():
                raise ArchiveError(f"hard link {member.name!r} -> {member.linkname!r} does not name a regular file "
                                   "earlier in the archive")
        seen[rest] = member
        kept.append(Member(rest, member))
    return kept


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract(archive_path: str, staging: str, uid: int, gid: int) -> int:
    """Unpack into the new directory ``staging`` with our owners and modes; the number of entries written."""
    with tarfile.open(archive_path, "r:*") as archive:
        members = check_members(archive)
        os.mkdir(staging, 0o700)
        for rest, member in members:
            path = os.path.join(staging, *rest.split("/"))
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            if member.isdir():
                os.makedirs(path, mode=0o700, exist_ok=True)
            elif member.issym():
                os.symlink(member.linkname, path)
            else:
                source = archive.getmember(member.linkname) if member.islnk() else member
                reader = archive.extractfile(source)
                if reader is None:
                    raise ArchiveError(f"member {member.name!r} has no content")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with reader, os.fdopen(fd, "wb") as handle:
                    shutil.copyfileobj(reader, handle, CHUNK)
                    handle.flush()
                    os.fsync(handle.fileno())
                if source.mode & stat.S_IXUSR:
                    os.chmod(path, EXEC_MODE)
                else:
                    os.chmod(path, FILE_MODE)
    for root, dirs, files in os.walk(staging):
        for name in dirs + files:
            path = os.path.join(root, name)
            os.lchown(path, uid, gid)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, DIR_MODE)
    os.chown(staging, uid, gid)
    os.chmod(staging, DIR_MODE)
    return len(members)


def tree_manifest(directory: str) -> dict[str, dict[str, t.Any]]:
    """Type, content sha256 (files), target (links), mode, uid and gid of every entry; the record left out."""
    entries: dict[str, dict[str, t.Any]] = {}
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        names = sorted(dirs + files)
        if root == directory:
            names.insert(0, "")  # the release directory itself
        for name in names:
            path = os.path.join(root, name) if name else root
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            if relative == RECORD:
                continue
            info = os.lstat(path)
            entry: dict[str, t.Any] = {"mode": f"{stat.S_IMODE(info.st_mode):04o}", "uid": info.st_uid,
                                       "gid": info.st_gid}
            if stat.S_ISLNK(info.st_mode):
                entry.update(type="link", target=os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entry["type"] = "dir"
            elif stat.S_ISREG(info.st_mode):
                entry.update(type="file", sha256=_file_sha256(path))
            else:
                entry["type"] = "special"
            entries[relative] = entry
    return entries


def write_record(directory: str, artifact_sha256: str, key_id: str | None, uid: int, gid: int) -> dict[str, t.Any]:
    """Write the record of an unpacked tree (last, fsynced): what later runs check the directory against."""
    record = {"format": RECORD_FORMAT, "artifact_sha256": artifact_sha256, "signature_key_id": key_id,
              "files": tree_manifest(directory)}
    path = os.path.join(directory, RECORD)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fchmod(handle.fileno(), FILE_MODE)
        os.fchown(handle.fileno(), uid, gid)
        os.fsync(handle.fileno())
    fsync_dir(directory)
    return record


def read_record(directory: str) -> dict[str, t.Any]:
    """The directory's record; RefusedError when it is missing or unreadable."""
    path = os.path.join(directory, RECORD)
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError as error:
        raise RefusedError(f"it has no install record ({RECORD}): it was not unpacked by this role, or its unpack "
                           "did not finish") from error
    except (OSError, ValueError) as error:
        raise RefusedError(f"its install record {RECORD} cannot be read: {error}") from error
    well_formed = isinstance(record, dict) and isinstance(record.get("files"), dict)
    if not well_formed or record.get("format") != RECORD_FORMAT:
        raise RefusedError(f"its install record {RECORD} is not in the expected format")
    return record


def _differences(recorded: dict[str, t.Any], found: dict[str, t.Any]) -> list[str]:
    changed = sorted(path for path in recorded.keys() & found.keys() if recorded[path] != found[path])
    missing = sorted(recorded.keys() - found.keys())
    added = sorted(found.keys() - recorded.keys())
    notes = []
    for label, paths in (("changed", changed), ("missing", missing), ("added", added)):
        if paths:
            shown = ", ".join(paths[:SHOWN]) + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")
            notes.append(f"{label}: {shown}")
    return notes


def check_installed(directory: str, artifact_sha256: str) -> dict[str, t.Any]:
    """The record of an existing release directory that still matches; RefusedError otherwise."""
    record = read_record(directory)
    if record.get("artifact_sha256") != artifact_sha256:
        raise RefusedError(f"it was unpacked from an artifact with sha256 {record.get('artifact_sha256')}, "
                           f"not from the verified artifact {artifact_sha256}")
    notes = _differences(record["files"], tree_manifest(directory))
    if notes:
        raise RefusedError("its files no longer match its install record (" + "; ".join(notes) + ")")
    return record
