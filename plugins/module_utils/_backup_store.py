# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Where encrypted backups are kept: a local directory or an S3 bucket, as ``<id>.dump.zst.enc`` + ``<id>.manifest.json``.

Private to the payments.deploy collection: the interface may change without notice.

An object appears under its final name only once it is complete (local: temporary name then rename; S3: multipart
upload by boto3's transfer manager, completed at the end, aborted on failure). The manifest is written last and deleted first: an object without a
manifest is never taken for a backup.

Nothing is ever located by a path read from a manifest: the names of a backup's files derive from its id, and an id is
accepted only in the form pg_backup makes (``<database>-<UTC time>-<6 hex digits>``, the database a plain name).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import traceback
import typing as t

from ansible.module_utils.basic import env_fallback
from ansible_collections.payments.deploy.plugins.module_utils._backup_pump import StreamPipe
from ansible_collections.payments.deploy.plugins.module_utils._files import fsync_dir

try:
    import boto3
    import boto3.s3.transfer
    import botocore.config
    import botocore.exceptions
except ImportError:
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None

OBJECT_SUFFIX = ".dump.zst.enc"
MANIFEST_SUFFIX = ".manifest.json"
READ_SIZE = 1 << 20
S3_MIN_PART = 5 << 20
MAX_IDENTIFIER = 63
# Anchored with \Z: "$" would also match before a trailing newline.
# A database name that can name files and is never read as anything but a name (no '/', no '=', no quote, no space).
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_ID_TAIL = r"-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}"
BACKUP_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*" + _ID_TAIL + r"\Z")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")
KEY_ID_HEX = re.compile(r"^[0-9a-f]{16}\Z")


def plain_name_problem(what: str, name: t.Any) -> str | None:
    """Why ``name`` cannot be a database name here, or None."""
    if not isinstance(name, str) or not PLAIN_NAME.match(name):
        return f"{what} {name!r} is not a plain database name (letters, digits, '_', '.' and '-')"
    if len(name.encode()) > MAX_IDENTIFIER:
        return f"{what} {name!r} is longer than PostgreSQL's {MAX_IDENTIFIER}-byte limit"
    return None


def is_backup_id(backup_id: t.Any, database: str | None = None) -> bool:
    """Whether ``backup_id`` has the form pg_backup gives ids (of ``database``, when given)."""
    if not isinstance(backup_id, str) or not BACKUP_ID.match(backup_id):
        return False
    return database is None or re.fullmatch(re.escape(database) + _ID_TAIL, backup_id) is not None


def object_name(backup_id: str) -> str:
    if not is_backup_id(backup_id):
        raise StoreError(f"{backup_id!r} is not a backup id")
    return backup_id + OBJECT_SUFFIX


def manifest_name(backup_id: str) -> str:
    if not is_backup_id(backup_id):
        raise StoreError(f"{backup_id!r} is not a backup id")
    return backup_id + MANIFEST_SUFFIX


