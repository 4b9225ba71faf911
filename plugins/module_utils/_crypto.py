# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The encrypted backup stream: zstandard compression inside chunked AES-256-GCM, checked end to end.

Private to the payments.deploy collection: the interface may change without notice.

Format (version 1), all integers big-endian::

    header  = magic "PAYBAK" | version u8 = 1 | algorithm u8 = 1 | chunk_size u32 | salt 16 | nonce_prefix 4 | key_id 8
    record  = length u32 | AES-256-GCM(key, nonce, plaintext chunk) ciphertext+tag (length bytes)
    file    = header | record 0 | record 1 | ... | record n (n >= 0; the last one may be short or empty)

- Every chunk but the last holds exactly ``chunk_size`` bytes of plaintext (zstd output of the dump).
- ``key = HKDF-SHA256(encryption_key, salt, info)``: a fresh key per backup, so a nonce never repeats under one key.
- ``nonce = nonce_prefix | chunk index u64``.
- Associated data of each chunk = header | chunk index u64 | last-chunk flag u8: the header cannot be changed, and a chunk
  cannot be modified, moved, duplicated or dropped (including the tail) without failing authentication.
- ``key_id`` = first 8 bytes of sha256(encryption_key): a wrong key is named as such before any decryption.

Version 2 (what pg_backup writes) appends ``context`` (32 bytes) to the header: sha256 of the backup id, database and
creation time. Being part of the header, it is in the associated data of every chunk, so an object cannot be passed off
as another backup's: the reader is told which backup it expects and refuses an object made for any other. The manifest
that names those values carries an HMAC-SHA256 (``manifest_mac``) under a key derived from the encryption key.
Version 1 objects (no context) are still parsed, but a reader that expects a context refuses them.

Exact values (enough to implement a reader without this code; recovery/payments_backup_recover.py is one):

- The encryption key is 32 raw bytes (the 64 hex characters of ``ENCRYPTION_KEY`` decoded); HKDF takes those bytes.
- Chunk key: HKDF-SHA256, salt = the header's salt, info = ``b"payments.deploy backup v1 AES-256-GCM"``, length 32.
- Last-chunk flag: 1 for the last record, 0 otherwise; every other record is exactly ``chunk_size + 16`` bytes.
- ``context = sha256(b"payments.deploy backup context v1\0" + json.dumps([backup_id, database, created_at]))`` with
  Python's default separators (``", "``) and the manifest's ``created_at`` string as it is.
- Manifest MAC key: HKDF-SHA256 of the encryption key, no salt, info ``b"payments.deploy backup manifest v1 HMAC-SHA256"``,
  length 32. ``mac = "hmac-sha256:" + lowercase hex HMAC-SHA256`` over the canonical JSON of every field but ``mac``:
  sorted keys, separators ``(",", ":")``, ASCII only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import struct
import time
import traceback
import typing as t

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None

try:
    import zstandard
except ImportError:
    HAS_ZSTANDARD = False
    ZSTANDARD_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_ZSTANDARD = True
    ZSTANDARD_IMPORT_ERROR = None

MAGIC = b"PAYBAK"
FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1
ALGORITHM_AES256GCM_HKDF = 1
_HEADER = struct.Struct(">6sBBI16s4s8s")
HEADER_SIZE = 6 + 1 + 1 + 4 + 16 + 4 + 8  # _HEADER.size (version 1), spelled out so that tools see an int
CONTEXT_SIZE = 32
HEADER_SIZE_V2 = HEADER_SIZE + CONTEXT_SIZE
_MANIFEST_MAC_INFO = b"payments.deploy backup manifest v1 HMAC-SHA256"
MAC_PREFIX = "hmac-sha256:"
_LENGTH = struct.Struct(">I")
TAG_SIZE = 16
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 64 << 20
_HKDF_INFO = b"payments.deploy backup v1 AES-256-GCM"
# How far from its position a misplaced chunk is looked for, to tell "reordered" from "modified".
_REORDER_WINDOW = 64
KEY_HEX = re.compile(r"^[0-9a-fA-F]{64}\Z")

