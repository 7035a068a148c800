"""Shards: rows → ``shards/part-XXXXX-of-YYYYY.arrow`` (Arrow IPC stream) or ``.parquet``.

Rows of a shard come in INPUT ORDER: by input (the position of its source in the expanded input list), then by
record index within that input. Each row carries that position as an ``_order`` key (:func:`order_keys`,
``position << 40 | index``) from the encoder to the writer; the key is dropped from the shards.
Deterministic and streaming in two steps:

1. ``SpillRuns``: each worker buffers rows (``run_buffer_bytes``), assigns every row to shard
   ``crc32(example_id) % num_shards`` and spills, per shard, a *run* sorted by ``_order``
   (``_runs/shard-XXXXX/<uuid>.arrow``; already sorted when the worker saw its rows in input order, the usual
   case, so nothing is permuted). Only small run descriptors ``{path, num_rows, first, last}`` travel through
   the shuffle.
2. ``MergeShard`` (one per shard, after a GroupByKey on the shard number): a streaming merge of the shard's runs
   by ``_order``. Runs from distinct read splits cover disjoint key ranges, so the merge hands over whole record
   batches of one run after the other (a concatenation, no take); where runs interleave (several workers
   sharing splits) it takes the longest slice of one run below the next run's key, so it stays a concatenation
   of slices. The slices are cut into record batches of exactly ``merge_chunk_rows`` rows. Memory: one record
   batch per open run plus one output chunk, whatever the data size. Runs are deleted afterwards.

So the shard files (and their sha256, computed while writing) depend only on the input and the settings, never
on the runner, the bundling or the number of workers.
"""

from __future__ import annotations

import hashlib
import heapq
import uuid
import zlib
from typing import Any, Iterator, Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from im_data import storage
from im_data.dataset import RUNS_DIR, TRAIN_SPLIT, UNPACKED_DIR, eval_split_of, shard_format, shard_path
from im_data.shards import SHARD_SCHEMA

from .options import PrepareSpec

SCHEMA = SHARD_SCHEMA
ORDER_COLUMN = "_order"
ROW_SCHEMA = SHARD_SCHEMA.append(pa.field(ORDER_COLUMN, pa.int64()))  # rows inside the pipeline and in runs
INDEX_BITS = 40  # record index within one input: up to 2**40 records; input position: up to 2**23 inputs


def shard_of(example_id: str, num_shards: int) -> int:
    return zlib.crc32(example_id.encode("utf-8")) % num_shards


def total_shards(config: PrepareSpec) -> int:
    """The train shards, plus one shard for the evaluation split when there is one (the last shard number)."""
    return config.num_shards + (1 if config.eval_fraction > 0 else 0)


def shard_name(shard: int, config: PrepareSpec) -> tuple[str, str]:
    """``(relative path, split)`` of shard number ``shard``."""
    if shard == config.num_shards:
        return shard_path(0, 1, config.format, config.eval_split), config.eval_split
    return shard_path(shard, config.num_shards, config.format), TRAIN_SPLIT


def assign_shards(example_ids: list[str], config: PrepareSpec) -> np.ndarray:
    """Shard number of each row: ``crc32(example_id) % num_shards``, or the evaluation shard."""
    n = config.num_shards
    shards = np.fromiter((shard_of(i, n) for i in example_ids), dtype=np.int64, count=len(example_ids))
    if config.eval_fraction > 0:
        to_eval = np.fromiter((eval_split_of(i, config.eval_fraction) for i in example_ids), dtype=bool,
                              count=len(example_ids))
        shards[to_eval] = n
    return shards


def _parent_dir(path: str) -> None:
    storage.makedirs(storage.parent(path))


