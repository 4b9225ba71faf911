"""S3Upload through boto3's transfer manager, against the moto S3 server: a stream pushed in uneven pieces is stored
byte for byte as a multipart upload of part_size parts (even when smaller than one part), nothing appears before the
commit, and an abort (before or after parts went out) leaves neither an object nor an open multipart upload."""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import sys
import time
import types
import typing as t
from pathlib import Path

import pytest

from pg_backup_servers import MotoS3

MIB = 1 << 20


@pytest.fixture(name="store_lib", scope="module")
def backup_store_module(collections_dir: Path) -> types.ModuleType:
    """The collection's S3 store, imported from the same collection tree the module tests run."""
    if str(collections_dir) not in sys.path:
        sys.path.insert(0, str(collections_dir))
    return importlib.import_module("ansible_collections.payments.deploy.plugins.module_utils._backup_store")


def store_for(store_lib: types.ModuleType, s3_server: MotoS3, bucket: str, prefix: str = "") -> t.Any:
    return store_lib.S3Store({"s3_bucket": bucket, "s3_prefix": prefix, "s3_endpoint_url": s3_server.endpoint,
                              "s3_region": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                              "s3_sse": "AES256", "s3_part_size_mb": 5})


def uneven_pieces(data: bytes) -> t.Iterator[bytes]:
    """The data in pieces of varying sizes, as the encryptor hands them on (never aligned with the parts)."""
    position, size = 0, 1
    while position < len(data):
        yield data[position:position + size]
        position += size
        size = size * 3 % 700_001 + 1


@pytest.mark.parametrize("size", [1234, 5 * MIB, 12 * MIB + 77])
def test_a_stream_is_stored_byte_for_byte_in_parts_of_part_size(store_lib: types.ModuleType, s3_server: MotoS3, bucket: str, size: int) -> None:
    data = os.urandom(size)
    store = store_for(store_lib, s3_server, bucket, "production/postgres")
    upload = store.upload("payments-20260101T020000Z-abcdef.dump.zst.enc")
    for piece in uneven_pieces(data):
        upload.write(piece)
    client = s3_server.client()
    key = "production/postgres/payments-20260101T020000Z-abcdef.dump.zst.enc"
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0, "nothing appears before the commit"
    upload.commit()
    stored = client.get_object(Bucket=bucket, Key=key)
    body = stored["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    parts = math.ceil(size / (5 * MIB))
    assert stored["ETag"].strip('"').endswith(f"-{parts}"), "a multipart upload, whatever the size"
    assert upload.parts == parts
    assert stored["ContentType"] == "application/octet-stream"
    assert stored["ServerSideEncryption"] == "AES256"
    sizes = [client.head_object(Bucket=bucket, Key=key, PartNumber=n + 1)["ContentLength"] for n in range(parts)]
    assert sizes == [min(5 * MIB, size - n * 5 * MIB) for n in range(parts)], "every part but the last has the part size"
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("written", [3 * MIB, 11 * MIB])
def test_an_abort_leaves_no_object_and_no_open_upload(store_lib: types.ModuleType, s3_server: MotoS3, bucket: str, written: int) -> None:
    upload = store_for(store_lib, s3_server, bucket).upload("payments-20260101T020000Z-abcdef.dump.zst.enc")
    for piece in uneven_pieces(os.urandom(written)):
        upload.write(piece)
    if written > 10 * MIB:  # two full parts were written: wait until the first is stored, then abort
        deadline = time.monotonic() + 60
        while upload.parts < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upload.parts >= 1, "a part went out before the abort"
    upload.abort()
    upload.abort()  # twice is harmless: the cleanup paths may both call it
    client = s3_server.client()
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_missing_bucket_fails_the_write_or_the_commit_as_a_store_error(store_lib: types.ModuleType, s3_server: MotoS3) -> None:
    upload = store_for(store_lib, s3_server, "no-such-bucket").upload("payments-20260101T020000Z-abcdef.dump.zst.enc")
    with pytest.raises(store_lib.StoreError, match="no-such-bucket"):
        for piece in uneven_pieces(os.urandom(6 * MIB)):
            upload.write(piece)
        upload.commit()
    upload.abort()