ENCRYPTION = {"algorithm": "AES-256-GCM", "key_derivation": "HKDF-SHA256", "format_version": FORMAT_VERSION}


def backup_context(backup_id: str, database: str, created_at: str) -> bytes:
    """The 32 bytes that bind an object to one backup (version 2 header, hence every chunk's associated data)."""
    return hashlib.sha256(b"payments.deploy backup context v1\0" + json.dumps([backup_id, database, created_at]).encode()).digest()


def _canonical(manifest: t.Mapping[str, t.Any]) -> bytes:
    return json.dumps({k: v for k, v in manifest.items() if k != "mac"}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False).encode()


def manifest_mac(key: bytes, manifest: t.Mapping[str, t.Any]) -> str:
    """``hmac-sha256:<hex>`` over every field of the manifest but ``mac``, under a key derived from the encryption key."""
    mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MANIFEST_MAC_INFO).derive(key)
    return MAC_PREFIX + hmac.new(mac_key, _canonical(manifest), hashlib.sha256).hexdigest()


def manifest_authentic(key: bytes, manifest: t.Mapping[str, t.Any]) -> bool:
    mac = manifest.get("mac")
    return isinstance(mac, str) and hmac.compare_digest(mac, manifest_mac(key, manifest))


class BackupIntegrityError(Exception):
    """The stream is not an intact backup made with this key. ``kind`` names the failure for callers and tests:
    not_a_backup, unsupported, wrong_key, tampered, truncated, reordered, corrupt_compression, misplaced (an object made for
    another backup), unauthenticated (a manifest or object that cannot be authenticated)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


def parse_key(value: str | None, name: str = "encryption_key") -> bytes:
    """32 key bytes from 64 hex characters. Errors describe the problem, never the value."""
    if value is None or not value.strip():
        raise ValueError(f"{name} is missing: set the option or the ENCRYPTION_KEY environment variable "
                         "(64 hexadecimal characters, 32 bytes)")
    value = value.strip()
    if not KEY_HEX.match(value):
        if len(value) != 64:
            raise ValueError(f"{name} must be 64 hexadecimal characters (32 bytes) but has {len(value)} characters")
        raise ValueError(f"{name} must be 64 hexadecimal characters (32 bytes) but contains characters that are not hexadecimal")
    return bytes.fromhex(value)


def key_id(key: bytes) -> str:
    """Public identifier of a key: the first 8 bytes of its sha256, in hex."""
    return hashlib.sha256(key).digest()[:8].hex()


def _derive(key: bytes, salt: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO).derive(key))


def _associated(header: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if last else 0)


class Encryptor:
    """Turns plaintext pieces of any size into the records of the format; ``header`` comes first."""

    def __init__(self, key: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE, context: bytes | None = None) -> None:
        """With ``context`` (see backup_context) a version 2 header binding the object to its backup; without, version 1."""
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes")
        if context is not None and len(context) != CONTEXT_SIZE:
            raise ValueError(f"context must be {CONTEXT_SIZE} bytes")
        self.chunk_size = chunk_size
        salt, self._prefix = os.urandom(16), os.urandom(4)
        self.key_id = key_id(key)
        version = LEGACY_FORMAT_VERSION if context is None else FORMAT_VERSION
        self.header = _HEADER.pack(MAGIC, version, ALGORITHM_AES256GCM_HKDF, chunk_size, salt, self._prefix,
                                   bytes.fromhex(self.key_id)) + (context or b"")
        self._aead = _derive(key, salt)
        self._buffer = bytearray()
        self._index = 0
        self._finished = False
        self.seconds = 0.0

    def _seal(self, chunk: bytes | bytearray | memoryview, last: bool) -> bytes:
        started = time.perf_counter()
        nonce = self._prefix + struct.pack(">Q", self._index)
        sealed = self._aead.encrypt(nonce, bytes(chunk), _associated(self.header, self._index, last))
        self._index += 1
        self.seconds += time.perf_counter() - started
        return _LENGTH.pack(len(sealed)) + sealed

    def update(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Records for every chunk that is complete and known not to be the last one."""
        self._buffer += data
        records = []
        # keep a full chunk back until more data shows it is not the last one
        while len(self._buffer) > self.chunk_size:
            records.append(self._seal(memoryview(self._buffer)[:self.chunk_size], last=False))
            del self._buffer[:self.chunk_size]
        return records

    def finish(self) -> bytes:
        """The last record (possibly of an empty chunk, so that an empty stream is still authenticated)."""
        if self._finished:
            raise ValueError("finish() called twice")
        self._finished = True
        record = self._seal(self._buffer, last=True)
        self._buffer = bytearray()
        return record

    @property
    def chunks(self) -> int:
        return self._index


