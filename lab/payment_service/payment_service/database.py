"""PostgreSQL access: one connection per worker thread, reopened after a connection failure."""

from __future__ import annotations

import threading
from typing import Any, Sequence

import psycopg

CONNECT_TIMEOUT_S = 2
STATEMENT_TIMEOUT_MS = 5000


class Database:
    """Runs single statements in autocommit mode on the calling thread's connection."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._local = threading.local()

    def fetch(self, sql: str, params: Sequence[Any] = (), *, idempotent: bool = True) -> list[tuple[Any, ...]]:
        """Rows of one statement; an idempotent one is retried once when a reused connection had gone stale."""
        connection, reused = self._connection()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError:
            if not connection.closed:
                raise
            self._local.connection = None
            if reused and idempotent:
                return self.fetch(sql, params, idempotent=idempotent)
            raise

    def ping(self) -> None:
        """Raise unless the server answers SELECT 1."""
        self.fetch("SELECT 1")

    def close(self) -> None:
        """Close the calling thread's connection, if any (a command that ends closes it cleanly)."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def _connection(self) -> tuple[psycopg.Connection[Any], bool]:
        connection = getattr(self._local, "connection", None)
        if connection is not None and not connection.closed:
            return connection, True
        connection = psycopg.connect(self._url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True,
                                     options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                                     application_name="payment-service")
        self._local.connection = connection
        return connection, False
