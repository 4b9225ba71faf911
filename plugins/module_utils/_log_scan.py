# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scan the end of log files for secret values and card numbers, reporting where and what kind, never the value.

A file is read backwards in blocks until it has the last N lines (or ``max_bytes``), so a log of gigabytes costs the
memory of its tail; the tail's first line number comes from counting newlines before it in blocks of the same size.
"""

from __future__ import annotations

import datetime
import os
import re
import stat
import typing as t
from urllib.parse import quote, unquote, urlsplit

BLOCK = 65536
# 13 to 19 digits: either one run, or the groupings cards are printed in (4-4-4-4[-1..3], Amex 4-6-5, Diners 4-6-4)
# with one space or dash between the groups. Not inside a word or a longer number.
CARD = re.compile(rb"(?<![0-9A-Za-z])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|\d{4}([ -])\d{6}\2\d{4,5})(?![0-9A-Za-z]|[ -]\d)")
UUID = re.compile(rb"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
# ISO/IEC 7812: payment cards start with 1 to 6 (7 petroleum, 8 telecom/health, 9 national, 0 none).
CARD_FIRST_DIGITS = b"123456"
# A plain run of 13, 16 or 19 digits is an epoch time in ms, us or ns if it falls within this many years of the scan.
TIMESTAMP_YEARS_BEFORE = 25
TIMESTAMP_YEARS_AFTER = 2
MIN_SECRET_LENGTH = 8


class LogScanError(Exception):
    """A log file cannot be scanned."""


def luhn(digits: bytes) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = char - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def is_timestamp(digits: bytes, now: float) -> bool:
    scale = {13: 1e3, 16: 1e6, 19: 1e9}.get(len(digits))
    if scale is None:
        return False
    seconds = int(digits) / scale
    year = 365.25 * 86400
    if seconds < now - TIMESTAMP_YEARS_BEFORE * year:
        return False
    return seconds <= now + TIMESTAMP_YEARS_AFTER * year


def card_numbers(line: bytes, now: float) -> list[bytes]:
    """The card numbers of a line (digits only): Luhn-valid, a card's first digit, not an epoch time nor part of a UUID."""
    line = UUID.sub(lambda m: b"u" * len(m.group(0)), line)
    found = []
    for match in CARD.finditer(line):
        digits = re.sub(rb"[ -]", b"", match.group(0))
        if digits[:1] not in CARD_FIRST_DIGITS:
            continue
        if match.group(0).isdigit() and is_timestamp(digits, now):
            continue
        if luhn(digits):
            found.append(digits)
    return found


def secret_needles(name: str, value: str) -> list[tuple[str, bytes]]:
    """What to look for: the value as it is and percent-encoded, and for a URL its password alone (as it is and decoded)."""
    needles = [(name, value.encode("utf-8")), (name, quote(value, safe="").encode("utf-8"))]
    if "://" in value:
        try:
            password = urlsplit(value).password
        except ValueError:
            password = None
        if password:
            label = f"{name} password"
            needles += [(label, password.encode("utf-8")), (label, unquote(password).encode("utf-8"))]
    unique = []
    for label, needle in needles:
        if len(needle) >= MIN_SECRET_LENGTH and (label, needle) not in unique:
            unique.append((label, needle))
    return unique


def open_regular(path: str) -> t.BinaryIO:
    """The file opened for reading; a directory, FIFO or device is refused before it is opened (a FIFO would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise LogScanError(f"{path} is not a regular file")
        stream = open(path, "rb")  # pylint: disable=consider-using-with
    except OSError as exc:
        raise LogScanError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
        stream.close()
        raise LogScanError(f"{path} is not a regular file")
    return stream


def tail(stream: t.BinaryIO, lines: int, max_bytes: int) -> tuple[int, list[bytes]]:
    """(offset where the tail starts, its lines): the last ``lines`` lines, read backwards block by block."""
    end = stream.seek(0, os.SEEK_END)
    start, data, newlines = end, b"", 0
    # one newline more than lines wanted: the one that ends the line before the tail
    while start > 0 and newlines <= lines and len(data) < max_bytes:
        step = min(BLOCK, start, max_bytes - len(data))
        start -= step
        stream.seek(start)
        block = stream.read(step)
        newlines += block.count(b"\n")
        data = block + data
    offset = start
    if start > 0 and b"\n" in data:
        # the first bytes end a line that began before them
        cut = data.index(b"\n") + 1
        data, offset = data[cut:], start + cut
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    if len(parts) > lines:
        offset += sum(len(part) + 1 for part in parts[:-lines])
        parts = parts[-lines:]
    return offset, parts


def count_newlines(stream: t.BinaryIO, until: int) -> int:
    stream.seek(0)
    count, left = 0, until
    while left > 0:
        block = stream.read(min(BLOCK, left))
        if not block:
            break
        count += block.count(b"\n")
        left -= len(block)
    return count


def scan_file(path: str, lines: int, max_bytes: int, needles: list[tuple[str, bytes]], cards: bool,
              now: float | None = None) -> tuple[dict[str, t.Any], list[dict[str, t.Any]]]:
    """(what was scanned, findings) of one file; findings name the file, the line and the kind only."""
    now = datetime.datetime.now(datetime.timezone.utc).timestamp() if now is None else now
    with open_regular(path) as stream:
        try:
            start, tail_lines = tail(stream, lines, max_bytes)
            first = count_newlines(stream, start) + 1
        except OSError as exc:
            raise LogScanError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    findings = []
    for index, line in enumerate(tail_lines):
        for label, needle in needles:
            if needle in line and not any(f["kind"] == label and f["line"] == first + index for f in findings):
                findings.append({"path": path, "line": first + index, "kind": label})
        if cards:
            for digits in card_numbers(line, now):
                findings.append({"path": path, "line": first + index, "kind": f"card number ending {digits[-4:].decode()}"})
    return {"path": path, "first_line": first, "lines": len(tail_lines)}, findings