def header_size(data: bytes) -> int:
    """Size of the header that ``data`` (at least 7 bytes) starts, by its version."""
    return HEADER_SIZE_V2 if data[6:7] == bytes([FORMAT_VERSION]) else HEADER_SIZE


def parse_header(data: bytes) -> dict[str, t.Any]:
    """The fields of a header (``data`` holds at least ``header_size(data)`` bytes)."""
    magic, version, algorithm, chunk_size, salt, prefix, kid = _HEADER.unpack(data[:HEADER_SIZE])
    if magic != MAGIC:
        raise BackupIntegrityError("not_a_backup", "the data is not an encrypted backup of this collection (bad magic bytes)")
    if version not in (LEGACY_FORMAT_VERSION, FORMAT_VERSION) or algorithm != ALGORITHM_AES256GCM_HKDF:
        raise BackupIntegrityError("unsupported", f"backup format version {version} / algorithm {algorithm} is not supported "
                                                  f"(this collection reads versions {LEGACY_FORMAT_VERSION} and {FORMAT_VERSION})")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise BackupIntegrityError("tampered", f"the header declares an impossible chunk size {chunk_size}: modified or corrupt")
    context = data[HEADER_SIZE:HEADER_SIZE_V2] if version == FORMAT_VERSION else None
    return {"version": version, "chunk_size": chunk_size, "salt": salt, "nonce_prefix": prefix, "key_id": kid.hex(), "context": context}


