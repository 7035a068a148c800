"""Parse and encode: ``RawRecord`` → shard rows (main output), plus ``stats`` summaries and ``rejects``.

A thin wrapper: parsing is ``im_data.parse_json_line`` and encoding is ``im_data.Encoder.encode_batch``; the
Encoder (and its tokenizer) is built once per worker process in ``DoFn.setup``.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from .config import PrepareConfig
from im_data.shards import example_id  # noqa: F401  (re-exported for inspect/audit)

from .read import RawRecord

LOG = logging.getLogger("im_data.prepare")
REJECTS = "rejects"
STATS = "stats"

_ENCODERS: dict[str, Any] = {}
_ENCODERS_LOCK = threading.Lock()


def build_encoder(config: PrepareConfig):
    """One ``im_data.Encoder`` for the run's settings (raises on a bad tokenizer or template)."""
    return config.encoder.build()


def remember_encoder(options, encoder) -> None:
    """Seed the per-process cache with an Encoder already built for ``options`` (the launcher's, so that an
    in-process runner does not build a second one)."""
    with _ENCODERS_LOCK:
        _ENCODERS.setdefault(options, encoder)


def get_encoder(config: PrepareConfig):
    """The per-process cached Encoder (runners may call ``setup`` once per bundle, e.g. Dask)."""
    key = config.encoder
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
    """Parses and encodes one batch per call. The Rust tokenization of batch k runs on a helper thread (it
    releases the GIL) while batch k-1 is completed in Python: ``process`` submits and emits the previous
    batch's outputs, ``finish_bundle`` emits the last one."""

    def __init__(self, config: PrepareConfig):
        self.config = config
        self.encoder = None

    def setup(self) -> None:
        self.encoder = get_encoder(self.config)
        # the position of each input: with the record index, the rows' order key (see pipelines.write)
        self.positions = {source.label: i for i, source in enumerate(self.config.sources)}
        self.progress = _Progress()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="im-data-tokenize")

    def teardown(self) -> None:
        self.pool.shutdown(wait=True)

    def start_bundle(self) -> None:
        self.pending = None

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
        prepared = self.encoder.prepare([p for _, p in todo])
        future = self.pool.submit(self.encoder.tokenize, prepared)
        previous, self.pending = self.pending, (todo, prepared, future)
        if previous is not None:
            yield from self._complete(*previous)

    def finish_bundle(self) -> Iterator[Any]:
        previous, self.pending = self.pending, None
        if previous is not None:
            for out in self._complete(*previous):
                if isinstance(out, pvalue.TaggedOutput):
                    yield pvalue.TaggedOutput(out.tag, WindowedValue(out.value, MIN_TIMESTAMP, [GlobalWindow()]))
                else:
                    yield WindowedValue(out, MIN_TIMESTAMP, [GlobalWindow()])

    def _complete(self, todo, prepared, future) -> Iterator[Any]:
        from im_data import LengthStats, RecordError
        from im_data.shards import examples_to_record_batch

        from .write import order_keys, with_order

        results = self.encoder.complete(prepared, future.result())
        good, ids, kept = [], [], []
        for (rec, payload), res in zip(todo, results):
            if isinstance(res, RecordError):
                yield pvalue.TaggedOutput(REJECTS, make_reject(rec, res, payload))
            else:
                good.append(res)
                ids.append(example_id(rec.source, rec.index))
                kept.append(rec)
        if good:
            # one columnar element per batch: rows travel as an Arrow record batch (with their order key),
            # statistics as one partial
            keys = order_keys([self.positions[rec.source] for rec in kept], [rec.index for rec in kept])
            yield with_order(examples_to_record_batch(good, ids), keys)
            stats = LengthStats()
            stats.add_examples(good)
            yield pvalue.TaggedOutput(STATS, stats)
        self.progress.add(len(todo), sum(len(e) for e in good))


class EncodeExamples(beam.PTransform):
    """``PCollection[RawRecord]`` → ``{"rows", "stats", "rejects"}`` (a ``DoOutputsTuple``).

    ``rows``: Arrow record batches with :data:`im_data.shards.SHARD_SCHEMA` (one per encode batch);
    ``stats``: one :class:`im_data.LengthStats` partial per batch; ``rejects``: one dead-letter dict per record.
    """

    def __init__(self, config: PrepareConfig):
        super().__init__()
        self.config = config

    def expand(self, records):
        return (records
                | "Batch" >> beam.BatchElements(min_batch_size=self.config.batch_size,
                                                max_batch_size=self.config.batch_size)
                | "Encode" >> beam.ParDo(_EncodeBatchFn(self.config)).with_outputs(REJECTS, STATS, main="rows"))
