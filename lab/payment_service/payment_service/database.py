"""PostgreSQL access: one connection per worker thread, reopened after a connection failure."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

import psycopg

if TYPE_CHECKING:
    from .metrics import Metrics

CONNECT_TIMEOUT_S = 2
STATEMENT_TIMEOUT_MS = 5000


class Database:
    """Runs single statements in autocommit mode on the calling thread's connection."""

    def __init__(self, url: str, metrics: Metrics | None = None) -> None:
        self._url = url
        self._local = threading.local()
        self._metrics = metrics

    def fetch(self, sql: str, params: Sequence[Any] = (), *, idempotent: bool = True,
              operation: str | None = None) -> list[tuple[Any, ...]]:
        """Rows of one statement; its duration is recorded by operation (the statement's first keyword unless given),
        failed attempts included."""
        started = time.monotonic()
        try:
            return self._fetch(sql, params, idempotent)
        finally:
            if self._metrics is not None:
                self._metrics.observe_db(operation or sql.lstrip().split(maxsplit=1)[0].lower(),
                                         time.monotonic() - started)

    def _fetch(self, sql: str, params: Sequence[Any], idempotent: bool) -> list[tuple[Any, ...]]:
        """An idempotent statement is retried once when a reused connection had gone stale."""
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
                return self._fetch(sql, params, idempotent)
            raise

    def ping(self) -> None:
        """Raise unless the server answers SELECT 1."""
        self.fetch("SELECT 1", operation="ping")

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
