"""Parse and encode: ``RawRecord`` → shard rows (main output), plus ``stats`` summaries and ``rejects``.

A thin wrapper: parsing is ``im_data.parse_json_line`` and encoding is ``im_data.Encoder.encode_batch``; the
Encoder (and its tokenizer) is built once per worker process in ``DoFn.setup``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from .options import PrepareSpec
from im_data.shards import example_id  # noqa: F401  (re-exported for inspect/audit)

from .read import RawRecord, parse_payload
from .rejects import REJECTS, make_reject  # noqa: F401 (REJECTS: the tag of the dead letters, re-exported)

LOG = logging.getLogger("im_data.prepare")
STATS = "stats"
SOURCE_STATS = "source_stats"  # with several sources: (source, LengthStats) partials, for the per-source table

_ENCODERS: dict[str, Any] = {}
_ENCODERS_LOCK = threading.Lock()


def build_encoder(config: PrepareSpec):
    """One ``im_data.Encoder`` for the run's settings (raises on a bad tokenizer or template)."""
    return config.encoder.build()


def remember_encoder(options, encoder) -> None:
    """Seed the per-process cache with an Encoder already built for ``options`` (the launcher's, so that an
    in-process runner does not build a second one)."""
    with _ENCODERS_LOCK:
        _ENCODERS.setdefault(options, encoder)


def get_encoder(config: PrepareSpec):
    """The per-process cached Encoder (runners may call ``setup`` once per bundle, e.g. Dask)."""
    key = config.encoder
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = build_encoder(config)
        return _ENCODERS[key]


BATCH_BYTES = 8 << 20  # raw bytes per encode batch (at most about): big records make smaller batches


def record_weight(rec: RawRecord, batch_size: int) -> int:
    """A record's share of an encode batch of ``batch_size`` units: 1, or more for a record of more than
    ``BATCH_BYTES / batch_size`` raw bytes, so that a batch holds at most ``batch_size`` records and about
    ``BATCH_BYTES`` of raw input (1024 records of 1 MB would otherwise be a 1 GB batch, twice in flight)."""
    size = len(rec.payload) if isinstance(rec.payload, (bytes, bytearray, str)) else 0
    return max(1, -(-size * batch_size // BATCH_BYTES))


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

    def __init__(self, config: PrepareSpec):
        self.config = config
        self.encoder = None

    def setup(self) -> None:
        self.encoder = get_encoder(self.config)
        # the position of each input: with the record index, the rows' order key (see pipelines.write)
        self.positions = {source.label: i for i, source in enumerate(self.config.sources)}
        self.progress = _Progress()
        self.reporter = None
        if self.config.progress_dir:
            from .progress import _Reporter

            self.reporter = _Reporter.get(self.config.progress_dir)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="im-data-tokenize")

    def teardown(self) -> None:
        self.pool.shutdown(wait=True)

    def start_bundle(self) -> None:
        from im_data.encode import TokenizeAhead

        self.ahead = TokenizeAhead(self.encoder, self.pool)

    def process(self, batch: list[RawRecord]) -> Iterator[Any]:
        from im_data import RecordError

        todo: list[tuple[RawRecord, Any]] = []
        for rec in batch:
            try:
                todo.append((rec, parse_payload(rec)))
            except RecordError as exc:
                raw = None if isinstance(rec.payload, RecordError) else rec.payload
                yield pvalue.TaggedOutput(REJECTS, make_reject(rec, exc, raw))
        if not todo:
            self._report(batch, 0, len(batch))
            return
        previous = self.ahead.push([p for _, p in todo], (todo, batch))
        if previous is not None:
            yield from self._complete(previous)

    def finish_bundle(self) -> Iterator[Any]:
        previous = self.ahead.flush()
        if previous is not None:
            for out in self._complete(previous):
                if isinstance(out, pvalue.TaggedOutput):
                    yield pvalue.TaggedOutput(out.tag, WindowedValue(out.value, MIN_TIMESTAMP, [GlobalWindow()]))
                else:
                    yield WindowedValue(out, MIN_TIMESTAMP, [GlobalWindow()])
        if self.reporter is not None:
            self.reporter.flush(force=True)

    def _report(self, batch: list[RawRecord], tokens: int, rejected: int) -> None:
        """Live progress (``pipelines.progress``): a batch's records, bytes, tokens and rejects, counted here as the
        batch is done and written in one flush, so the display never shows records without their tokens (a runner
        that runs each stage over a whole partition, like Dask, would otherwise count every record before any
        is encoded)."""
        if self.reporter is not None:
            self.reporter.add_records(batch)
            self.reporter.add("tokens", tokens)
            self.reporter.add("rejected", rejected)
            self.reporter.flush()

    def _complete(self, done) -> Iterator[Any]:
        from im_data import LengthStats, RecordError
        from im_data.shards import examples_to_record_batch

        from .write import order_keys, with_order

        todo, batch = done.context
        results = self._results(todo, done.prepared, done.tokenized)
        good, ids, kept = [], [], []
        for (rec, _), res in zip(todo, results):
            if isinstance(res, RecordError):
                yield pvalue.TaggedOutput(REJECTS, make_reject(rec, res, rec.payload))
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
            if len(self.config.sources) > 1:
                yield from self._source_stats(good, kept)
        tokens = sum(len(e) for e in good)
        self.progress.add(len(todo), tokens)
        self._report(batch, tokens, len(batch) - len(good))


    @staticmethod
    def _source_stats(good, kept) -> Iterator[Any]:
        from im_data import LengthStats

        by_source: dict[str, list] = {}
        for ex, rec in zip(good, kept):
            by_source.setdefault(rec.source, []).append(ex)
        for source, examples in sorted(by_source.items()):
            stats = LengthStats()
            stats.add_examples(examples)
            yield pvalue.TaggedOutput(SOURCE_STATS, (source, stats))

    def _results(self, todo, prepared, future) -> list:
        """The batch's results; if the batch fails as a whole (tokenizer or numpy stage), its records are encoded
        one by one so that only the failing ones become ``internal_error`` rejects."""
        try:
            return self.encoder.complete(prepared, future.result())
        except Exception:  # noqa: BLE001
            return [self._encode_one(payload) for _, payload in todo]

    def _encode_one(self, payload):
        from im_data.errors import internal_error

        try:
            return self.encoder.encode_batch([payload])[0]
        except Exception as exc:  # noqa: BLE001 - one record never kills a job
            return internal_error(exc)


@beam.typehints.with_output_types(Any)  # three tagged outputs: rows (pa.RecordBatch), stats (LengthStats), rejects (dict)
class EncodeExamples(beam.PTransform):
    """``PCollection[RawRecord]`` → ``{"rows", "stats", "rejects"}`` (a ``DoOutputsTuple``).

    ``rows``: Arrow record batches with :data:`im_data.shards.SHARD_SCHEMA` (one per encode batch);
    ``stats``: one :class:`im_data.LengthStats` partial per batch; ``rejects``: one dead-letter dict per record;
    ``source_stats`` (several sources only): ``(source, LengthStats)`` partials.
    """

    def __init__(self, config: PrepareSpec):
        super().__init__()
        self.config = config

    def expand(self, records):
        n = self.config.batch_size
        batches = records | "Batch" >> beam.BatchElements(min_batch_size=n, max_batch_size=n,
                                                          element_size_fn=lambda rec: record_weight(rec, n))
        return batches | "Encode" >> beam.ParDo(_EncodeBatchFn(self.config)).with_outputs(REJECTS, STATS, SOURCE_STATS,
                                                                                          main="rows")
