"""GGUF header metadata (the key/value section) in pure Python: validation reads a GGUF model's
vocabulary without numpy or the `gguf` package, and never touches the tensors.

Layout (little-endian): magic b"GGUF", u32 version, u64 tensor_count, u64 kv_count, then per kv a
u64-length-prefixed UTF-8 key, a u32 value type and the value. Strings are u64 length + bytes;
arrays are u32 item type + u64 count + items.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
CHUNK = 1 << 20
STRING, ARRAY = 8, 9
SCALARS = {
    0: struct.Struct("<B"),
    1: struct.Struct("<b"),
    2: struct.Struct("<H"),
    3: struct.Struct("<h"),
    4: struct.Struct("<I"),
    5: struct.Struct("<i"),
    6: struct.Struct("<f"),
    7: struct.Struct("<?"),
    10: struct.Struct("<Q"),
    11: struct.Struct("<q"),
    12: struct.Struct("<d"),
}
U32, U64 = SCALARS[4], SCALARS[10]
TOKENS = "tokenizer.ggml.tokens"


class Malformed(Exception):
    """Truncated or inconsistent header."""


class _Buffered:
    """Forward-only reads over a file in large chunks; skips seek past data it does not need."""

    def __init__(self, handle: BinaryIO, size: int):
        self.handle, self.size = handle, size
        self.buf, self.pos = b"", 0

    def _fill(self, n: int) -> None:
        if self.pos + n <= len(self.buf):
            return
        if n > self.size:
            raise Malformed(f"length {n} exceeds the file")
        rest = self.buf[self.pos :]
        self.buf = rest + self.handle.read(max(n - len(rest), CHUNK))
        self.pos = 0
        if len(self.buf) < n:
            raise Malformed("truncated")

    def scalar(self, fmt: struct.Struct):
        self._fill(fmt.size)
        (value,) = fmt.unpack_from(self.buf, self.pos)
        self.pos += fmt.size
        return value

    def skip(self, n: int) -> None:
        available = len(self.buf) - self.pos
        if n <= available:
            self.pos += n
            return
        # the handle sits at the end of the buffer: seek the remainder from there
        if self.handle.seek(n - available, 1) > self.size:
            raise Malformed("truncated")
        self.buf, self.pos = b"", 0

    def string(self) -> str:
        (value,) = self.strings(1, True) or [""]
        return value

    def strings(self, count: int, keep: bool) -> list[str] | None:
        """`count` strings, decoded when `keep`; one tight loop (vocabularies hold ~50k-250k)."""
        out: list[str] = []
        unpack, size = U64.unpack_from, self.size
        buf, pos = self.buf, self.pos
        for _ in range(count):
            if pos + 8 > len(buf):
                self.pos = pos
                self._fill(8)
                buf, pos = self.buf, self.pos
            (n,) = unpack(buf, pos)
            pos += 8
            if pos + n > len(buf):
                if n > size:
                    raise Malformed(f"string length {n} exceeds the file")
                self.pos = pos
                self._fill(n)
                buf, pos = self.buf, self.pos
            if keep:
                out.append(buf[pos : pos + n].decode("utf-8", "replace"))
            pos += n
        self.pos = pos
        return out if keep else None


def _value(reader: _Buffered, kind: int, keep: bool):
    if kind in SCALARS:
        value = reader.scalar(SCALARS[kind])
        return value if keep else None
    if kind == STRING:
        values = reader.strings(1, keep)
        return values[0] if values else None
    if kind != ARRAY:
        raise Malformed(f"unknown value type {kind}")
    item, count = reader.scalar(U32), reader.scalar(U64)
    if count > reader.size:
        raise Malformed(f"array count {count} exceeds the file")
    if item == STRING:
        return reader.strings(count, keep)
    if item in SCALARS:
        fmt = SCALARS[item]
        if not keep:
            reader.skip(fmt.size * count)
            return None
        reader._fill(fmt.size * count)
        numbers = struct.unpack_from(f"<{count}{fmt.format[-1]}", reader.buf, reader.pos)
        reader.pos += fmt.size * count
        return list(numbers)
    nested = [_value(reader, item, keep) for _ in range(count)]  # arrays of arrays: rare
    return nested if keep else None


def read_metadata(path: str | Path, keys: Collection[str] | None = None) -> dict | None:
    """The header's key/value metadata (only `keys` when given; reading stops once all are found).
    None when the file is missing or not a well-formed little-endian GGUF (version 2 or 3)."""
    wanted = None if keys is None else set(keys)
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            reader = _Buffered(handle, size)
            reader._fill(24)
            if reader.buf[:4] != MAGIC:
                return None
            reader.pos = 4
            version = reader.scalar(U32)
            if version not in (2, 3):
                return None
            reader.scalar(U64)  # tensor count: the tensors are never read
            kv_count = reader.scalar(U64)
            if kv_count > size:
                return None
            found: dict = {}
            for _ in range(kv_count):
                key = reader.string()
                kind = reader.scalar(U32)
                keep = wanted is None or key in wanted
                value = _value(reader, kind, keep)
                if keep:
                    found[key] = value
                    if wanted is not None and wanted <= found.keys():
                        break
            return found
    except (OSError, Malformed, struct.error, ValueError, MemoryError, OverflowError):
        return None


def gguf_tokens(path: str | Path) -> list[str] | None:
    """The vocabulary (`tokenizer.ggml.tokens`) in id order; None when unreadable or absent."""
    tokens = (read_metadata(path, [TOKENS]) or {}).get(TOKENS)
    return tokens if isinstance(tokens, list) else None