class Decryptor:
    """Checks and decrypts the records of a stream fed in pieces of any size; fails on the first problem.

    ``update`` returns plaintext only for chunks already authenticated. A record is held back until the next bytes (or
    ``finish``) show whether it is the last one, since its last-chunk flag is part of what is authenticated.
    """

    def __init__(self, key: bytes, context: bytes | None = None) -> None:
        """With ``context``, only a version 2 object made for that backup is accepted."""
        self._key = key
        self._context = context
        self.key_id = key_id(key)
        self.header: bytes | None = None
        self.chunk_size = 0
        self._aead: AESGCM | None = None
        self._prefix = b""
        self._buffer = bytearray()
        self._pending: bytes | None = None
        self._index = 0
        self._done = False
        self.seconds = 0.0

    def _read_header(self, size: int) -> None:
        fields = parse_header(bytes(self._buffer[:size]))
        if fields["key_id"] != self.key_id:
            raise BackupIntegrityError("wrong_key", f"wrong key: the backup was encrypted with the key whose id is {fields['key_id']}, "
                                                    f"but the given key has id {self.key_id}")
        if self._context is not None and fields["context"] is None:
            raise BackupIntegrityError("unauthenticated", "the object is in format version 1, which does not bind it to its backup: "
                                                          "it cannot be told apart from another backup's object")
        if self._context is not None and not hmac.compare_digest(fields["context"], self._context):
            raise BackupIntegrityError("misplaced", "the object was made for another backup (its header binds a different backup id, "
                                                    "database or creation time): objects were swapped or copied")
        self.header = bytes(self._buffer[:size])
        self.chunk_size = fields["chunk_size"]
        self._prefix = fields["nonce_prefix"]
        self._aead = _derive(self._key, fields["salt"])
        del self._buffer[:size]

    def _try(self, sealed: bytes, index: int, last: bool) -> bytes | None:
        if self._aead is None or self.header is None:
            raise ValueError("no header read yet")
        try:
            return self._aead.decrypt(self._prefix + struct.pack(">Q", index), sealed, _associated(self.header, index, last))
        except InvalidTag:
            return None

    def _open(self, sealed: bytes, last: bool) -> bytes:
        started = time.perf_counter()
        plain = self._try(sealed, self._index, last)
        if plain is None:
            raise self._diagnose(sealed, last)
        self._index += 1
        self.seconds += time.perf_counter() - started
        return plain

    def _diagnose(self, sealed: bytes, last: bool) -> BackupIntegrityError:
        """Why chunk ``self._index`` failed: a valid chunk cut short of the end, a chunk from elsewhere, or modified bytes."""
        position = self._index
        if last and self._try(sealed, position, False) is not None:
            return BackupIntegrityError("truncated", f"the backup is truncated: it ends after chunk {position}, "
                                                     "which is intact but is not the last chunk")
        for other in range(max(0, position - _REORDER_WINDOW), position + _REORDER_WINDOW):
            for flag in (False, True):
                if (other, flag) != (position, last) and self._try(sealed, other, flag) is not None:
                    return BackupIntegrityError("reordered", f"chunk {other} of the backup was found at position {position}: "
                                                             "chunks were reordered, duplicated or removed")
        return BackupIntegrityError("tampered", f"chunk {position} failed authentication: the backup was modified or is corrupt")

    def _records(self) -> t.Iterator[bytes]:
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if not TAG_SIZE <= length <= self.chunk_size + TAG_SIZE:
                raise BackupIntegrityError("tampered", f"record {self._index + (self._pending is not None)} declares an impossible "
                                                       f"length {length}: the backup was modified or is corrupt")
            if len(self._buffer) < _LENGTH.size + length:
                return
            record = bytes(self._buffer[_LENGTH.size:_LENGTH.size + length])
            del self._buffer[:_LENGTH.size + length]
            yield record

    def update(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._done:
            raise ValueError("update() after finish()")
        self._buffer += data
        if self.header is None:
            if len(self._buffer) < HEADER_SIZE or len(self._buffer) < header_size(bytes(self._buffer[:7])):
                return []
            self._read_header(header_size(bytes(self._buffer[:7])))
        plain = []
        for record in self._records():
            if self._pending is not None:
                if len(self._pending) != self.chunk_size + TAG_SIZE:
                    raise BackupIntegrityError("tampered", f"chunk {self._index} is shorter than a full chunk but is not at the end: "
                                                           "the backup was modified or spliced")
                plain.append(self._open(self._pending, last=False))
            self._pending = record
        return plain

    def finish(self) -> bytes:
        """Plaintext of the last chunk, once the stream is proven complete."""
        self._done = True
        if self.header is None:
            if len(self._buffer) >= len(MAGIC) and not bytes(self._buffer).startswith(MAGIC):
                parse_header(bytes(self._buffer).ljust(HEADER_SIZE, b"\0"))
            size = header_size(bytes(self._buffer[:7])) if len(self._buffer) >= 7 else HEADER_SIZE
            raise BackupIntegrityError("truncated", f"the backup is truncated: {len(self._buffer)} bytes, less than its {size}-byte header")
        if self._buffer:
            if len(self._buffer) < _LENGTH.size:
                missing = f"{len(self._buffer)} bytes of a record length"
            else:
                missing = f"{len(self._buffer) - _LENGTH.size} of {_LENGTH.unpack_from(self._buffer)[0]} bytes"
            raise BackupIntegrityError("truncated", f"the backup is truncated in the middle of chunk {self._index + (self._pending is not None)} "
                                                    f"({missing} present)")
        if self._pending is None:
            raise BackupIntegrityError("truncated", "the backup is truncated: it holds a header but no chunk")
        plain = self._open(self._pending, last=True)
        self._pending = None
        return plain

    @property
    def chunks(self) -> int:
        return self._index


class BackupWriter:
    """dump bytes -> zstd -> Encryptor -> ``sink``, with sha256 and sizes of what ``sink`` got."""

    def __init__(self, key: bytes, sink: t.Callable[[bytes], None], level: int = 3, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 threads: int = 1, context: bytes | None = None) -> None:
        # threads=1: zstd compresses in its own native thread, outside the GIL, while this thread reads and encrypts.
        self._compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=threads).compressobj()
        self.encryptor = Encryptor(key, chunk_size, context)
        self._sink = sink
        self.sha256 = hashlib.sha256()
        self.dump_bytes = 0
        self.compressed_bytes = 0
        self.stored_bytes = 0
        self.compress_seconds = 0.0
        self.sink_seconds = 0.0
        self._emit(self.encryptor.header)

    def _emit(self, data: bytes) -> None:
        started = time.perf_counter()
        self.sha256.update(data)
        self._sink(data)
        self.stored_bytes += len(data)
        self.sink_seconds += time.perf_counter() - started

    def _encrypt(self, compressed: bytes) -> None:
        self.compressed_bytes += len(compressed)
        for record in self.encryptor.update(compressed):
            self._emit(record)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.dump_bytes += len(data)
        started = time.perf_counter()
        compressed = self._compressor.compress(data)
        self.compress_seconds += time.perf_counter() - started
        if compressed:
            self._encrypt(compressed)

    def close(self) -> None:
        started = time.perf_counter()
        tail = self._compressor.flush()
        self.compress_seconds += time.perf_counter() - started
        self._encrypt(tail)
        self._emit(self.encryptor.finish())


