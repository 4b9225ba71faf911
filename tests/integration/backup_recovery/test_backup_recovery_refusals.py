"""What the recovery script refuses: each damage fails with its own exit status and a message naming it, and no output
file (not even a temporary one) is left behind.

Damage to the object is tried twice: against the real manifest (caught by its size and sha256) and against a manifest
re-signed with the key for the damaged object, which reaches the chunk authentication (a manifest written for a
damaged object, or the sha256 check taken away, must not let it through either).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import typing as t
from pathlib import Path

import pytest

from pg_backup_helpers import records, sign_manifest
from recovery_runner import Backup, recover

EXIT_KEY, EXIT_WRONG_KEY, EXIT_MANIFEST, EXIT_MISMATCH, EXIT_DAMAGED = 3, 4, 5, 6, 7


def copy_backup(backup: Backup, into: Path) -> Backup:
    store = into / "store"
    store.mkdir()
    shutil.copy(backup.object_path, store)
    shutil.copy(backup.manifest_path, store)
    return Backup(backup.backup_id, store)


def refuse(workdir: Path, backup: Backup, env: dict[str, str], manifest: Path | None = None) -> tuple[int, str]:
    """Run the recovery into ``workdir/out``; assert that nothing was written there."""
    out = workdir / "out"
    out.mkdir(exist_ok=True)
    proc = recover(workdir, "--object", str(backup.object_path), "--manifest", str(manifest or backup.manifest_path),
                   "--output", str(out / "recovered.dump"), env=env)
    assert not list(out.iterdir()), "a refused backup leaves no file"
    return proc.returncode, proc.stderr.decode()


def resign_for(backup: Backup, key: str) -> Path:
    """A manifest authenticated with the key that records the (damaged) object's real size and sha256."""
    data = backup.object_path.read_bytes()
    manifest = backup.manifest()
    manifest["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["sizes"] = {**manifest["sizes"], "stored_bytes": len(data)}
    path = backup.directory / "resigned.manifest.json"
    path.write_text(json.dumps(sign_manifest(manifest, key)))
    return path


def truncate_at_chunk(data: bytes) -> bytes:
    offset, size = records(data)[2]
    return data[:offset + size]


def flip_in_chunk(data: bytes) -> bytes:
    offset, size = records(data)[3]
    position = offset + size // 2
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1:]


def swap_chunks(data: bytes) -> bytes:
    first, size1 = records(data)[1]
    second, size2 = records(data)[2]
    return data[:first] + data[second:second + size2] + data[first:first + size1] + data[second + size2:]


def cut_inside_chunk(data: bytes) -> bytes:
    offset, size = records(data)[2]
    return data[:offset + size // 2]


DAMAGE: dict[str, tuple[t.Callable[[bytes], bytes], str]] = {
    "truncated at a chunk boundary": (truncate_at_chunk, "truncated: it ends after chunk 2, which is intact but is not the last chunk"),
    "truncated inside a chunk": (cut_inside_chunk, "truncated in the middle of chunk 2"),
    "a flipped byte": (flip_in_chunk, "chunk 3 failed authentication"),
    "two chunks swapped": (swap_chunks, "chunk 2 was found at position 1"),
}


def test_wrong_key_is_named(backup: Backup, workdir: Path) -> None:
    other = os.urandom(32).hex()
    status, message = refuse(workdir, backup, {"ENCRYPTION_KEY": other})
    assert status == EXIT_WRONG_KEY, message
    assert "wrong key" in message and backup.manifest()["encryption"]["key_id"] in message
    assert other not in message


@pytest.mark.parametrize("value", ["", "abc", "zz" * 32])
def test_missing_or_malformed_key(backup: Backup, workdir: Path, value: str) -> None:
    status, message = refuse(workdir, backup, {"ENCRYPTION_KEY": value})
    assert status == EXIT_KEY, message
    assert "ENCRYPTION_KEY" in message and (not value or value not in message)


def test_tampered_manifest_fails_its_mac(backup: Backup, key: str, workdir: Path) -> None:
    copy = copy_backup(backup, workdir)
    manifest = copy.manifest()
    manifest["row_counts"] = {name: count + 1 for name, count in manifest["row_counts"].items()}
    copy.manifest_path.write_text(json.dumps(manifest))
    status, message = refuse(workdir, copy, {"ENCRYPTION_KEY": key})
    assert status == EXIT_MANIFEST, message
    assert "failed authentication (MAC)" in message


def test_manifest_without_mac_is_refused(backup: Backup, key: str, workdir: Path) -> None:
    copy = copy_backup(backup, workdir)
    manifest = copy.manifest()
    del manifest["mac"]
    copy.manifest_path.write_text(json.dumps(manifest))
    status, message = refuse(workdir, copy, {"ENCRYPTION_KEY": key})
    assert status == EXIT_MANIFEST and "mac" in message, message


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_object_against_its_manifest(backup: Backup, key: str, workdir: Path, damage: str) -> None:
    copy = copy_backup(backup, workdir)
    change = DAMAGE[damage][0]
    copy.object_path.write_bytes(change(copy.object_path.read_bytes()))
    status, message = refuse(workdir, copy, {"ENCRYPTION_KEY": key})
    assert status == EXIT_MISMATCH, message
    assert ("bytes, but the manifest" in message) if "truncated" in damage else ("sha256 of" in message)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_object_fails_chunk_authentication(backup: Backup, key: str, workdir: Path, damage: str) -> None:
    copy = copy_backup(backup, workdir)
    change, expected = DAMAGE[damage]
    copy.object_path.write_bytes(change(copy.object_path.read_bytes()))
    status, message = refuse(workdir, copy, {"ENCRYPTION_KEY": key}, manifest=resign_for(copy, key))
    assert status == EXIT_DAMAGED, message
    assert expected in message


def test_manifest_of_another_backup(backup: Backup, other_backup: Backup, key: str, workdir: Path) -> None:
    status, message = refuse(workdir, backup, {"ENCRYPTION_KEY": key}, manifest=other_backup.manifest_path)
    assert status == EXIT_MISMATCH, message
    assert "another backup's object" in message and other_backup.backup_id in message


def test_object_bound_to_another_backup_by_its_header(backup: Backup, other_backup: Backup, key: str, workdir: Path) -> None:
    """Even a manifest authenticated with the key and recording this object's sha256 cannot pass it off as another backup."""
    copy = copy_backup(backup, workdir)
    manifest = other_backup.manifest()
    manifest["sha256"] = backup.manifest()["sha256"]
    manifest["sizes"] = backup.manifest()["sizes"]
    forged = workdir / "forged.manifest.json"
    forged.write_text(json.dumps(sign_manifest(manifest, key)))
    status, message = refuse(workdir, copy, {"ENCRYPTION_KEY": key}, manifest=forged)
    assert status == EXIT_MISMATCH, message
    assert "made for another backup" in message


def test_existing_output_is_not_overwritten(backup: Backup, key: str, workdir: Path) -> None:
    target = workdir / "recovered.dump"
    target.write_bytes(b"precious")
    proc = recover(workdir, "--object", str(backup.object_path), "--manifest", str(backup.manifest_path), "--output", str(target),
                   env={"ENCRYPTION_KEY": key})
    assert proc.returncode != 0 and "exists already" in proc.stderr.decode()
    assert target.read_bytes() == b"precious"
