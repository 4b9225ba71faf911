"""Logging to stderr with every known secret value masked."""

from __future__ import annotations

import logging
import sys
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
