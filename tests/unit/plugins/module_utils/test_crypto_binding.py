"""Version 2 of the backup format binds an object to its backup (id, database, creation time); manifests carry a MAC."""

from __future__ import annotations

import os

import pytest

from ansible_collections.payments.deploy.plugins.module_utils import _crypto as crypto

KEY = bytes(range(32))
A = crypto.backup_context("pay-20260101T000000Z-aaaaaa", "pay", "2026-01-01T00:00:00.000000Z")
B = crypto.backup_context("pay-20260102T000000Z-bbbbbb", "pay", "2026-01-02T00:00:00.000000Z")


def encrypt(data: bytes, context: bytes | None) -> bytes:
    enc = crypto.Encryptor(KEY, 64, context)
    return b"".join([enc.header, *enc.update(data), enc.finish()])


def decrypt(blob: bytes, context: bytes | None) -> bytes:
    dec = crypto.Decryptor(KEY, context)
    return b"".join([*dec.update(blob), dec.finish()])


def refused(blob: bytes, context: bytes | None) -> crypto.BackupIntegrityError:
    with pytest.raises(crypto.BackupIntegrityError) as caught:
        decrypt(blob, context)
    return caught.value


def test_an_object_reads_back_only_as_the_backup_it_was_made_for() -> None:
    data = os.urandom(300)
    blob = encrypt(data, A)
    assert blob[6] == 2 and len(blob) == crypto.HEADER_SIZE_V2 + 5 * (4 + 16) + 300
    assert decrypt(blob, A) == data
    error = refused(blob, B)
    assert error.kind == "misplaced" and "the object was made for another backup" in str(error)


def test_rewriting_the_context_in_the_header_fails_authentication() -> None:
    blob = encrypt(os.urandom(300), A)
    forged = blob[:crypto.HEADER_SIZE] + B + blob[crypto.HEADER_SIZE_V2:]
    error = refused(forged, B)
    assert error.kind == "tampered" and str(error).startswith("chunk 0 failed authentication")


def test_a_version_1_object_is_refused_where_a_backup_is_expected() -> None:
    blob = encrypt(b"old", None)
    assert blob[6] == 1 and decrypt(blob, None) == b"old"
    error = refused(blob, A)
    assert error.kind == "unauthenticated" and "format version 1" in str(error)


def test_truncated_version_2_header_names_its_size() -> None:
    blob = encrypt(b"x", A)
    assert str(refused(blob[:50], A)) == "the backup is truncated: 50 bytes, less than its 72-byte header"


def test_manifest_mac_covers_every_field_and_depends_on_the_key() -> None:
    manifest = {"backup_id": "pay-20260101T000000Z-aaaaaa", "database": "pay", "row_counts": {"public.t": 3}, "timings": {"dump": 1.25}}
    signed = {**manifest, "mac": crypto.manifest_mac(KEY, manifest)}
    assert crypto.manifest_authentic(KEY, signed) and signed["mac"].startswith("hmac-sha256:")
    assert crypto.manifest_authentic(KEY, dict(reversed(list(signed.items())))), "the order of fields does not matter"
    assert not crypto.manifest_authentic(bytes(32), signed)
    assert not crypto.manifest_authentic(KEY, {**signed, "row_counts": {"public.t": 4}})
    assert not crypto.manifest_authentic(KEY, manifest)
