"""Logging to stderr with every known secret value masked."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Iterable

LOGGER_NAME = "payment_service"
MASK = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in text by a mask, longest first."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter that masks secrets in the message and in tracebacks."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s")
        self._secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


def make_logger(secrets: Iterable[str]) -> logging.Logger:
    """The service logger, writing redacted lines to stderr."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


class OutageLog:
    """Logs when a dependency starts failing and when it answers again, not once per request."""

    def __init__(self, logger: logging.Logger, failing_message: str, recovered_message: str) -> None:
        self._logger = logger
        self._failing_message = failing_message
        self._recovered_message = recovered_message
        self._lock = threading.Lock()
        self._failing = False

    def note(self, failing: bool, detail: str = "") -> None:
        """Record the outcome of one call; log only a change."""
        with self._lock:
            if failing == self._failing:
                return
            self._failing = failing
        if failing:
            self._logger.warning("%s (%s)", self._failing_message, detail)
        else:
            self._logger.info("%s", self._recovered_message)
