"""A stand-in for a hostile server: listens on a free port, speaks just enough of the PostgreSQL protocol to ask a client
for its password in clear text, and records every connection and every password it was given."""

from __future__ import annotations

import socket
import struct
import threading
import typing as t

SSL_REQUEST = 80877103


class PasswordCatcher:
    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.connections: list[tuple[str, int]] = []
        self.passwords: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="password-catcher", daemon=True)

    def __enter__(self) -> PasswordCatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, peer = self._sock.accept()
            except OSError:
                continue
            self.connections.append(peer)
            with client:
                client.settimeout(5)
                try:
                    self._talk(client)
                except (OSError, struct.error):
                    pass

    @staticmethod
    def _message(client: socket.socket, length_only: bool) -> bytes:
        head = b"" if length_only else client.recv(1)
        (length,) = struct.unpack(">I", client.recv(4))
        body = b""
        while len(body) < length - 4:
            body += client.recv(length - 4 - len(body))
        return head + body

    def _talk(self, client: socket.socket) -> None:
        startup = self._message(client, length_only=True)
        if struct.unpack(">I", startup[:4])[0] == SSL_REQUEST:
            client.sendall(b"N")
            startup = self._message(client, length_only=True)
        client.sendall(b"R" + struct.pack(">II", 8, 3))  # AuthenticationCleartextPassword
        reply = self._message(client, length_only=False)
        if reply[:1] == b"p":
            self.passwords.append(reply[1:].rstrip(b"\0").decode("utf-8", "replace"))
