"""Parse and encode: ``RawRecord`` → shard rows (main output), plus ``stats`` summaries and ``rejects``.

A thin wrapper: parsing is ``im_data.parse_json_line`` and encoding is ``im_data.Encoder.encode_batch``; the
Encoder (and its tokenizer) is built once per worker process in ``DoFn.setup``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from typing import Any, Iterator

import apache_beam as beam
from apache_beam import pvalue

from .config import PrepareConfig
from .read import RawRecord

LOG = logging.getLogger("im_data.prepare")
REJECTS = "rejects"
STATS = "stats"

_ENCODERS: dict[str, Any] = {}
_ENCODERS_LOCK = threading.Lock()


def example_id(source: str, index: int | None) -> str:
    """Stable id of a record: 16 hex digits of ``sha1("{source}|{index}")``."""
    return hashlib.sha1(f"{source}|{index}".encode("utf-8")).hexdigest()[:16]


def build_encoder(config: PrepareConfig):
    """One ``im_data.Encoder`` for the run's settings (raises on a bad tokenizer or template)."""
    from im_data import Encoder, load_tokenizer

    tok = load_tokenizer(config.tokenizer)
    return Encoder(tok, chat_template=config.chat_template, policy=config.weight_policy(),
                   max_length=config.max_length, truncation=config.truncation,
                   allow_special_tokens=config.allow_special_tokens)


def get_encoder(config: PrepareConfig):
    """The per-process cached Encoder (runners may call ``setup`` once per bundle, e.g. Dask)."""
    key = config.encoder_key()
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = build_encoder(config)
        return _ENCODERS[key]


def raw_for_reject(payload: Any) -> dict[str, Any]:
    """The raw record as JSON-friendly fields: ``raw`` (text or value) and ``raw_base64`` for non-UTF-8 bytes."""
    if isinstance(payload, (bytes, bytearray)):
        try:
            return {"raw": bytes(payload).decode("utf-8")}
        except UnicodeDecodeError:
            return {"raw": bytes(payload).decode("utf-8", errors="replace"),
                    "raw_base64": base64.b64encode(bytes(payload)).decode("ascii")}
    return {"raw": payload}


def make_reject(rec: RawRecord, error, raw: Any) -> dict[str, Any]:
    """One dead letter: reason code, message, source, index and the raw record."""
    out = {"reason": error.reason, "message": error.message, "source": rec.source, "index": rec.index,
           "example_id": example_id(rec.source, rec.index) if rec.index is not None else None}
    out.update(raw_for_reject(raw))
    return out


class _Progress:
    """Logs encoded examples and tokens every ``every`` seconds (per worker process)."""

    def __init__(self, every: float = 10.0):
        self.every, self.examples, self.tokens = every, 0, 0
        self.start = self.last = time.monotonic()

    def add(self, examples: int, tokens: int) -> None:
        self.examples += examples
        self.tokens += tokens
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.tokens / max(now - self.start, 1e-9)
            LOG.info("encoded %d examples, %d tokens (%.0f tokens/s in this worker)", self.examples, self.tokens, rate)


class _EncodeBatchFn(beam.DoFn):
    def __init__(self, config: PrepareConfig):
        self.config = config
        self.encoder = None

    def setup(self) -> None:
        self.encoder = get_encoder(self.config)
        self.progress = _Progress()

    def process(self, batch: list[RawRecord]) -> Iterator[Any]:
        from im_data import RecordError, parse_json_line

        todo: list[tuple[RawRecord, Any]] = []
        for rec in batch:
            payload = rec.payload
            if isinstance(payload, RecordError):
                yield pvalue.TaggedOutput(REJECTS, make_reject(rec, payload, None))
                continue
            if isinstance(payload, (bytes, bytearray, str)):
                try:
                    payload = parse_json_line(payload)
                except RecordError as exc:
                    yield pvalue.TaggedOutput(REJECTS, make_reject(rec, exc, payload))
                    continue
            todo.append((rec, payload))
        if not todo:
            return
        results = self.encoder.encode_batch([p for _, p in todo])
        tokens = 0
        for (rec, payload), res in zip(todo, results):
            if isinstance(res, RecordError):
                yield pvalue.TaggedOutput(REJECTS, make_reject(rec, res, payload))
                continue
            tokens += len(res)
            yield res.to_row(example_id(rec.source, rec.index))
            yield pvalue.TaggedOutput(STATS, res.summary())
        self.progress.add(len(todo), tokens)


class EncodeExamples(beam.PTransform):
    """``PCollection[RawRecord]`` → ``{"rows", "stats", "rejects"}`` (a ``DoOutputsTuple``)."""

    def __init__(self, config: PrepareConfig):
        super().__init__()
        self.config = config

    def expand(self, records):
        return (records
                | "Batch" >> beam.BatchElements(min_batch_size=min(32, self.config.batch_size),
                                                max_batch_size=self.config.batch_size)
                | "Encode" >> beam.ParDo(_EncodeBatchFn(self.config)).with_outputs(REJECTS, STATS, main="rows"))
