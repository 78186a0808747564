"""A tiny PNG reader (8-bit RGB/RGBA, non-interlaced: what Chromium's screenshots are),
pure Python with numpy for the row filters that vectorise."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path) -> np.ndarray:
    """The image as a (height, width, channels) uint8 array."""
    data = path.read_bytes()
    if not data.startswith(_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    offset = len(_SIGNATURE)
    idat = bytearray()
    width = height = channels = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        chunk = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            if depth != 8 or colour not in (2, 6) or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    raw = np.frombuffer(zlib.decompress(bytes(idat)), dtype=np.uint8)
    stride = width * channels
    raw = raw.reshape(height, stride + 1)
    image = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:]
        if kind == 0:
            row = line.copy()
        elif kind == 1:  # Sub: a running sum per channel
            row = (
                (np.cumsum(line.reshape(width, channels).astype(np.uint32), axis=0) % 256)
                .astype(np.uint8)
                .reshape(stride)
            )
        elif kind == 2:  # Up
            row = line + previous
        else:  # Average (3) and Paeth (4) depend on the reconstructed left byte
            row = _sequential(kind, line, previous, channels)
        image[y] = row
        previous = row
    return image.reshape(height, width, channels)


def _sequential(kind: int, line: np.ndarray, previous: np.ndarray, channels: int) -> np.ndarray:
    out = bytearray(len(line))
    up = previous.tolist()
    filtered = line.tolist()
    for i, value in enumerate(filtered):
        left = out[i - channels] if i >= channels else 0
        above = up[i]
        if kind == 3:
            out[i] = (value + ((left + above) >> 1)) & 0xFF
            continue
        corner = up[i - channels] if i >= channels else 0
        estimate = left + above - corner
        pa, pb, pc = abs(estimate - left), abs(estimate - above), abs(estimate - corner)
        if pa <= pb and pa <= pc:
            predictor = left
        elif pb <= pc:
            predictor = above
        else:
            predictor = corner
        out[i] = (value + predictor) & 0xFF
    return np.frombuffer(bytes(out), dtype=np.uint8)
