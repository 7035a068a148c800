"""Resource bounds on hostile input: how large a raw record may be, and when a record is surely too long.

>>> bound = LengthBound.of(16, "drop", [1, 2, 5])   # the longest token covers 5 bytes of text
>>> bound.max_bytes
80
>>> bound.check("x" * 80)                           # 80 bytes may still be 16 tokens: tokenize it
>>> bound.check("x" * 81)
Traceback (most recent call last):
...
im_data.errors.RecordError: [too_long] the rendered text has 81 bytes > --max-length 16 × 5 bytes (the longest token); rejected without tokenizing it (--truncation drop)
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from .errors import RecordError

#: Default of ``--max-record-bytes``: a raw record (a JSONL line, a JSON array element) larger than this is
#: rejected ``too_large`` while reading, before it is parsed.
DEFAULT_MAX_RECORD_BYTES = 16 << 20
#: The largest max_length: token positions and list offsets are int32 in the shards and in training.
MAX_LENGTH_LIMIT = 2 ** 31 - 1


@dataclasses.dataclass(frozen=True)
class LengthBound:
    """A record whose rendered text has more than ``max_length × token_bytes`` UTF-8 bytes certainly has more
    than ``max_length`` tokens: each token covers at most ``token_bytes`` bytes of the text."""

    max_length: int
    token_bytes: int

    @property
    def max_bytes(self) -> int:
        return self.max_length * self.token_bytes

    @classmethod
    def of(cls, max_length: int | None, truncation: str,
           token_byte_lengths: Sequence[int] | None) -> "LengthBound | None":
        """The bound for ``truncation="drop"`` (such a record is rejected anyway) and a tokenizer whose tokens
        are exact byte strings of the text (byte-level BPE without a normaliser: the byte length of each token
        id); ``None`` otherwise (no early bound: the record is tokenized)."""
        if max_length is None or truncation != "drop" or token_byte_lengths is None or len(token_byte_lengths) == 0:
            return None
        return cls(int(max_length), max(1, int(max(token_byte_lengths))))

    def check(self, text: str) -> None:
        """Raise ``too_long`` when ``text`` is over the bound. Cheap: more characters than the bound is over it,
        at most a quarter of it is under it; only in between are the bytes counted."""
        limit = self.max_bytes
        if len(text) <= limit // 4:
            return
        size = len(text) if len(text) > limit else len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise RecordError("too_long", f"the rendered text has {size} bytes > --max-length {self.max_length} × "
                                          f"{self.token_bytes} bytes (the longest token); rejected without "
                                          "tokenizing it (--truncation drop)")


def check_length_bound(text: str, bound: LengthBound | None) -> None:
    """``bound.check(text)``, or nothing when there is no bound (the Encoder's one-line hook)."""
    if bound is not None:
        bound.check(text)
