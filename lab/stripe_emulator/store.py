"""All emulator state behind one lock, with optional atomic JSON persistence.

Objects of every kind live in one id-keyed dict; fields whose names start with ``_`` are internal
(ordering, secrets, mode) and never rendered. Test and live objects share the dict but every
lookup is scoped to the mode of the API key, as Stripe keeps the two modes apart. An index by
mode and kind keeps lists and searches proportional to the objects of that kind, not to the state.

Persistence is incremental: each record (object, idempotency key, delivery) keeps its JSON text, and
only the records a request may have changed are encoded again. A background writer joins those texts
into the state file outside the lock, so a large state costs requests nothing but the encoding of what
they touched (a whole-state ``json.dump`` under the lock took seconds at 30 MB and stalled every request).
"""

from __future__ import annotations

import collections
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
# The state file is written at most this often (and on exit): only SIGKILL loses the last second or two.
SAVE_INTERVAL_S = 1.0
# The sections of the state file made of records, in file order.
SECTIONS = ("objects", "idempotency.test", "idempotency.live", "deliveries")


def random_token(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _unused in range(length))


def empty_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "created": int(time.time()), "seq": 0, "objects": {}, "idempotency": {"test": {}, "live": {}},
            "deliveries": {}}


def _encode(key: str, value: Any) -> str:
    return f"{json.dumps(key)}:{json.dumps(value, separators=(',', ':'))}"


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
    # Finished (succeeded or failed for good) deliveries kept in the delivery log, oldest dropped first; pending ones
    # are always kept. Every event makes one per matching endpoint, so the log would otherwise grow without end.
    delivery_log_size: int = 10_000
    state_file: Path | None = None
    # Live-mode payment methods (a lab's stand-in for a real card kept for probes): id -> the test card it behaves as.
    live_cards: dict[str, str] = field(default_factory=dict)


