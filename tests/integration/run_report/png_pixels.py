"""A small PNG decoder (8-bit RGB/RGBA, non-interlaced, as Chromium writes screenshots): size and pixels."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def paeth(left: int, up: int, corner: int) -> int:
    estimate = left + up - corner
    distances = (abs(estimate - left), abs(estimate - up), abs(estimate - corner))
    return (left, up, corner)[distances.index(min(distances))]


def decode(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of raw pixel bytes)."""
    assert data[:8] == SIGNATURE, "not a PNG"
    offset, chunks, header = 8, [], None
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    assert header is not None, "no IHDR"
    width, height, depth, colour_type, dummy_compression, dummy_filter, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    pixel = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * pixel
    rows, previous = [], bytearray(stride)
    for index in range(height):
        kind, line = raw[index * (stride + 1)], bytearray(raw[index * (stride + 1) + 1:(index + 1) * (stride + 1)])
        for position in range(stride):
            left = line[position - pixel] if position >= pixel else 0
            up = previous[position]
            corner = previous[position - pixel] if position >= pixel else 0
            line[position] = (line[position] + (0, left, up, (left + up) // 2, paeth(left, up, corner))[kind]) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(row) for row in rows] if pixel == 3 else [strip_alpha(row) for row in rows]


def strip_alpha(row: bytes) -> bytes:
    return b"".join(row[index:index + 3] for index in range(0, len(row), 4))


def colours(rows: list[bytes], step: int = 4) -> set[bytes]:
    """The distinct RGB colours of every STEP-th pixel of every STEP-th row."""
    return {row[index:index + 3] for row in rows[::step] for index in range(0, len(row), 3 * step)}
