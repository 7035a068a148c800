"""Decontamination (``--decontaminate BENCH ...``): word n-gram overlap with benchmark records (pure; no Beam).

Text becomes words (``\\w+`` runs, lower-cased); an n-gram is ``n`` consecutive words of one text field (a
benchmark record's string values one by one; a training record's messages one by one), hashed to 64 bits: each
word by two CRC-32s, the n-gram by a polynomial over its words' hashes (numpy, wrap-around uint64 arithmetic),
so a record's n-grams cost a few vector operations per message. The benchmarks' n-grams form an
:class:`NgramIndex`: sorted hashes with the benchmark and record each came from (the first one in benchmark
order), built once by the launcher and saved as one ``.npz`` file that each worker process loads once.

A training record whose **instruction side** (system, user and tool messages) or **output side** (assistant
content, reasoning and tool-call arguments) holds an n-gram of the index is rejected ``contaminated``, naming the
side, the n-gram, the benchmark and the benchmark record.
"""

from __future__ import annotations

import io
import re
import zlib
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .errors import RecordError
from .formats import FormatOptions, read_conversation

DEFAULT_NGRAM = 13
_WORD = re.compile(r"\w+")
_MULT = np.uint64(0x100000001B3)  # FNV-64 prime: the polynomial's base
_CACHE_LIMIT = 1 << 20


def words(text: str) -> list[str]:
    """The words of ``text``: runs of word characters, lower-cased."""
    return _WORD.findall(text.lower())


class WordHasher:
    """Stable 64-bit word hashes (two CRC-32s), with a bounded cache (one per worker process)."""

    def __init__(self):
        self.cache: dict[str, int] = {}

    def __call__(self, ws: Sequence[str]) -> np.ndarray:
        cache = self.cache
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        out = np.empty(len(ws), dtype=np.uint64)
        for i, w in enumerate(ws):
            h = cache.get(w)
            if h is None:
                b = w.encode("utf-8")
                h = cache[w] = (zlib.crc32(b) << 32) | zlib.crc32(b, 0x9E3779B9)
            out[i] = h
        return out


def ngram_hashes(word_hashes: np.ndarray, n: int) -> np.ndarray:
    """The hash of each run of ``n`` consecutive words (none when there are fewer than ``n`` words)."""
    m = len(word_hashes) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    acc = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            acc = acc * _MULT + word_hashes[k:k + m]
    return acc


def string_values(value: Any) -> Iterator[str]:
    """Every string inside a decoded benchmark record (nested lists and objects too), in order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from string_values(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from string_values(v)


class NgramIndex:
    """The benchmarks' hashed n-grams: ``hashes`` (sorted, unique), and for each the benchmark (position in
    ``benchmarks``) and the record index it first came from."""

    def __init__(self, n: int, benchmarks: Sequence[str], hashes: np.ndarray, bench: np.ndarray,
                 record: np.ndarray):
        self.n, self.benchmarks = int(n), list(benchmarks)
        self.hashes, self.bench, self.record = hashes, bench, record

    @classmethod
    def build(cls, benchmarks: Sequence[tuple[str, Iterable[tuple[int, Any]]]], n: int = DEFAULT_NGRAM
              ) -> "NgramIndex":
        """From ``[(benchmark label, [(record index, decoded record), ...]), ...]``."""
        hasher = WordHasher()
        parts, bench_ids, rec_ids = [], [], []
        for b, (_, records) in enumerate(benchmarks):
            for index, record in records:
                for text in string_values(record):
                    h = ngram_hashes(hasher(words(text)), n)
                    if h.size:
                        parts.append(h)
                        bench_ids.append(np.full(h.size, b, np.int32))
                        rec_ids.append(np.full(h.size, index, np.int64))
        if not parts:
            return cls(n, [b for b, _ in benchmarks], np.zeros(0, np.uint64), np.zeros(0, np.int32),
                       np.zeros(0, np.int64))
        hashes, bench, record = np.concatenate(parts), np.concatenate(bench_ids), np.concatenate(rec_ids)
        order = np.lexsort((record, bench, hashes))  # by hash, then the first benchmark and record
        hashes, bench, record = hashes[order], bench[order], record[order]
        first = np.concatenate([[True], hashes[1:] != hashes[:-1]])
        return cls(n, [b for b, _ in benchmarks], hashes[first], bench[first], record[first])

    def __len__(self) -> int:
        return int(self.hashes.size)

    def ngrams_per_benchmark(self) -> dict[str, int]:
        """Distinct n-grams each benchmark contributes (an n-gram of several counts for the first)."""
        counts = np.bincount(self.bench, minlength=len(self.benchmarks)) if self.bench.size else \
            np.zeros(len(self.benchmarks), np.int64)
        return {b: int(c) for b, c in zip(self.benchmarks, counts)}

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, n=np.int64(self.n), benchmarks=np.array(self.benchmarks, dtype=str), hashes=self.hashes,
                 bench=self.bench, record=self.record)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "NgramIndex":
        z = np.load(io.BytesIO(data), allow_pickle=False)
        return cls(int(z["n"]), [str(b) for b in z["benchmarks"]], z["hashes"], z["bench"], z["record"])

    def first_match(self, hashes: np.ndarray) -> tuple[int, int] | None:
        """``(position in hashes, position in the index)`` of the first of ``hashes`` in the index, or None."""
        if not hashes.size or not self.hashes.size:
            return None
        pos = np.searchsorted(self.hashes, hashes)
        pos[pos == self.hashes.size] = 0
        hit = np.flatnonzero(self.hashes[pos] == hashes)
        return (int(hit[0]), int(pos[hit[0]])) if hit.size else None


def _side_texts(conversation) -> Iterator[tuple[str, str]]:
    """``(side, text)`` of each message field: instruction (system, user, tool content) or output (assistant
    content, reasoning, tool-call arguments)."""
    for m in conversation.messages:
        output = m.get("role") == "assistant"
        side = "output" if output else "instruction"
        for key in ("content", "reasoning_content"):
            value = m.get(key)
            if isinstance(value, str) and value:
                yield side, value
        for call in m.get("tool_calls") or ():
            args = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
            if args is not None:
                yield "output", args if isinstance(args, str) else str(args)


def find_contamination(record: Any, index: NgramIndex, hasher: WordHasher,
                       options: FormatOptions = FormatOptions()) -> tuple[RecordError, str] | None:
    """``(the contaminated RecordError, benchmark label)`` for a decoded record sharing an n-gram with the index,
    or None (also for a record that is not a valid conversation: the encoder rejects it)."""
    try:
        conversation = read_conversation(record, options)
    except RecordError:
        return None
    for side, text in _side_texts(conversation):
        ws = words(text)
        match = index.first_match(ngram_hashes(hasher(ws), index.n))
        if match is not None:
            at, pos = match
            bench = index.benchmarks[int(index.bench[pos])]
            ngram = " ".join(ws[at:at + index.n])
            return RecordError("contaminated", f'the {side} side shares the {index.n}-gram "{ngram}" with benchmark '
                                               f"{bench} record {int(index.record[pos])}"), bench
    return None