def order_keys(positions, indices) -> np.ndarray:
    """The ``_order`` keys of records ``indices`` of the inputs at ``positions`` (ints or sequences): input
    order as one int64, ``position << 40 | index``."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >> INDEX_BITS):
        raise ValueError(f"record index out of range for the order key (0 <= index < 2**{INDEX_BITS})")
    return (np.asarray(positions, dtype=np.int64) << INDEX_BITS) | idx


def with_order(batch: pa.RecordBatch, keys: np.ndarray) -> pa.RecordBatch:
    """A shard record batch plus its ``_order`` column (:data:`ROW_SCHEMA`), as rows travel to the writer."""
    return pa.RecordBatch.from_arrays(batch.columns + [pa.array(keys, pa.int64())], schema=ROW_SCHEMA)


def _keys(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    return np.asarray(batch.column(ORDER_COLUMN)) if batch.num_rows else np.zeros(0, np.int64)


def write_run(path: str, batches: list[pa.RecordBatch]) -> None:
    """One run file (Arrow IPC file, :data:`ROW_SCHEMA`), record batches as given (they must be sorted)."""
    _parent_dir(path)
    with storage.open_file(path, "wb") as sink, pa.ipc.new_file(sink, ROW_SCHEMA) as writer:
        for batch in batches:
            writer.write_batch(batch)


def sort_run(batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """The rows of ``batches`` sorted by ``_order``; the batches themselves when they already are (no copy)."""
    keys = np.concatenate([_keys(b) for b in batches]) if batches else np.zeros(0, np.int64)
    if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])):
        return batches
    table = pa.Table.from_batches(batches, ROW_SCHEMA)
    return table.take(pa.array(np.argsort(keys, kind="stable"))).combine_chunks().to_batches()


class _SpillRunsFn(beam.DoFn):
    def __init__(self, config: PrepareSpec):
        self.config = config

    def start_bundle(self) -> None:
        self.buffers: dict[int, list[pa.RecordBatch]] = {}
        self.buffered = 0

    def process(self, batch: pa.RecordBatch) -> Iterator[tuple[int, dict[str, Any]]]:
        if total_shards(self.config) == 1:
            parts = {0: batch}
        else:
            shards = assign_shards(batch.column("example_id").to_pylist(), self.config)
            parts = {int(s): batch.take(pa.array(np.flatnonzero(shards == s))) for s in np.unique(shards)}
        for shard, part in parts.items():
            self.buffers.setdefault(shard, []).append(part)
        self.buffered += batch.nbytes
        if self.buffered >= self.config.run_buffer_bytes:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for out in self._flush():
            yield WindowedValue(out, MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self) -> Iterator[tuple[int, dict[str, Any]]]:
        buffers, self.buffers, self.buffered = self.buffers, {}, 0
        for shard in sorted(buffers):
            batches = sort_run(buffers[shard])
            rel = f"{RUNS_DIR}/shard-{shard:05d}/{uuid.uuid4().hex}.arrow"
            write_run(storage.join(self.config.work_dir, rel), batches)
            yield shard, {"path": rel, "num_rows": sum(b.num_rows for b in batches),
                          "first": int(_keys(batches[0])[0]), "last": int(_keys(batches[-1])[-1])}


class _Run:
    """A sorted run read forward, one record batch at a time (read into memory, freed when passed)."""

    def __init__(self, path: str):
        self.file = storage.open_file(path, "rb") if storage.is_url(path) else pa.OSFile(path, "rb")
        self.reader = pa.ipc.open_file(self.file)
        self.next_batch, self.batch, self.keys, self.pos = 0, None, None, 0
        self._advance()

    @property
    def done(self) -> bool:
        return self.batch is None

    def key(self) -> int:
        return int(self.keys[self.pos])

    def _advance(self) -> None:
        self.batch = self.keys = None
        while self.next_batch < self.reader.num_record_batches:
            batch = self.reader.get_batch(self.next_batch)
            self.next_batch += 1
            if batch.num_rows:
                self.batch, self.keys, self.pos = batch, _keys(batch), 0
                return
        self.close()

    def take_below(self, bound: int | None) -> pa.RecordBatch:
        """The rows from the current one on, inside the current record batch, whose key is below ``bound``
        (at least one row); moves past them."""
        end = len(self.keys) if bound is None else max(int(np.searchsorted(self.keys, bound)), self.pos + 1)
        piece = self.batch.slice(self.pos, end - self.pos)
        self.pos = end
        if self.pos >= len(self.keys):
            self._advance()
        return piece

    def close(self) -> None:
        self.batch = self.keys = None
        self.file.close()


class _HashingSink:
    """A binary file wrapper that computes the sha256 of what goes through it (no second read of the shard)."""

    def __init__(self, raw):
        self.raw, self.sha, self.position, self.closed = raw, hashlib.sha256(), 0, False

    def write(self, data) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.raw.write(view)
        self.position += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.raw.close()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False


class _ShardWriter:
    """Writes one shard in record batches of exactly ``chunk_rows`` rows (the last one shorter), whatever the
    slices it is given: so the bytes depend only on the rows. ``sha256`` is known after :meth:`close`."""

    def __init__(self, path: str, fmt: str, chunk_rows: int, schema: pa.Schema = SCHEMA):
        _parent_dir(path)
        self.chunk_rows, self.rows, self.schema = chunk_rows, 0, schema
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.sink = _HashingSink(storage.open_file(path, "wb"))
        self.stream = pa.PythonFile(self.sink, mode="w")
        self.writer = shard_format(fmt).writer(self.stream, schema)

    def add(self, batch: pa.RecordBatch) -> None:
        """Rows (with or without ``_order``) to append, in order."""
        while batch.num_rows:
            head = batch.slice(0, self.chunk_rows - self.pending_rows)
            batch = batch.slice(head.num_rows)
            self.pending.append(head)
            self.pending_rows += head.num_rows
            if self.pending_rows == self.chunk_rows:
                self._write_pending()

    def _write_pending(self) -> None:
        # concat_batches always copies into fresh, tight buffers: a slice of a larger record batch would
        # otherwise carry its parent's buffer lengths into the file, and the bytes would depend on the runs
        batch = pa.concat_batches([piece.select(self.schema.names) for piece in self.pending])
        self.pending, self.pending_rows = [], 0
        self.rows += batch.num_rows
        self.writer.write(batch, self.chunk_rows)

    def close(self) -> str:
        if self.pending:
            self._write_pending()
        if self.rows == 0:
            self.writer.write(pa.RecordBatch.from_pylist([], schema=self.schema), self.chunk_rows)
        self.writer.close()
        self.stream.close()
        self.sink.close()
        return self.sink.sha.hexdigest()


def merge_runs(run_paths: list[str], out_path: str, fmt: str, chunk_rows: int) -> tuple[int, str]:
    """Merge runs (each sorted by ``_order``) into one shard; returns ``(row count, sha256 of the file)``.

    A heap holds each open run's next key; the run with the smallest key hands over its longest slice below the
    next run's key (its whole remaining record batch when the runs do not interleave)."""
    runs = [_Run(p) for p in run_paths]
    writer = _ShardWriter(out_path, fmt, chunk_rows)
    try:
        heap = [(run.key(), i) for i, run in enumerate(runs) if not run.done]
        heapq.heapify(heap)
        while heap:
            _, i = heapq.heappop(heap)
            run = runs[i]
            bound = heap[0][0] if heap else None
            while not run.done:
                writer.add(run.take_below(bound))
                if not run.done and bound is not None and run.key() > bound:
                    heapq.heappush(heap, (run.key(), i))
                    break
    except BaseException:
        writer.sink.close()
        raise
    finally:
        for run in runs:
            if not run.done:
                run.close()
    sha = writer.close()
    return writer.rows, sha


