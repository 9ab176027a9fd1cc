"""A small PNG reader for screenshot checks (no imaging library in the test venv): the size
from IHDR and the pixels of 8-bit RGB/RGBA images, unfiltered per the PNG spec."""

from __future__ import annotations

import struct
import zlib


def _chunks(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    i = 8
    while i < len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        yield kind, data[i + 8:i + 8 + n]
        i += 12 + n


def size(data: bytes) -> tuple[int, int]:
    kind, ihdr = next(_chunks(data))
    assert kind == b"IHDR"
    return struct.unpack(">II", ihdr[:8])


def rows(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, unfiltered scanlines)."""
    ihdr, idat = b"", b""
    for kind, body in _chunks(data):
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat += body
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    out, prev = [], bytes(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xFF
        elif f == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif f == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 0xFF
        elif f == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        out.append(bytes(line))
        prev = line
    return w, h, bpp, out


def ink(data: bytes, step: int = 4) -> tuple[float, int]:
    """(share of sampled pixels that differ from the most common colour, distinct colours)."""
    w, h, bpp, lines = rows(data)
    counts: dict[bytes, int] = {}
    for y in range(0, h, step):
        line = lines[y]
        for x in range(0, w, step):
            px = line[x * bpp:x * bpp + 3]
            counts[px] = counts.get(px, 0) + 1
    total = sum(counts.values())
    background = max(counts.values())
    return 1 - background / total, len(counts)
