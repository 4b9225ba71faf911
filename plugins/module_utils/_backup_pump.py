# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The pipes between the stages of a backup: a thread that drains a client program's output (pg_dump's archive) into
a bounded queue of blocks, and the pipe an S3 upload reads the encrypted stream from.

Private to the payments.deploy collection: the interface may change without notice.

pg_dump writes as fast as the server sends rows; compressing and encrypting is slower at times. Reading its pipe in a
thread of its own keeps pg_dump from waiting on the compressor for long, while the bounded queue keeps memory bounded.
"""

from __future__ import annotations

import collections
import queue
import threading
import typing as t

from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg

READ_SIZE = 1 << 20
QUEUE_BLOCKS = 32
# How long a reader or writer waits for room before it looks at the stop flag (or the failure) again.
POLL = 0.2


class OutputPump:
    """``start``, then iterate ``blocks()`` to the end; ``stop`` on failure (then kill the child), ``close`` always.

    A failure to read the pipe is appended to ``errors`` (as a PostgresError) and ends the blocks early: the caller
    checks ``errors`` after the child's exit status.
    """

    def __init__(self, child: pg.Child, errors: list[BaseException], name: str = "pg_dump") -> None:
        stdout = child.process.stdout
        if stdout is None:
            raise ValueError(f"{name} was started without a pipe for its output")
        self.stdout = stdout
        self.errors = errors
        self.name = name
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_BLOCKS)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.drain, name=f"{name}-reader", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def blocks(self) -> t.Iterator[bytes]:
        while (block := self.queue.get()) is not None:
            yield block

    def stop(self) -> None:
        """Tell the reader to stop handing on blocks (the consumer failed)."""
        self.stopping.set()

    def close(self) -> None:
        """Stop the reader and wait for it, unblocking it while it waits for room in the queue."""
        self.stopping.set()
        while self.thread.is_alive():
            try:
                self.queue.get(timeout=0.1)
            except queue.Empty:
                pass

    def put(self, item: bytes | None) -> bool:
        """Hand on ``item`` unless told to stop first; whether it was handed on."""
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=POLL)
                return True
            except queue.Full:
                continue
        return False

    def drain(self) -> None:
        try:
            while not self.stopping.is_set():
                block = self.stdout.read(READ_SIZE)
                if not block or not self.put(block):
                    break
        except (OSError, ValueError) as exc:
            self.errors.append(pg.PostgresError(f"reading the output of {self.name} failed: {exc}"))
        self.put(None)


class StreamPipe:
    """The file the transfer manager reads the object from, fed by ``S3Upload.write``: ``read(n)`` blocks until it has
    ``n`` bytes or the end, so every part but the last has exactly the part size (as S3 requires). It never seeks.

    Ending it with ``fail`` makes the reader raise, never see an end: only ``close`` (the commit) can complete the
    object, so an aborted stream never appears as a short object.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.closed = False
        self.error: BaseException | None = None
        self.ready = threading.Condition()

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return True

    def write(self, data: bytes, failed: t.Callable[[], bool]) -> None:
        """Append ``data``, waiting while ``limit`` bytes are unread; gives up when ``failed()`` says the reader failed."""
        with self.ready:
            while self.size >= self.limit and self.error is None and not failed():
                self.ready.wait(POLL)
            if self.error is None and not failed():
                self.chunks.append(bytes(data))
                self.size += len(data)
                self.ready.notify_all()

    def read(self, amount: int | None = -1) -> bytes:
        with self.ready:
            while self.error is None and not self.closed and (amount is None or amount < 0 or self.size < amount):
                self.ready.wait()
            if self.error is not None:
                raise self.error
            wanted = self.size if amount is None or amount < 0 else min(amount, self.size)
            out = bytearray()
            while len(out) < wanted:
                chunk = self.chunks.popleft()
                take = wanted - len(out)
                out += chunk[:take]
                if len(chunk) > take:
                    self.chunks.appendleft(chunk[take:])
            self.size -= wanted
            self.ready.notify_all()
            return bytes(out)

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify_all()

    def fail(self, error: BaseException) -> None:
        with self.ready:
            self.error = error
            self.ready.notify_all()
