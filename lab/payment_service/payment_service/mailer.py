"""Email over SMTP: a background worker with a bounded queue, so that a slow or absent mail server never holds a
request, and a cached connectivity check for readiness.

Each email gets a few attempts on a fresh connection; a permanent refusal (5xx) is not retried. Outcomes are
counted in emails_total and logged with the email's reference (a payment id), never an address, a password or
a message body.
"""

from __future__ import annotations

import logging
import os
import queue
import smtplib
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Iterator

from .checks import CachedCheck, Result, outcome
from .config import SmtpServer
from .metrics import Metrics

SEND_TIMEOUT_S = 10.0
CHECK_TIMEOUT_S = 2.0
CHECK_TTL_S = 5.0  # like the Stripe check: readiness probes and scrapes reuse one NOOP per few seconds
QUEUE_SIZE = 100
RETRY_DELAYS_S = (1.0, 3.0)  # waits between the attempts of one email: three attempts in all


@dataclass(frozen=True)
class Email:
    """A message to send, its recipient and what the logs may call it."""

    kind: str
    message: EmailMessage
    sender: str
    recipient: str
    reference: str


@contextmanager
def smtp_session(server: SmtpServer, timeout: float) -> Iterator[smtplib.SMTP]:
    """A connected (STARTTLS when asked, logged in when a user is given) SMTP client, closed afterwards."""
    client = smtplib.SMTP(server.host, server.port, timeout=timeout)
    try:
        client.ehlo()
        if server.starttls:
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if server.username:
            client.login(server.username, server.password)
        yield client
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def _permanent(exc: Exception) -> bool:
    """A refusal that a new attempt would get again: a 5xx answer, or every recipient refused."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _message in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code >= 500


def _describe(exc: Exception) -> str:
    """The class and SMTP code of a failure: server messages may quote the address, so they are left out."""
    code = getattr(exc, "smtp_code", None)
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__


class Mailer:
    """Sends emails from one background thread; submit() never blocks."""

    def __init__(self, server: SmtpServer, logger: logging.Logger, metrics: Metrics) -> None:
        self._server = server
        self._logger = logger
        self._metrics = metrics
        self._queue: queue.Queue[Email] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._worker_pid = 0
        self._check = CachedCheck(lambda: outcome(self._noop), CHECK_TTL_S)

    def submit(self, email: Email) -> None:
        """Queue an email; when the queue is full it is dropped, counted as failed and logged."""
        self._ensure_worker()
        try:
            self._queue.put_nowait(email)
        except queue.Full:
            self._metrics.count_email(email.kind, "failed")
            self._logger.warning("%s for %s not sent: the email queue is full (%d)", email.kind, email.reference,
                                 QUEUE_SIZE)

    def check(self) -> Result:
        """('ok', '') when the server answers a connect (and STARTTLS, login) and NOOP; cached for CHECK_TTL_S."""
        return self._check.result()

    def drain(self, timeout: float) -> None:
        """Wait up to timeout seconds for the queued emails to be sent (a graceful stop)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    def _ensure_worker(self) -> None:
        # The application is built in gunicorn's master and forked: a thread started there would not exist in the
        # worker, so the thread is started by the first email of each process.
        with self._lock:
            if self._worker is None or not self._worker.is_alive() or self._worker_pid != os.getpid():
                self._worker = threading.Thread(target=self._run, name="mailer", daemon=True)
                self._worker_pid = os.getpid()
                self._worker.start()

    def _run(self) -> None:
        while True:
            email = self._queue.get()
            try:
                self._deliver(email)
            except Exception:  # the worker must outlive any surprise; the traceback goes to the redacted log
                self._metrics.count_email(email.kind, "failed")
                self._logger.exception("%s for %s not sent: unexpected error", email.kind, email.reference)
            finally:
                self._queue.task_done()

    def _deliver(self, email: Email) -> None:
        attempts = len(RETRY_DELAYS_S) + 1
        for attempt in range(1, attempts + 1):
            try:
                with smtp_session(self._server, SEND_TIMEOUT_S) as client:
                    client.send_message(email.message, from_addr=email.sender, to_addrs=[email.recipient])
            except (smtplib.SMTPException, OSError) as exc:
                if _permanent(exc) or attempt == attempts:
                    self._metrics.count_email(email.kind, "failed")
                    self._logger.warning("%s for %s not sent after %d attempt(s): %s", email.kind, email.reference,
                                         attempt, _describe(exc))
                    return
                time.sleep(RETRY_DELAYS_S[attempt - 1])
                continue
            self._metrics.count_email(email.kind, "sent")
            self._logger.info("%s for %s sent", email.kind, email.reference)
            return

    def _noop(self) -> None:
        with smtp_session(self._server, CHECK_TIMEOUT_S) as client:
            code, _message = client.noop()
            if code != 250:
                raise smtplib.SMTPResponseException(code, b"NOOP refused")
