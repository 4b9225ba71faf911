"""The encrypted backup format: round trips, and every kind of damage detected and named."""

from __future__ import annotations

import hashlib
import os
import struct
import typing as t

import pytest
import zstandard

from ansible_collections.payments.deploy.plugins.module_utils import _crypto as crypto
from ansible_collections.payments.deploy.plugins.module_utils._crypto import (
    HEADER_SIZE,
    BackupIntegrityError,
    BackupReader,
    BackupWriter,
    Decryptor,
    Encryptor,
    key_id,
    parse_header,
    parse_key,
)

KEY = bytes(range(32))
CHUNK = 64


def encrypt(data: bytes, key: bytes = KEY, chunk_size: int = CHUNK, pieces: int = 7) -> bytes:
    """Encrypt ``data`` fed in uneven pieces."""
    enc = Encryptor(key, chunk_size)
    out = [enc.header]
    position = 0
    while position < len(data):
        step = 1 + (position * 31 + pieces) % (3 * chunk_size)
        out.extend(enc.update(data[position:position + step]))
        position += step
    out.append(enc.finish())
    return b"".join(out)


def decrypt(blob: bytes, key: bytes = KEY, piece: int = 1000) -> bytes:
    dec = Decryptor(key)
    out = []
    for position in range(0, len(blob), piece):
        out.extend(dec.update(blob[position:position + piece]))
    out.append(dec.finish())
    return b"".join(out)


def records(blob: bytes) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    offset = HEADER_SIZE
    while offset < len(blob):
        (length,) = struct.unpack_from(">I", blob, offset)
        found.append((offset, 4 + length))
        offset += 4 + length
    return found


def refused(blob: bytes, key: bytes = KEY) -> BackupIntegrityError:
    with pytest.raises(BackupIntegrityError) as caught:
        decrypt(blob, key)
    return caught.value


