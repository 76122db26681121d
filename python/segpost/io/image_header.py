"""A strict reader of JPEG and PNG structure: the image's size and kind, before any pixel is decoded.

A server that decodes what clients send must refuse an image it would not want to hold before
spending memory on it: a ~1 MB PNG may declare 30000 x 30000 pixels (2.7 GB decoded). ``inspect``
walks the file's structure (JPEG markers and segment lengths through to EOI; PNG chunks with their
CRCs through to IEND) without inflating or entropy-decoding anything, and raises ImageError for
anything malformed or truncated: a missing EOI or IEND, a segment or chunk that runs past the
end, a bad CRC, a zero or absurd dimension, an unknown PNG colour type.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size: baseline, extended, progressive, lossless, arithmetic
# (C4 is DHT, C8 reserved, CC DAC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01} | set(range(0xD0, 0xD8))     # TEM, RST0-7: no length field
_PNG_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}
_PNG_MAX_SIDE = 2 ** 31 - 1


class ImageError(ValueError):
    """Not a well-formed JPEG or PNG (the message says what is wrong)."""


@dataclass(frozen=True)
class ImageHeader:
    kind: str           # "jpeg" or "png"
    height: int
    width: int
    channels: int       # JPEG components; PNG samples per pixel
    progressive: bool = False


def inspect(data: bytes) -> ImageHeader:
    """The size and kind of a JPEG or PNG, after checking its whole structure (not its pixels)."""
    raw = data if isinstance(data, bytes) else bytes(data)
    if raw[:2] == b"\xff\xd8":
        return _jpeg(raw)
    if raw[:8] == _PNG_SIGNATURE:
        return _png(memoryview(raw))
    raise ImageError("not a JPEG or PNG image (unknown signature)")


def _jpeg(data: bytes) -> ImageHeader:
    n, pos, header, scans = len(data), 2, None, 0
    while True:
        # A marker: 0xFF, optional 0xFF fill bytes, then the code.
        if pos >= n or data[pos] != 0xFF:
            raise ImageError(f"JPEG: expected a marker at byte {pos}" if pos < n else "JPEG: truncated (no EOI marker)")
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise ImageError("JPEG: truncated (no EOI marker)")
        code = data[pos]
        pos += 1
        if code == 0xD9:
            break
        if code in (0x00, 0xD8):
            raise ImageError(f"JPEG: unexpected marker 0xFF{code:02X} at byte {pos - 2}")
        if code in _JPEG_STANDALONE:
            continue
        if pos + 2 > n:
            raise ImageError("JPEG: truncated inside a segment header")
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2 or pos + length > n:
            raise ImageError(f"JPEG: truncated or corrupt (segment 0xFF{code:02X} at byte {pos - 2} has length "
                             f"{length}, past the end of the data)")
        if code in _JPEG_SOF:
            if header is not None:
                raise ImageError("JPEG: more than one start-of-frame marker")
            header = _jpeg_frame(data[pos + 2:pos + length], code)
        pos += length
        if code == 0xDA:
            if header is None:
                raise ImageError("JPEG: scan before the start-of-frame marker")
            scans += 1
            pos = _skip_entropy_data(data, pos)
    if header is None or scans == 0:
        raise ImageError("JPEG: no start-of-frame marker or no scan")
    return header


def _jpeg_frame(segment: bytes, code: int) -> ImageHeader:
    if len(segment) < 6:
        raise ImageError("JPEG: start-of-frame segment too short")
    precision, height, width, components = segment[0], (segment[1] << 8) | segment[2], (segment[3] << 8) | segment[4], segment[5]
    if height == 0 or width == 0:
        raise ImageError(f"JPEG: declared size {width}x{height} (a zero height, defined later by DNL, is not accepted)")
    if components not in (1, 3, 4) or len(segment) != 6 + 3 * components:
        raise ImageError(f"JPEG: {components} components in a start-of-frame segment of {len(segment) + 2} bytes")
    if precision not in (8, 12, 16):
        raise ImageError(f"JPEG: sample precision {precision}")
    return ImageHeader("jpeg", height, width, components, progressive=code in (0xC2, 0xC6, 0xCA, 0xCE))


def _skip_entropy_data(data: bytes, pos: int) -> int:
    """Past a scan's entropy-coded bytes: to the next marker (0xFF not followed by a stuffed 0x00
    or a restart code)."""
    n = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            raise ImageError("JPEG: truncated (no EOI marker)")
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
            continue
        return pos


def _png(data: memoryview) -> ImageHeader:
    n, pos, header, idat, first = len(data), 8, None, False, True
    while True:
        if pos + 12 > n:
            raise ImageError("PNG: truncated (no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if length > _PNG_MAX_SIDE or end > n:
            raise ImageError(f"PNG: truncated or corrupt (chunk {kind!r} at byte {pos} has length {length}, past the "
                             "end of the data)")
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            raise ImageError(f"PNG: chunk {kind!r} at byte {pos} fails its CRC (corrupt)")
        if first and kind != b"IHDR":
            raise ImageError("PNG: the first chunk is not IHDR")
        if kind == b"IHDR":
            if not first:
                raise ImageError("PNG: IHDR is not the first chunk")
            header = _png_header(body)
        elif kind == b"IDAT":
            idat = True
        elif kind == b"IEND":
            break
        first, pos = False, end
    if not idat:
        raise ImageError("PNG: no IDAT chunk (no pixels)")
    return header


def _png_header(body: memoryview) -> ImageHeader:
    if len(body) != 13:
        raise ImageError(f"PNG: IHDR of {len(body)} bytes (13 expected)")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", body)
    if not 0 < width <= _PNG_MAX_SIDE or not 0 < height <= _PNG_MAX_SIDE:
        raise ImageError(f"PNG: declared size {width}x{height}")
    if depth not in _PNG_DEPTHS.get(colour, ()):
        raise ImageError(f"PNG: bit depth {depth} with colour type {colour}")
    if compression or filtering or interlace > 1:
        raise ImageError(f"PNG: compression {compression}, filter {filtering}, interlace {interlace}")
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}[colour]
    return ImageHeader("png", height, width, channels, progressive=interlace == 1)