class BackupReader:
    """Stored bytes -> sha256 -> Decryptor -> zstd -> ``sink``: every byte handed on is authenticated.

    ``compressed_sink`` gets the decrypted, still compressed stream (checked by decompressing it all the same), so that a
    verified copy can be kept at a fifth of the size of the dump; ``sink`` may then be None.
    """

    def __init__(self, key: bytes, sink: t.Callable[[bytes], None] | None,
                 compressed_sink: t.Callable[[bytes], None] | None = None, context: bytes | None = None) -> None:
        self.decryptor = Decryptor(key, context)
        self._decompressor = zstandard.ZstdDecompressor().decompressobj()
        self._sink = sink
        self._compressed_sink = compressed_sink
        self.sha256 = hashlib.sha256()
        self.stored_bytes = 0
        self.dump_bytes = 0
        self.decompress_seconds = 0.0
        self.sink_seconds = 0.0

    def _plain(self, compressed: bytes) -> None:
        if not compressed:
            return
        started = time.perf_counter()
        try:
            data = self._decompressor.decompress(compressed)
        except zstandard.ZstdError as exc:
            raise BackupIntegrityError("corrupt_compression", f"the decrypted data is not a valid zstd stream: {exc}") from None
        self.decompress_seconds += time.perf_counter() - started
        self.dump_bytes += len(data)
        started = time.perf_counter()
        if self._compressed_sink is not None:
            self._compressed_sink(compressed)
        if data and self._sink is not None:
            self._sink(data)
        self.sink_seconds += time.perf_counter() - started

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.stored_bytes += len(data)
        self.sha256.update(data)
        for compressed in self.decryptor.update(data):
            self._plain(compressed)

    def close(self) -> None:
        self._plain(self.decryptor.finish())
        if not self._decompressor.eof:
            raise BackupIntegrityError("corrupt_compression", "the decrypted zstd stream ends before its end-of-frame mark")


def decompress_into(blocks: t.Iterable[bytes], sink: t.Callable[[bytes], None]) -> int:
    """Decompress a zstd stream (as kept by BackupReader's ``compressed_sink``) into ``sink``; returns the bytes out."""
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    total = 0
    try:
        for block in blocks:
            data = decompressor.decompress(block)
            if data:
                total += len(data)
                sink(data)
    except zstandard.ZstdError as exc:
        raise BackupIntegrityError("corrupt_compression", f"not a valid zstd stream: {exc}") from None
    if not decompressor.eof:
        raise BackupIntegrityError("corrupt_compression", "the zstd stream ends before its end-of-frame mark")
    return total