DATA = os.urandom(10 * CHUNK + 17)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 10 * CHUNK + 17])
@pytest.mark.parametrize("piece", [1, 13, 1000])
def test_round_trip(size: int, piece: int) -> None:
    data = DATA[:size]
    blob = encrypt(data)
    assert decrypt(blob, piece=piece) == data
    chunks = max(1, -(-size // CHUNK))
    assert len(records(blob)) == chunks, "full chunks, the last one short or (for an empty stream) empty"
    assert len(blob) == HEADER_SIZE + chunks * (4 + 16) + size


def test_same_data_encrypts_differently_each_time() -> None:
    first, second = encrypt(DATA), encrypt(DATA)
    assert first != second
    assert parse_header(first)["salt"] != parse_header(second)["salt"]
    assert parse_header(first)["key_id"] == parse_header(second)["key_id"] == key_id(KEY) == hashlib.sha256(KEY).hexdigest()[:16]


def test_plaintext_is_released_only_for_authenticated_chunks() -> None:
    blob = encrypt(DATA)
    dec = Decryptor(KEY)
    first_two = records(blob)[1]
    released = dec.update(blob[:first_two[0] + first_two[1]])
    assert b"".join(released) == DATA[:CHUNK], "chunk 1 is held back until it is known not to be the last"


def test_wrong_key_is_named_before_decrypting() -> None:
    error = refused(encrypt(DATA), key=bytes(32))
    assert error.kind == "wrong_key"
    assert str(error) == (f"wrong key: the backup was encrypted with the key whose id is {key_id(KEY)}, "
                          f"but the given key has id {key_id(bytes(32))}")


@pytest.mark.parametrize("index", [0, 3, 10])
def test_flipped_byte_in_a_chunk_is_tampering(index: int) -> None:
    blob = bytearray(encrypt(DATA))
    offset, size = records(bytes(blob))[index]
    blob[offset + size // 2] ^= 0x40
    error = refused(bytes(blob))
    assert error.kind == "tampered"
    assert str(error) == f"chunk {index} failed authentication: the backup was modified or is corrupt"


def test_flipped_tag_byte_is_tampering() -> None:
    blob = bytearray(encrypt(DATA))
    offset, size = records(bytes(blob))[4]
    blob[offset + size - 1] ^= 0x01
    assert refused(bytes(blob)).kind == "tampered"


@pytest.mark.parametrize(("field", "position", "kind"), [
    ("magic", 0, "not_a_backup"),
    ("version", 6, "unsupported"),
    ("salt", 20, "tampered"),
    ("nonce prefix", 28, "tampered"),
    ("key id", 35, "wrong_key"),
])
def test_changed_header_is_detected(field: str, position: int, kind: str) -> None:
    blob = bytearray(encrypt(DATA))
    blob[position] ^= 0x01
    assert refused(bytes(blob)).kind == kind, field


def test_changed_chunk_size_in_the_header_is_detected() -> None:
    blob = bytearray(encrypt(DATA))
    struct.pack_into(">I", blob, 8, CHUNK * 2)
    assert refused(bytes(blob)).kind == "tampered"


def test_truncated_at_every_chunk_boundary() -> None:
    blob = encrypt(DATA)
    for index, (offset, size) in enumerate(records(blob)[:-1]):
        error = refused(blob[:offset + size])
        assert error.kind == "truncated"
        assert str(error) == f"the backup is truncated: it ends after chunk {index}, which is intact but is not the last chunk"


def test_truncated_inside_every_chunk() -> None:
    blob = encrypt(DATA)
    for index, (offset, size) in enumerate(records(blob)):
        for cut in (1, 3, size // 2, size - 1):
            error = refused(blob[:offset + cut])
            assert error.kind == "truncated", (index, cut)
            assert str(error).startswith(f"the backup is truncated in the middle of chunk {index} ")


def test_truncated_header() -> None:
    blob = encrypt(DATA)
    assert str(refused(blob[:HEADER_SIZE])) == "the backup is truncated: it holds a header but no chunk"
    assert str(refused(blob[:HEADER_SIZE - 1])).startswith("the backup is truncated: 39 bytes, less than its 40-byte header")
    assert refused(b"").kind == "truncated"
    assert refused(b"PK\x03\x04 a zip file").kind == "not_a_backup"


def test_swapped_chunks_are_reordering() -> None:
    blob = encrypt(DATA)
    (a, a_size), (b, b_size) = records(blob)[2:4]
    swapped = blob[:a] + blob[b:b + b_size] + blob[a:a + a_size] + blob[b + b_size:]
    error = refused(swapped)
    assert error.kind == "reordered"
    assert str(error) == "chunk 3 of the backup was found at position 2: chunks were reordered, duplicated or removed"


def test_duplicated_chunk_is_detected() -> None:
    blob = encrypt(DATA)
    offset, size = records(blob)[1]
    error = refused(blob[:offset + size] + blob[offset:offset + size] + blob[offset + size:])
    assert error.kind == "reordered" and "chunk 1 of the backup was found at position 2" in str(error)


def test_removed_middle_chunk_is_detected() -> None:
    blob = encrypt(DATA)
    offset, size = records(blob)[5]
    error = refused(blob[:offset] + blob[offset + size:])
    assert error.kind == "reordered" and "chunk 6 of the backup was found at position 5" in str(error)


def test_last_chunk_moved_to_the_middle_is_detected() -> None:
    blob = encrypt(DATA)
    found = records(blob)
    last_offset, last_size = found[-1]
    middle_offset = found[3][0]
    moved = blob[:middle_offset] + blob[last_offset:] + blob[middle_offset:last_offset]
    assert refused(moved).kind in ("reordered", "tampered")


def test_chunk_from_another_backup_with_the_same_key_is_detected() -> None:
    blob, other = encrypt(DATA), encrypt(DATA)
    offset, size = records(blob)[2]
    spliced = blob[:offset] + other[offset:offset + size] + blob[offset + size:]
    assert refused(spliced).kind == "tampered", "each backup has its own derived key"


def test_appended_data_is_detected() -> None:
    blob = encrypt(DATA)
    assert refused(blob + b"\x00\x00\x00").kind == "truncated"
    assert refused(blob + blob[HEADER_SIZE:HEADER_SIZE + 100]).kind in ("truncated", "reordered", "tampered")


def test_impossible_record_length_is_tampering() -> None:
    blob = bytearray(encrypt(DATA))
    offset, _size = records(bytes(blob))[1]
    struct.pack_into(">I", blob, offset, 10 * CHUNK)
    assert refused(bytes(blob)).kind == "tampered"


@pytest.mark.parametrize(("value", "problem"), [
    (None, "encryption_key is missing"),
    ("  ", "encryption_key is missing"),
    ("ab" * 16, "but has 32 characters"),
    ("g" * 64, "contains characters that are not hexadecimal"),
])
def test_parse_key_names_the_problem_not_the_value(value: str | None, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_key(value)
    assert problem in str(caught.value)
    if value and value.strip():
        assert value not in str(caught.value)


def test_parse_key_accepts_64_hex_characters() -> None:
    assert parse_key(KEY.hex().upper() + "\n") == KEY


# --- the whole stream: zstd inside AES-GCM, sha256 of what is stored ---------------------------------


def write_backup(data: bytes, chunk_size: int = 4096) -> tuple[bytes, BackupWriter]:
    out: list[bytes] = []
    writer = BackupWriter(KEY, out.append, level=3, chunk_size=chunk_size)
    for position in range(0, len(data), 10_000):
        writer.write(data[position:position + 10_000])
    writer.close()
    return b"".join(out), writer


def read_backup(blob: bytes) -> tuple[bytes, BackupReader]:
    out: list[bytes] = []
    reader = BackupReader(KEY, out.append)
    for position in range(0, len(blob), 7_000):
        reader.write(blob[position:position + 7_000])
    reader.close()
    return b"".join(out), reader


DUMP = b"".join(b"COPY payments %d\tpi_%s\t{\"amount\": %d}\n" % (i, hashlib.md5(str(i).encode()).hexdigest().encode(), i)
                for i in range(20_000))


def test_backup_stream_round_trip_with_sizes_and_checksum() -> None:
    blob, writer = write_backup(DUMP)
    assert writer.dump_bytes == len(DUMP)
    assert writer.stored_bytes == len(blob)
    assert writer.sha256.hexdigest() == hashlib.sha256(blob).hexdigest()
    assert writer.compressed_bytes < len(DUMP) / 2, "payment-like text compresses"
    assert writer.encryptor.chunks == len(records(blob)) > 3
    plain, reader = read_backup(blob)
    assert plain == DUMP
    assert reader.sha256.hexdigest() == writer.sha256.hexdigest() and reader.dump_bytes == len(DUMP)


def test_backup_stream_of_nothing() -> None:
    blob, writer = write_backup(b"")
    assert read_backup(blob)[0] == b"" and writer.encryptor.chunks == 1


def test_authentic_data_that_is_not_zstd_is_reported() -> None:
    enc = Encryptor(KEY, 4096)
    blob = enc.header + b"".join(enc.update(b"not a zstd frame at all" * 10)) + enc.finish()
    with pytest.raises(BackupIntegrityError) as caught:
        read_backup(blob)
    assert caught.value.kind == "corrupt_compression"


def test_zstd_stream_cut_short_inside_valid_encryption_is_reported() -> None:
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(DUMP)
    enc = Encryptor(KEY, 4096)
    blob = enc.header + b"".join(enc.update(frame[:len(frame) // 2])) + enc.finish()
    with pytest.raises(BackupIntegrityError) as caught:
        read_backup(blob)
    assert caught.value.kind == "corrupt_compression"
    assert "ends before its end-of-frame mark" in str(caught.value)


def test_sink_errors_propagate() -> None:
    def broken(data: bytes) -> t.NoReturn:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        writer = BackupWriter(KEY, broken)
        writer.write(DUMP)
        writer.close()


def test_chunk_size_limits() -> None:
    with pytest.raises(ValueError):
        Encryptor(KEY, 0)
    with pytest.raises(ValueError):
        Encryptor(KEY, crypto.MAX_CHUNK_SIZE + 1)


def test_compressed_copy_is_checked_and_decompresses_to_the_dump() -> None:
    blob, _writer = write_backup(DUMP)
    kept: list[bytes] = []
    reader = BackupReader(KEY, None, kept.append)
    reader.write(blob)
    reader.close()
    assert reader.dump_bytes == len(DUMP), "decompressed to check it, although only the compressed stream is kept"
    out: list[bytes] = []
    assert crypto.decompress_into(iter(kept), out.append) == len(DUMP)
    assert b"".join(out) == DUMP
    with pytest.raises(BackupIntegrityError, match="ends before its end-of-frame mark"):
        crypto.decompress_into([b"".join(kept)[:-10]], out.append)