class Store:  # pylint: disable=too-many-instance-attributes
    """The state and the lock every request holds while it reads or changes it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.wakeup = threading.Condition(self.lock)
        # A request that changes state sets this while it runs: then every object find() returns may be changed too.
        self.mutating = False
        self.data = empty_state()
        if settings.state_file and settings.state_file.exists():
            loaded = json.loads(settings.state_file.read_text(encoding="utf-8"))
            if loaded.get("version") != STATE_VERSION:
                raise ValueError(f"{settings.state_file}: unknown state version {loaded.get('version')!r}")
            self.data = loaded
            self.data.setdefault("created", int(time.time()))
        self._index()
        self._save_wanted = threading.Condition(threading.Lock())
        self._save_due = False
        self._writer: threading.Thread | None = None
        self._write_lock = threading.Lock()  # one file write at a time (the writer's and the exit's)

    def _index(self) -> None:
        """The indexes and record texts derived from self.data (after a load or a reset)."""
        self._by_kind: dict[tuple[str, str], dict[str, dict[str, Any]]] = collections.defaultdict(dict)
        for obj in self.data["objects"].values():
            self._by_kind[(obj["_mode"], obj["object"])][obj["id"]] = obj
        self.pending_deliveries: set[str] = {d["id"] for d in self.data["deliveries"].values() if d["status"] == "pending"}
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict(
            (d["id"], None) for d in self.data["deliveries"].values() if d["status"] != "pending")
        self._texts: dict[str, dict[str, str]] = {name: {k: _encode(k, v) for k, v in self._section(name).items()}
                                                  for name in SECTIONS}
        self._dirty: set[tuple[str, str]] = set()
        self._trim_deliveries()

    def _section(self, name: str) -> dict[str, Any]:
        if name.startswith("idempotency."):
            return self.data["idempotency"][name.split(".", 1)[1]]
        return self.data[name]

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
    def touch(self, object_id: str) -> None:
        """Mark an object as (possibly) changed: its text is encoded again at the next save."""
        self._dirty.add(("objects", object_id))

    def _placed(self, section: str, key: str) -> None:
        """A new record: its text takes its place at the end now (the file keeps the state's order), filled at the save."""
        self._texts[section].pop(key, None)
        self._texts[section][key] = ""
        self._dirty.add((section, key))

    def add(self, obj: dict[str, Any], mode: str) -> dict[str, Any]:
        self.data["seq"] += 1
        obj["_seq"] = self.data["seq"]
        obj["_mode"] = mode
        self.data["objects"][obj["id"]] = obj
        self._by_kind[(mode, obj["object"])][obj["id"]] = obj
        self._placed("objects", obj["id"])
        return obj

    def remove(self, object_id: str) -> None:
        obj = self.data["objects"].pop(object_id, None)
        if obj is not None:
            self._by_kind[(obj["_mode"], obj["object"])].pop(object_id, None)
            self._texts["objects"].pop(object_id, None)
            self._dirty.discard(("objects", object_id))

    def lookup(self, object_id: str) -> dict[str, Any] | None:
        obj = self.data["objects"].get(object_id)
        if obj is not None:
            self.touch(object_id)
        return obj

    def get(self, kind: str, object_id: str, mode: str, *, label: str | None = None, param: str = "id",
            status: int = 404) -> dict[str, Any]:
        """The object or Stripe's ``resource_missing`` error (naming the other mode when it lives there)."""
        obj = self.data["objects"].get(object_id) if isinstance(object_id, str) else None
        if obj is None or obj.get("object") != kind or obj.get("_deleted"):
            raise no_such(label or kind, str(object_id), param=param, status=status)
        if obj["_mode"] != mode:
            raise no_such(label or kind, object_id, param=param, status=status, other_mode=obj["_mode"])
        self.touch(object_id)
        return obj

    def find(self, kind: str, mode: str, match: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Objects of one kind in one mode, newest first."""
        found = [o for o in reversed(self._by_kind[(mode, kind)].values())
                 if not o.get("_deleted") and (match is None or match(o))]
        found.sort(key=lambda o: o["_seq"], reverse=True)  # already in order: a check that costs one pass
        if self.mutating:
            self._dirty.update(("objects", o["id"]) for o in found)
        return found

    def counts(self) -> dict[str, int]:
        """Objects by kind, both modes (deleted customers included)."""
        totals: collections.Counter[str] = collections.Counter()
        for (_mode, kind), objects in self._by_kind.items():
            totals[kind] += len(objects)
        return {kind: n for kind, n in totals.items() if n}

    @staticmethod
    def render(obj: dict[str, Any]) -> dict[str, Any]:
        """A deep copy without the internal fields: what the API returns."""
        return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}

    def reset(self) -> None:
        created = self.data["created"]
        self.data = empty_state()
        self.data["created"] = created
        self._index()

    # idempotency --------------------------------------------------------------------------------------------------
    def idempotent_result(self, mode: str, key: str) -> dict[str, Any] | None:
        entries = self.data["idempotency"][mode]
        horizon = time.time() - IDEMPOTENCY_TTL_S
        # Keys are kept in the order they were stored, so the stale ones are at the front: no scan of them all.
        while entries:
            oldest = next(iter(entries))
            if entries[oldest]["at"] >= horizon:
                break
            del entries[oldest]
            self._texts[f"idempotency.{mode}"].pop(oldest, None)
            self._dirty.discard((f"idempotency.{mode}", oldest))
        return entries.get(key)

    def remember(self, mode: str, key: str, fingerprint: str, status: int, body: dict[str, Any], request_id: str) -> None:
        entries = self.data["idempotency"][mode]
        entries.pop(key, None)  # a key stored again goes to the end, where the newest are
        entries[key] = {"fingerprint": fingerprint, "status": status, "body": body, "request_id": request_id, "at": time.time()}
        self._placed(f"idempotency.{mode}", key)

    # webhook deliveries -------------------------------------------------------------------------------------------
    def deliveries(self) -> dict[str, dict[str, Any]]:
        return self.data["deliveries"]

    def put_delivery(self, delivery: dict[str, Any]) -> None:
        """Add or update a delivery record (the caller holds the lock); finished ones beyond the limit are dropped."""
        delivery_id = delivery["id"]
        if delivery_id in self.data["deliveries"]:
            self._dirty.add(("deliveries", delivery_id))
        else:
            self._placed("deliveries", delivery_id)
        self.data["deliveries"][delivery_id] = delivery
        if delivery["status"] == "pending":
            self.pending_deliveries.add(delivery_id)
        else:
            self.pending_deliveries.discard(delivery_id)
            self._finished[delivery_id] = None
            self._trim_deliveries()

    def _trim_deliveries(self) -> None:
        while len(self._finished) > self.settings.delivery_log_size:
            oldest, _unused = self._finished.popitem(last=False)
            self.data["deliveries"].pop(oldest, None)
            self._texts["deliveries"].pop(oldest, None)
            self._dirty.discard(("deliveries", oldest))

    # persistence --------------------------------------------------------------------------------------------------
    def save(self, force: bool = False) -> None:
        """Persist the state: at once with force (and the lock held for the encoding of what changed only), else by
        the background writer within SAVE_INTERVAL_S."""
        if self.settings.state_file is None:
            return
        if force:
            self._write()
            return
        with self._save_wanted:
            self._save_due = True
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="state-writer", daemon=True)
                self._writer.start()
            self._save_wanted.notify()

    def _write_loop(self) -> None:
        while True:
            with self._save_wanted:
                while not self._save_due:
                    self._save_wanted.wait()
                self._save_due = False
            self._write()
            time.sleep(SAVE_INTERVAL_S)

    def snapshot_text(self) -> list[str]:
        """The state file's text in pieces, with the changed records encoded again (the caller need not hold the lock)."""
        with self.lock:
            for section, key in self._dirty:
                records = self._section(section)
                if key in records:
                    self._texts[section][key] = _encode(key, records[key])
            self._dirty.clear()
            head = {k: self.data[k] for k in ("version", "created", "seq")}
            parts = [json.dumps(head, separators=(",", ":"))[:-1]]
            texts = {name: list(self._texts[name].values()) for name in SECTIONS}
        parts += [',"objects":{', ",".join(texts["objects"]), '},"idempotency":{"test":{', ",".join(texts["idempotency.test"]),
                  '},"live":{', ",".join(texts["idempotency.live"]), '}},"deliveries":{', ",".join(texts["deliveries"]), "}}"]
        return parts

    def close(self) -> None:
        """The last save, at exit. The state lock is taken and kept: a request still arriving on an open keep-alive
        connection waits for it until the process ends, so nothing is answered that this save does not hold."""
        # Both taken in _write's order (no deadlock with the writer), and never released: the process is exiting.
        self._write_lock.acquire()  # pylint: disable=consider-using-with
        self.lock.acquire()  # pylint: disable=consider-using-with
        if self.settings.state_file is not None:
            self._write_file()

    def _write(self) -> None:
        """Write the state atomically (temp file, fsync, rename); mode 0600 since it holds webhook secrets."""
        with self._write_lock:
            self._write_file()

    def _write_file(self) -> None:
        path = self.settings.state_file
        assert path is not None
        parts = self.snapshot_text()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(parts)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