class _MergeShardFn(beam.DoFn):
    def __init__(self, config: PrepareSpec):
        self.config = config

    def process(self, element) -> Iterator[dict[str, Any]]:
        shard, runs = element
        cfg = self.config
        runs = sorted((r for r in runs if r), key=lambda r: (r["first"], r["path"]))
        rel, split = shard_name(shard, cfg)
        rel = f"{UNPACKED_DIR}/{rel}" if cfg.pack_length else rel  # pipelines.pack packs it into rel
        path = storage.join(cfg.work_dir, rel)
        num_rows, sha256 = merge_runs([storage.join(cfg.work_dir, r["path"]) for r in runs], path, cfg.format,
                                      cfg.merge_chunk_rows)
        expected = sum(r["num_rows"] for r in runs)
        if num_rows != expected:
            raise RuntimeError(f"shard {shard}: merged {num_rows} rows, runs hold {expected}")
        storage.remove_tree(storage.join(cfg.work_dir, RUNS_DIR, f"shard-{shard:05d}"))
        yield {"shard": shard, "path": rel, "split": split, "num_rows": num_rows, "sha256": sha256}


@beam.typehints.with_output_types(dict[str, Any])
class WriteShards(beam.PTransform):
    """``PCollection[pa.RecordBatch]`` (:data:`ROW_SCHEMA`: shard columns plus ``_order``) → one ``{"shard", "path", "num_rows", "sha256"}`` per shard (every shard,
    even empty)."""

    def __init__(self, config: PrepareSpec):
        super().__init__()
        self.config = config

    def expand(self, rows):
        runs = rows | "SpillRuns" >> beam.ParDo(_SpillRunsFn(self.config))
        every_shard = rows.pipeline | "ShardKeys" >> beam.Create(
            [(s, None) for s in range(total_shards(self.config))], reshuffle=False).with_output_types(
            tuple[int, Optional[dict[str, Any]]])
        return ((runs, every_shard)
                | "AllShards" >> beam.Flatten().with_output_types(tuple[int, Optional[dict[str, Any]]])
                | "GroupRuns" >> beam.GroupByKey()
                | "MergeShard" >> beam.ParDo(_MergeShardFn(self.config)))
