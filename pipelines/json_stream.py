"""A JSON array read element by element, in bounded memory, keeping each element's original bytes.

:func:`iter_array_elements` scans the bytes after the opening ``[`` chunk by chunk and cuts them at the commas
of nesting depth 0, tracking strings and escapes (regular expressions do the scanning, so long strings cost one
C call each). It does not parse: each element is yielded as its raw bytes and parsed later like a JSONL line,
so one bad element is one ``invalid_json`` reject with its index and everything else is kept. An element of
more than ``max_bytes`` is skipped without being held (``too_large``, with a short prefix for the reject).

* A trailing comma (``[a, b,]``) loses nothing: it is tolerated.
* An empty element (``[a,,b]``) is an ``invalid_json`` reject at its index.
* A file that ends inside the array (truncated) keeps every complete element; a partial last element is an
  ``invalid_json`` reject.
* Anything but whitespace after the closing ``]`` is one ``invalid_json`` reject without an index.

>>> import io
>>> [(i, p if isinstance(p, bytes) else p.reason) for i, p, _ in iter_array_elements(
...     io.BytesIO(b' {"a": "x,]"}, [1, {"b": 2}] , tru, ,]'), 1 << 20, chunk_bytes=3)]
[(0, b'{"a": "x,]"}'), (1, b'[1, {"b": 2}]'), (2, b'tru'), (3, 'invalid_json')]
"""

from __future__ import annotations

import re
from typing import BinaryIO, Iterator

from im_data.errors import RecordError

RAW_PREFIX_BYTES = 1024  # what a too_large reject keeps of its record
_WS = b" \t\r\n"
_STRUCT = re.compile(rb'["\[\]{},]')
_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.S)
_QUOTE, _BACKSLASH, _COMMA = ord('"'), ord("\\"), ord(",")
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


def skip_whitespace(f: BinaryIO, chunk_bytes: int = 1 << 16) -> bytes:
    """Read past leading whitespace (and a UTF-8 BOM), however long; return the first non-blank chunk (``b""``
    for a blank file). The rest of the file follows in ``f``."""
    first = True
    while True:
        chunk = f.read(chunk_bytes)
        if not chunk:
            return b""
        if first and chunk.startswith(b"\xef\xbb\xbf"):
            chunk = chunk[3:]
        first = False
        chunk = chunk.lstrip(_WS)
        if chunk:
            return chunk


class _Element:
    """The bytes of the element being scanned, dropped (but still counted) once over the limit."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.parts: list[bytes] = []
        self.size = 0
        self.prefix = b""

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size <= self.max_bytes:
            self.parts.append(data)
        elif not self.prefix:
            self.prefix = (b"".join(self.parts).lstrip(_WS) + data)[:RAW_PREFIX_BYTES]
            self.parts = []

    def finish(self, index: int) -> tuple[int, bytes | RecordError, bytes | None] | None:
        """The element as ``(index, raw bytes or RecordError, raw prefix)``; None when it is blank."""
        if self.size > self.max_bytes:
            return index, RecordError("too_large", f"array element {index} has more than {self.max_bytes} bytes "
                                                   "(--max-record-bytes)"), self.prefix or b""
        data = b"".join(self.parts).strip(_WS)
        return (index, data, None) if data else None


def iter_array_elements(f: BinaryIO, max_bytes: int, *, chunk_bytes: int = 1 << 20
                        ) -> Iterator[tuple[int | None, bytes | RecordError, bytes | None]]:
    """``(index, raw element bytes | RecordError, raw prefix | None)`` for every element of the array whose
    opening ``[`` has just been read from ``f``."""
    depth, in_string, escape, index = 0, False, False, 0
    elem = _Element(max_bytes)
    closed = False
    while not closed:
        data = f.read(chunk_bytes)
        if not data:
            break
        start = pos = 0
        while pos < len(data):
            if in_string:
                if escape:
                    escape, pos = False, pos + 1
                    continue
                end = _STRING_BODY.match(data, pos).end()
                if end < len(data) and data[end] == _QUOTE:
                    in_string, pos = False, end + 1
                elif end < len(data):  # a backslash as the chunk's last byte
                    escape, pos = True, end + 1
                else:
                    pos = end
                continue
            m = _STRUCT.search(data, pos)
            if m is None:
                break
            q, c = m.start(), data[m.start()]
            pos = q + 1
            if c == _QUOTE:
                in_string = True
            elif c in _OPEN:
                depth += 1
            elif c in _CLOSE and depth > 0:
                depth -= 1
            elif depth == 0 and (c == _COMMA or c == ord("]")):  # the element ends here
                elem.add(data[start:q])
                start = pos
                out = elem.finish(index)
                elem = _Element(max_bytes)
                if out is not None:
                    yield out
                    index += 1
                elif c == _COMMA:
                    yield index, RecordError("invalid_json", f"array element {index} is empty (two commas)"), b""
                    index += 1
                if c == ord("]"):
                    closed = True
                    if data[pos:].strip(_WS) or skip_whitespace(f):
                        yield None, RecordError("invalid_json", "data after the closing ] of the array"), None
                    return
        elem.add(data[start:])
    out = elem.finish(index)  # the file ended inside the array: keep a last element that parses
    if out is not None:
        yield out
