"""Free TCP ports on 127.0.0.1 for the servers the tests start.

A port handed out by the kernel (bind to port 0) lies in the ephemeral range (32768-60999 here). Between the moment
it is released and the moment a test's server binds it, any outgoing connection on the machine may take it as its
source port; under a load generator that happens, and the server fails with "Address already in use". The ports
handed out here lie below that range, where the kernel never picks a source port, and away from the lab's fixed ports
(25025 and up).

Test suites run two at a time, each in its own process: a port one process checked free may be bound by the other's
server a moment later. So every port handed out is also claimed in a directory shared by the processes (a file named
after it, holding the claiming pid, made with O_EXCL); a claim whose process is gone is taken over.
"""

from __future__ import annotations

import atexit
import os
import random
import socket
import tempfile
from pathlib import Path

PORT_RANGE = range(20000, 25000)
CLAIMS = Path(tempfile.gettempdir()) / "payments-test-ports"
_handed_out: set[int] = set()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(port: int) -> bool:
    """Claim PORT for this process; False when another running process holds it."""
    CLAIMS.mkdir(mode=0o1777, exist_ok=True)
    path = CLAIMS / str(port)
    for attempt in ("first", "after removing a dead process's claim"):  # pylint: disable=unused-variable
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(path.read_text())
            except (OSError, ValueError):
                return False  # being written by the process that just made it
            if holder == os.getpid() or process_alive(holder):
                return False
            path.unlink(missing_ok=True)  # the process that claimed it is gone
            continue
        with os.fdopen(handle, "w") as claimed:
            claimed.write(str(os.getpid()))
        return True
    return False


@atexit.register
def release_claims() -> None:
    for port in _handed_out:
        path = CLAIMS / str(port)
        try:
            if int(path.read_text()) == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass


def free_port() -> int:
    """A port of PORT_RANGE that nothing is bound to and that this process has not handed out before.

    The search starts at a random port so that two test processes at once rarely try the same port before either
    binds it.
    """
    start = random.randrange(len(PORT_RANGE))
    for port in [*PORT_RANGE[start:], *PORT_RANGE[:start]]:
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not claim(port):
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port left in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")
