"""Messages stored as files: DIR/<id>.eml (the message as received) and DIR/<id>.json (its envelope)."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

_ID = re.compile(r"[0-9]{19,20}-[0-9a-f]{8}")


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


class Mailbox:
    """A directory of received messages; ids sort by arrival."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def save(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> str:
        """Store one message; the envelope file is written last, so a listed message is complete."""
        message_id = f"{time.time_ns()}-{secrets.token_hex(4)}"
        received_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        _write_atomically(self.directory / f"{message_id}.eml", content)
        envelope = {"id": message_id, "from": mail_from, "to": rcpt_tos, "received_at": received_at}
        _write_atomically(self.directory / f"{message_id}.json", json.dumps(envelope).encode("utf-8"))
        return message_id

    def raw(self, message_id: str) -> bytes | None:
        """The message as received, or None for an unknown id."""
        path = self.directory / f"{message_id}.eml"
        return path.read_bytes() if _ID.fullmatch(message_id) and path.exists() else None

    def messages(self, to: str | None = None, header: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """Every stored message, oldest first; to keeps those with that envelope recipient (any case), header those
        with a header of that name (any case) and exactly that value."""
        found = []
        for envelope_path in sorted(self.directory.glob("*.json")):
            envelope = json.loads(envelope_path.read_text(encoding="utf-8"))
            if to is not None and to.lower() not in (address.lower() for address in envelope["to"]):
                continue
            parsed = self._headers(envelope["id"])
            if header is not None and header[1] not in [str(value).strip() for value in parsed.get_all(header[0], [])]:
                continue
            found.append(_summary(envelope, parsed))
        return found

    def _headers(self, message_id: str) -> EmailMessage:
        with open(self.directory / f"{message_id}.eml", "rb") as stream:
            parsed = BytesHeaderParser(policy=policy.default).parse(stream)
        assert isinstance(parsed, EmailMessage)
        return parsed


def _summary(envelope: dict[str, Any], parsed: EmailMessage) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for name, value in parsed.items():
        headers.setdefault(name, str(value))  # a repeated header: its first value
    return {"id": envelope["id"], "message_id": str(parsed.get("Message-ID", "")), "from": envelope["from"],
            "to": envelope["to"], "subject": str(parsed.get("Subject", "")), "headers": headers,
            "received_at": envelope["received_at"]}
