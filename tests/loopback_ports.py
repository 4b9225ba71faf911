"""Free TCP ports on 127.0.0.1 for the servers the tests start.

A port handed out by the kernel (bind to port 0) lies in the ephemeral range (32768-60999 here). Between the moment
it is released and the moment a test's server binds it, any outgoing connection on the machine may take it as its
source port; under a load generator that happens, and the server fails with "Address already in use". The ports
handed out here lie below that range, where the kernel never picks a source port, and away from the lab's fixed ports
(25025 and up).
"""

from __future__ import annotations

import random
import socket

PORT_RANGE = range(20000, 25000)
_handed_out: set[int] = set()


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
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port left in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")