def _is_count(value: t.Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def manifest_problems(manifest: t.Any) -> list[str]:
    """What makes ``manifest`` unusable as a pg_backup manifest (structure and types), before anything in it is used."""
    if not isinstance(manifest, dict):
        return [f"it is a JSON {type(manifest).__name__ if manifest is not None else 'null'}, not an object"]
    missing = [k for k in ("backup_id", "database", "created_at", "sha256", "encryption") if k not in manifest]
    if missing:
        return [f"it lacks {', '.join(missing)}"]
    problems = []
    database = manifest["database"]
    name_problem = plain_name_problem("database", database)
    if name_problem:
        problems.append(name_problem)
    elif not is_backup_id(manifest["backup_id"], database):
        problems.append(f"backup_id {manifest['backup_id']!r} is not an id of a backup of {database}")
    if not isinstance(manifest["created_at"], str):
        problems.append("created_at is not a string")
    if not isinstance(manifest["sha256"], str) or not SHA256_HEX.match(manifest["sha256"]):
        problems.append("sha256 is not 64 hexadecimal digits")
    encryption = manifest["encryption"]
    if not isinstance(encryption, dict):
        problems.append("encryption is not an object")
    elif encryption.get("key_id") is not None and not (isinstance(encryption["key_id"], str) and KEY_ID_HEX.match(encryption["key_id"])):
        problems.append("encryption.key_id is not 16 hexadecimal digits")
    counts = manifest.get("row_counts")
    if counts is not None and not (isinstance(counts, dict) and all(isinstance(k, str) and _is_count(v) for k, v in counts.items())):
        problems.append("row_counts is not an object of table names and non-negative integers")
    for field in ("pg_dump_version", "mac"):
        if manifest.get(field) is not None and not isinstance(manifest[field], str):
            problems.append(f"{field} is not a string")
    return problems


def s3_argument_spec() -> dict[str, dict[str, t.Any]]:
    """S3 options (documented in the payments.deploy.s3 fragment)."""
    return {
        "s3_bucket": {"type": "str"},
        "s3_prefix": {"type": "str", "default": ""},
        "s3_endpoint_url": {"type": "str"},
        "s3_region": {"type": "str"},
        "aws_access_key_id": {"type": "str", "no_log": True, "fallback": (env_fallback, ["AWS_ACCESS_KEY_ID"])},
        "aws_secret_access_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["AWS_SECRET_ACCESS_KEY"])},
        "aws_session_token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["AWS_SESSION_TOKEN"])},
        "s3_sse": {"type": "str", "default": "AES256", "choices": ["AES256", "aws:kms", "none"]},
        "s3_sse_kms_key_id": {"type": "str", "no_log": False},
        "s3_part_size_mb": {"type": "int", "default": 16},
    }


class StoreError(Exception):
    """Reading or writing a destination failed."""


class Upload:
    """A file being written: ``write`` pieces, then ``commit`` (it appears complete) or ``abort`` (nothing remains)."""

    location = ""
    parts = 0

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class Store:
    """A destination of backups."""

    kind = ""

    def describe(self) -> str:
        raise NotImplementedError

    def location(self, name: str) -> str:
        raise NotImplementedError

    def check(self, create: bool) -> None:
        """Fail early when the destination cannot be used (create a missing local directory when ``create``)."""
        raise NotImplementedError

    def upload(self, name: str) -> Upload:
        raise NotImplementedError

    def put_text(self, name: str, text: str) -> None:
        raise NotImplementedError

    def read(self, name: str) -> t.Iterator[bytes]:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def manifest_names(self, database: str) -> list[str]:
        """Names of the manifests that may belong to ``database`` (filter by their ``database`` field)."""
        raise NotImplementedError

    def read_text(self, name: str) -> str:
        return b"".join(self.read(name)).decode("utf-8")

    def manifests(self, database: str) -> list[dict[str, t.Any]]:
        """Well-formed manifests of ``database`` here, newest first (by their own ``created_at``, which only an
        authenticated manifest vouches for). Skipped: unreadable or malformed ones, and those whose ``backup_id`` is not
        the id their file name holds (a manifest never names files other than its own backup's)."""
        found = []
        for name in self.manifest_names(database):
            backup_id = name[:-len(MANIFEST_SUFFIX)]
            if not is_backup_id(backup_id, database):
                continue
            try:
                manifest = json.loads(self.read_text(name))
            except (StoreError, ValueError, UnicodeDecodeError):
                continue
            if not manifest_problems(manifest) and manifest["database"] == database and manifest["backup_id"] == backup_id:
                found.append(manifest)
        return sorted(found, key=lambda m: (m["created_at"], m["backup_id"]), reverse=True)


def put_text_everywhere(stores: t.Sequence[Store], name: str, text: str) -> None:
    """``put_text`` to every store; when one fails, the copies already written are deleted again (a manifest must never
    outlive a failed run: it would count as a backup for ``latest`` and retention)."""
    written: list[Store] = []
    try:
        for store in stores:
            store.put_text(name, text)
            written.append(store)
    except StoreError as exc:
        left = []
        for store in written:
            try:
                store.delete(name)
            except StoreError as error:
                left.append(f"{store.location(name)} could not be removed ({error}): delete it by hand")
        raise StoreError("; ".join([str(exc), *left])) from None


# --- local directory -----------------------------------------------------------------------------------


class LocalUpload(Upload):
    def __init__(self, directory: str, name: str) -> None:
        self.final = os.path.join(directory, name)
        self.location = self.final
        fd, self.temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=directory)
        self._file = os.fdopen(fd, "wb")
        self._done = False

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise StoreError(f"writing {self.temp} failed: {exc}") from None

    def commit(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.rename(self.temp, self.final)
            fsync_dir(os.path.dirname(self.final))
        except OSError as exc:
            self.abort()
            raise StoreError(f"storing {self.final} failed: {exc}") from None
        self._done = True

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        if not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass


class LocalStore(Store):
    kind = "local"

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def describe(self) -> str:
        return self.directory

    def location(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def check(self, create: bool) -> None:
        if not os.path.isdir(self.directory):
            if os.path.exists(self.directory):
                raise StoreError(f"dest_dir {self.directory} exists but is not a directory")
            if not create:
                return
            try:
                os.makedirs(self.directory, mode=0o700)
            except OSError as exc:
                raise StoreError(f"cannot create dest_dir {self.directory}: {exc}") from None
        if os.path.isdir(self.directory) and not os.access(self.directory, os.W_OK | os.X_OK):
            raise StoreError(f"dest_dir {self.directory} is not writable")

    def upload(self, name: str) -> Upload:
        try:
            return LocalUpload(self.directory, name)
        except OSError as exc:
            raise StoreError(f"cannot create a file in {self.directory}: {exc}") from None

    def put_text(self, name: str, text: str) -> None:
        upload = self.upload(name)
        try:
            upload.write(text.encode("utf-8"))
            upload.commit()
        finally:
            upload.abort()

    def read(self, name: str) -> t.Iterator[bytes]:
        path = self.location(name)
        try:
            with open(path, "rb") as handle:
                while block := handle.read(READ_SIZE):
                    yield block
        except OSError as exc:
            raise StoreError(f"reading {path} failed: {exc}") from None

    def exists(self, name: str) -> bool:
        return os.path.isfile(self.location(name))

    def delete(self, name: str) -> None:
        try:
            os.unlink(self.location(name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"deleting {self.location(name)} failed: {exc}") from None

    def manifest_names(self, database: str) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"listing {self.directory} failed: {exc}") from None
        return sorted(n for n in names if n.startswith(database + "-") and n.endswith(MANIFEST_SUFFIX))


# --- S3 ------------------------------------------------------------------------------------------------


class S3Store(Store):
    kind = "s3"

    def __init__(self, params: t.Mapping[str, t.Any]) -> None:
        self.bucket: str = params["s3_bucket"]
        self.prefix: str = (params.get("s3_prefix") or "").strip("/")
        self.endpoint_url: str | None = params.get("s3_endpoint_url")
        sse = params.get("s3_sse") or "AES256"
        self.sse: dict[str, str] = {}
        if sse != "none":
            self.sse["ServerSideEncryption"] = sse
            if sse == "aws:kms" and params.get("s3_sse_kms_key_id"):
                self.sse["SSEKMSKeyId"] = params["s3_sse_kms_key_id"]
        self.part_size = max(S3_MIN_PART, int(params.get("s3_part_size_mb") or 16) << 20)
        self.client_args = {"endpoint_url": self.endpoint_url, "region_name": params.get("s3_region"),
                            "aws_access_key_id": params.get("aws_access_key_id"),
                            "aws_secret_access_key": params.get("aws_secret_access_key"),
                            "aws_session_token": params.get("aws_session_token")}
        self.client = self.new_client()
        self.endpoint = self.client.meta.endpoint_url

    def new_client(self) -> t.Any:
        config = botocore.config.Config(connect_timeout=5, read_timeout=120, retries={"max_attempts": 3, "mode": "standard"})
        return boto3.session.Session().client("s3", config=config, **self.client_args)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def location(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(name)}"

    def error(self, action: str, exc: Exception) -> StoreError:
        """A StoreError that says whether the endpoint was unreachable, the bucket missing or access denied."""
        if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                            botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError)):
            return StoreError(f"S3 endpoint {self.endpoint} unreachable: {exc}")
        if isinstance(exc, botocore.exceptions.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "404") and action.startswith("checking bucket"):
                return StoreError(f"S3 bucket {self.bucket} does not exist at {self.endpoint}")
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return StoreError(f"S3 access denied while {action} (bucket {self.bucket} at {self.endpoint}): {code}")
        return StoreError(f"S3 error while {action} (bucket {self.bucket} at {self.endpoint}): {exc}")

    def check(self, create: bool) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self.error(f"checking bucket {self.bucket}", exc) from None

    def upload(self, name: str) -> Upload:
        return S3Upload(self, name)

    def put_text(self, name: str, text: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=text.encode("utf-8"),
                                   ContentType="application/json", **self.sse)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self.error(f"writing {self.location(name)}", exc) from None

    def read(self, name: str) -> t.Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"]
            try:
                yield from body.iter_chunks(READ_SIZE)
            finally:
                body.close()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self.error(f"reading {self.location(name)}", exc) from None

    def exists(self, name: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self.error(f"checking {self.location(name)}", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self.error(f"checking {self.location(name)}", exc) from None
        return True

    def delete(self, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self.error(f"deleting {self.location(name)}", exc) from None

    def manifest_names(self, database: str) -> list[str]:
        start = self.key(database + "-")
        names = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.key("")):]
                    if name.endswith(MANIFEST_SUFFIX) and "/" not in name:
                        names.append(name)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self.error(f"listing {self.describe()}", exc) from None
        return sorted(names)


class S3Upload(Upload):
    """A multipart upload by boto3's transfer manager (s3transfer), streamed from a pipe in parts of ``part_size``: one
    thread uploads while the next part fills; the object is completed when ``commit`` ends the pipe, and the manager
    aborts the multipart upload when the pipe fails (``abort``) or a request fails.

    The manager streams a source that cannot seek: it reads it in parts of exactly ``multipart_chunksize`` (the pipe's
    ``read(n)`` blocks until it has them), numbers them in the order read and completes with them in that order, so the
    object, its key, content type and encryption settings are what the hand-written multipart upload stored; the
    sha256 is still taken from the stream before it reaches any destination. The upload has a client of its own, so
    that the parts counted through its events are this object's. A multipart threshold of one byte keeps every object
    a multipart upload (as it always was), whatever its size. Like any boto3 upload it adds S3's own CRC32 checksum
    (``request_checksum_calculation``'s default).
    """

    def __init__(self, store: S3Store, name: str) -> None:
        self.store = store
        self.key = store.key(name)
        self.location = store.location(name)
        self.client = store.new_client()
        self.started = False  # the multipart upload was created
        self.client.meta.events.register("after-call.s3.CreateMultipartUpload", self._created)
        self.client.meta.events.register("after-call.s3.UploadPart", self._part_uploaded)
        self._pipe = StreamPipe(store.part_size)
        self._done = False
        config = boto3.s3.transfer.TransferConfig(multipart_threshold=1, multipart_chunksize=store.part_size, max_concurrency=1,
                                                  use_threads=True, preferred_transfer_client="classic")
        config.max_in_memory_upload_chunks = 2  # bounded memory: the part being sent and the next one
        self._manager = boto3.s3.transfer.create_transfer_manager(self.client, config)
        self._future = self._manager.upload(self._pipe, store.bucket, self.key,
                                            extra_args={"ContentType": "application/octet-stream", **store.sse})

    def _created(self, **event: t.Any) -> None:
        if getattr(event.get("http_response"), "status_code", None) == 200:
            self.started = True

    def _part_uploaded(self, **event: t.Any) -> None:
        if getattr(event.get("http_response"), "status_code", None) == 200:
            self.parts += 1

    def _failure(self, exc: BaseException) -> StoreError:
        """The request that failed, named as the upload's steps always were (parts go one at a time, in order)."""
        if isinstance(exc, StoreError):
            return exc
        operation = getattr(exc, "operation_name", None)
        if operation == "CompleteMultipartUpload":
            action = f"completing the upload of {self.location}"
        elif operation == "CreateMultipartUpload" or (operation is None and not self.started):
            action = f"starting the upload of {self.location}"
        else:
            action = f"uploading part {self.parts + 1} of {self.location}"
        return self.store.error(action, exc) if isinstance(exc, Exception) else StoreError(str(exc))

    def _finish(self) -> None:
        """Wait for the manager's end (its cleanups, such as aborting the multipart upload, have run then)."""
        try:
            self._future.result()
        finally:
            self._done = True
            self._manager.shutdown()

    def _raise_failed(self) -> t.NoReturn:
        self._pipe.fail(StoreError("aborted"))
        try:
            self._finish()
        except Exception as exc:  # pylint: disable=broad-exception-caught
            raise self._failure(exc) from None
        raise StoreError(f"the upload of {self.location} ended early")

    def write(self, data: bytes) -> None:
        if self._done:
            raise StoreError(f"the upload of {self.location} is over")
        self._pipe.write(data, self._future.done)
        if self._future.done():  # a request failed: the manager stops here
            self._raise_failed()

    def commit(self) -> None:
        if self._future.done():
            self._raise_failed()
        self._pipe.close()
        try:
            self._finish()
        except Exception as exc:  # pylint: disable=broad-exception-caught  # botocore's or s3transfer's, named
            raise self._failure(exc) from None

    def abort(self) -> None:
        if self._done:
            return
        self._pipe.fail(StoreError("aborted"))
        try:
            self._finish()
        except BaseException:  # pylint: disable=broad-exception-caught
            pass  # S3 lifecycle rules remove abandoned uploads; nothing exists at the final key either way
