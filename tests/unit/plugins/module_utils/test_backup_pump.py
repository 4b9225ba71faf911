"""The pump that drains pg_dump's output (with a real child process) and the pipe S3 uploads are read from: every byte
in order, bounded buffering, and a stop or a failure that ends them without hanging and without looking like an end."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from ansible_collections.payments.deploy.plugins.module_utils import _backup_pump as pump_lib
from ansible_collections.payments.deploy.plugins.module_utils import _backup_store as store_lib


def child_printing(path: Path) -> types.SimpleNamespace:
    process = subprocess.Popen([sys.executable, "-c",  # pylint: disable=consider-using-with  # waited for by each test
                                "import shutil, sys; shutil.copyfileobj(open(sys.argv[1], 'rb'), sys.stdout.buffer)",
                                str(path)], stdout=subprocess.PIPE)
    return types.SimpleNamespace(process=process)


def test_every_byte_of_the_output_arrives_in_order(tmp_path: Path) -> None:
    source = tmp_path / "dump"
    source.write_bytes(os.urandom(7 * pump_lib.READ_SIZE + 12345))
    child = child_printing(source)
    errors: list[BaseException] = []
    pump = pump_lib.OutputPump(child, errors)
    pump.start()
    digest = hashlib.sha256()
    for block in pump.blocks():
        digest.update(block)
    pump.close()
    assert child.process.wait() == 0
    assert not errors
    assert digest.hexdigest() == hashlib.sha256(source.read_bytes()).hexdigest()


def test_a_stopped_pump_ends_while_its_queue_is_full(tmp_path: Path) -> None:
    source = tmp_path / "dump"
    source.write_bytes(os.urandom((pump_lib.QUEUE_BLOCKS + 8) * pump_lib.READ_SIZE))
    child = child_printing(source)
    pump = pump_lib.OutputPump(child, [])
    pump.start()
    deadline = time.monotonic() + 30
    while not pump.queue.full() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pump.queue.full(), "the consumer took nothing, so the queue filled up"
    pump.stop()
    child.process.kill()
    pump.close()
    child.process.wait()
    assert not pump.thread.is_alive()


def test_a_child_without_an_output_pipe_is_refused() -> None:
    with pytest.raises(ValueError, match="without a pipe"):
        pump_lib.OutputPump(types.SimpleNamespace(process=types.SimpleNamespace(stdout=None)), [])


def test_the_pipe_hands_out_exactly_the_amount_asked_for_across_writes() -> None:
    pipe = pump_lib.StreamPipe(limit=1 << 20)
    pieces = [os.urandom(size) for size in (3, 1000, 7, 50_000, 1)]
    reads: list[bytes] = []
    reader = threading.Thread(target=lambda: reads.extend([pipe.read(1010), pipe.read(1 << 30)]))
    reader.start()
    for piece in pieces:
        pipe.write(piece, lambda: False)
    pipe.close()
    reader.join(timeout=10)
    assert len(reads[0]) == 1010
    assert b"".join(reads) == b"".join(pieces)
    assert pipe.read(10) == b"", "the end, once closed"


def test_a_failed_pipe_raises_instead_of_ending() -> None:
    pipe = pump_lib.StreamPipe(limit=1 << 20)
    pipe.write(b"partial", lambda: False)
    outcome: list[BaseException | bytes] = []

    def read_all() -> None:
        try:
            outcome.append(pipe.read(1 << 20))
        except store_lib.StoreError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read_all)
    reader.start()
    pipe.fail(store_lib.StoreError("aborted"))
    reader.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], store_lib.StoreError), "a short object must never be completed"


def test_a_writer_waits_for_room_and_gives_up_when_the_reader_failed() -> None:
    pipe = pump_lib.StreamPipe(limit=100)
    pipe.write(b"x" * 100, lambda: False)
    failed = threading.Event()
    writer = threading.Thread(target=pipe.write, args=(b"y" * 10, failed.is_set))
    writer.start()
    writer.join(timeout=0.5)
    assert writer.is_alive(), "no room: the writer waits"
    failed.set()
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert pipe.size == 100, "nothing more was buffered for a failed reader"
