"""All emulator state behind one lock, with optional atomic JSON persistence.

Objects of every kind live in one id-keyed dict; fields whose names start with ``_`` are internal
(ordering, secrets, mode) and never rendered. Test and live objects share the dict but every
lookup is scoped to the mode of the API key, as Stripe keeps the two modes apart.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import string
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import no_such

ALPHABET = string.ascii_letters + string.digits
STATE_VERSION = 1
IDEMPOTENCY_TTL_S = 24 * 3600


# Writes closer together than this are saved together: a save of the whole state holds the lock every request
# needs (0.2 s at 12 MB). A stop saves at once: only SIGKILL loses the last seconds.
SAVE_INTERVAL_S = 5.0


def random_token(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _unused in range(length))


def empty_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "created": int(time.time()), "seq": 0, "objects": {}, "idempotency": {"test": {}, "live": {}},
            "deliveries": {}}


@dataclass
class Settings:
    """Process-wide settings from the command line."""

    account: str
    keys: frozenset[str]
    api_version: str
    webhook_endpoint_limit: int = 16
    webhook_max_attempts: int = 5
    webhook_backoff_s: float = 0.5
    webhook_backoff_max_s: float = 8.0
    webhook_timeout_s: float = 10.0
    state_file: Path | None = None
    # Live-mode payment methods (a lab's stand-in for a real card kept for probes): id -> the test card it behaves as.
    live_cards: dict[str, str] = field(default_factory=dict)


class Store:
    """The state and the lock every request holds while it reads or changes it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.wakeup = threading.Condition(self.lock)
        self._last_write = 0.0
        self._flush_pending = False
        self.data = empty_state()
        if settings.state_file and settings.state_file.exists():
            loaded = json.loads(settings.state_file.read_text(encoding="utf-8"))
            if loaded.get("version") != STATE_VERSION:
                raise ValueError(f"{settings.state_file}: unknown state version {loaded.get('version')!r}")
            self.data = loaded
            self.data.setdefault("created", int(time.time()))

    # ids and time -------------------------------------------------------------------------------------------------
    @staticmethod
    def now() -> int:
        return int(time.time())

    def new_id(self, prefix: str, length: int = 24) -> str:
        while True:
            candidate = f"{prefix}_{random_token(length)}"
            if candidate not in self.data["objects"]:
                return candidate

    # objects ------------------------------------------------------------------------------------------------------
    def add(self, obj: dict[str, Any], mode: str) -> dict[str, Any]:
        self.data["seq"] += 1
        obj["_seq"] = self.data["seq"]
        obj["_mode"] = mode
        self.data["objects"][obj["id"]] = obj
        return obj

    def remove(self, object_id: str) -> None:
        self.data["objects"].pop(object_id, None)

    def lookup(self, object_id: str) -> dict[str, Any] | None:
        return self.data["objects"].get(object_id)

    def get(self, kind: str, object_id: str, mode: str, *, label: str | None = None, param: str = "id",
            status: int = 404) -> dict[str, Any]:
        """The object or Stripe's ``resource_missing`` error (naming the other mode when it lives there)."""
        obj = self.data["objects"].get(object_id) if isinstance(object_id, str) else None
        if obj is None or obj.get("object") != kind or obj.get("_deleted"):
            raise no_such(label or kind, str(object_id), param=param, status=status)
        if obj["_mode"] != mode:
            raise no_such(label or kind, object_id, param=param, status=status, other_mode=obj["_mode"])
        return obj

    def find(self, kind: str, mode: str, match: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Objects of one kind in one mode, newest first."""
        found = [o for o in self.data["objects"].values()
                 if o.get("object") == kind and o["_mode"] == mode and not o.get("_deleted") and (match is None or match(o))]
        found.sort(key=lambda o: o["_seq"], reverse=True)
        return found

    @staticmethod
    def render(obj: dict[str, Any]) -> dict[str, Any]:
        """A deep copy without the internal fields: what the API returns."""
        return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}

    def reset(self) -> None:
        created = self.data["created"]
        self.data = empty_state()
        self.data["created"] = created

    # idempotency --------------------------------------------------------------------------------------------------
    def idempotent_result(self, mode: str, key: str) -> dict[str, Any] | None:
        entries = self.data["idempotency"][mode]
        horizon = time.time() - IDEMPOTENCY_TTL_S
        for stale in [k for k, v in entries.items() if v["at"] < horizon]:
            del entries[stale]
        return entries.get(key)

    def remember(self, mode: str, key: str, fingerprint: str, status: int, body: dict[str, Any], request_id: str) -> None:
        self.data["idempotency"][mode][key] = {"fingerprint": fingerprint, "status": status, "body": body,
                                               "request_id": request_id, "at": time.time()}

    # persistence --------------------------------------------------------------------------------------------------
    def save(self, force: bool = False) -> None:
        """Persist the state: at once when the last write is older than SAVE_INTERVAL_S (or force), else once that
        interval has passed. Every write rewrites the whole file while holding the lock that requests need, so a
        burst of writes (a smoke test's payments) saved one by one stalled every other request, health checks too."""
        if self.settings.state_file is None:
            return
        with self.lock:
            wait = self._last_write + SAVE_INTERVAL_S - time.monotonic()
            if force or wait <= 0:
                self._write()
                return
            if not self._flush_pending:
                self._flush_pending = True
                timer = threading.Timer(wait, self._flush)
                timer.daemon = True
                timer.start()

    def _flush(self) -> None:
        with self.lock:
            if self._flush_pending:
                self._write()

    def _write(self) -> None:
        """Write the state atomically (temp file, fsync, rename); mode 0600 since it holds webhook secrets."""
        path = self.settings.state_file
        assert path is not None
        self._flush_pending = False
        self._last_write = time.monotonic()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.data, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
