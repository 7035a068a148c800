"""Shards: rows → ``shards/part-XXXXX-of-YYYYY.arrow`` (Arrow IPC stream) or ``.parquet``.

Deterministic and streaming in two steps:

1. ``SpillRuns``: each worker buffers rows (``run_buffer_bytes``), assigns every row to shard
   ``crc32(example_id) % num_shards`` and spills, per shard, a *run* sorted by ``example_id``
   (``_runs/shard-XXXXX/<uuid>.arrow``). Only small run descriptors travel through the shuffle.
2. ``MergeShard`` (one per shard, after a GroupByKey on the shard number): a k-way merge of the shard's runs
   by ``example_id`` in chunks of ``merge_chunk_rows`` rows, so memory stays bounded by the number of runs
   times one chunk, whatever the data size. Runs are deleted afterwards.

So the shard files (and their sha256) depend only on the input and the settings, never on the runner, the
bundling or the number of workers.
"""

from __future__ import annotations

import uuid
import zlib
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from im_data import storage
from im_data.dataset import eval_split_of, shard_path
from im_data.shards import COLUMN_ORDER, SHARD_SCHEMA

from .config import PrepareConfig

SCHEMA = SHARD_SCHEMA
RUN_BATCH_ROWS = 256  # rows per record batch inside a spilled run: what a merge cursor holds
RUNS_DIR = "_runs"


def shard_of(example_id: str, num_shards: int) -> int:
    return zlib.crc32(example_id.encode("utf-8")) % num_shards


def total_shards(config: PrepareConfig) -> int:
    """The train shards, plus one shard for the evaluation split when there is one (the last shard number)."""
    return config.num_shards + (1 if config.eval_fraction > 0 else 0)


def shard_name(shard: int, config: PrepareConfig) -> tuple[str, str]:
    """``(relative path, split)`` of shard number ``shard``."""
    if shard == config.num_shards:
        return shard_path(0, 1, config.format, config.eval_split), config.eval_split
    return shard_path(shard, config.num_shards, config.format), "train"


def assign_shards(example_ids: list[str], config: PrepareConfig) -> np.ndarray:
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


def write_ipc_file(path: str, table: pa.Table) -> None:
    _parent_dir(path)
    with storage.open_file(path, "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
        writer.write_table(table, max_chunksize=RUN_BATCH_ROWS)


class _SpillRunsFn(beam.DoFn):
    def __init__(self, config: PrepareConfig):
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
            table = pa.Table.from_batches(buffers[shard], SCHEMA)
            table = table.take(pc.sort_indices(table.column("example_id")))
            rel = f"{RUNS_DIR}/shard-{shard:05d}/{uuid.uuid4().hex}.arrow"
            write_ipc_file(storage.join(self.config.work_dir, rel), table)
            yield shard, {"path": rel, "num_rows": table.num_rows}


class _RunCursor:
    """Reads rows ``[lo, hi)`` of a sorted run, moving forward only, holding a few record batches."""

    def __init__(self, path: str):
        self.file = storage.open_file(path, "rb") if storage.is_url(path) else pa.OSFile(path, "rb")
        self.reader = pa.ipc.open_file(self.file)
        self.batches: dict[int, pa.RecordBatch] = {}

    def ids(self) -> pa.ChunkedArray:
        """The run's example ids, copied out of each record batch so that the batch can be freed at once
        (a column slice would keep its whole batch alive: the run would sit in memory for the merge)."""
        column = COLUMN_ORDER.index("example_id")
        chunks = []
        for i in range(self.reader.num_record_batches):
            ids = self.reader.get_batch(i).column(column)
            chunks.append(pc.take(ids, pa.array(np.arange(len(ids)))))
        return pa.chunked_array(chunks, pa.string())

    def rows(self, lo: int, hi: int) -> pa.Table:
        first, last = lo // RUN_BATCH_ROWS, (hi - 1) // RUN_BATCH_ROWS
        for b in [b for b in self.batches if b < first]:
            del self.batches[b]
        for b in range(first, last + 1):
            if b not in self.batches:
                self.batches[b] = self.reader.get_batch(b)
        table = pa.Table.from_batches([self.batches[b] for b in range(first, last + 1)], SCHEMA)
        return table.slice(lo - first * RUN_BATCH_ROWS, hi - lo)

    def close(self) -> None:
        self.batches.clear()
        self.file.close()


class _ShardWriter:
    def __init__(self, path: str, fmt: str, chunk_rows: int):
        _parent_dir(path)
        self.fmt, self.chunk_rows, self.rows = fmt, chunk_rows, 0
        self.sink = storage.open_file(path, "wb") if storage.is_url(path) else pa.OSFile(path, "wb")
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(self.sink, SCHEMA, compression="zstd")
        else:
            self.writer = pa.ipc.new_stream(self.sink, SCHEMA)

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self.fmt == "parquet":
            self.writer.write_table(table, row_group_size=self.chunk_rows)
        else:
            self.writer.write_table(table, max_chunksize=self.chunk_rows)

    def close(self) -> None:
        self.writer.close()
        self.sink.close()


def merge_runs(run_paths: list[str], out_path: str, fmt: str, chunk_rows: int) -> int:
    """k-way merge of runs (each sorted by example_id) into one shard, chunk by chunk. Returns the row count."""
    cursors = [_RunCursor(p) for p in run_paths]
    writer = _ShardWriter(out_path, fmt, chunk_rows)
    try:
        ids = [c.ids() for c in cursors]
        sizes = np.array([len(a) for a in ids], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        total = int(starts[-1])
        if total == 0:
            writer.write(SCHEMA.empty_table())
            return 0
        all_ids = pa.chunked_array([chunk for a in ids for chunk in a.chunks], pa.string())
        order = np.asarray(pc.sort_indices(all_ids)).astype(np.int64)
        del all_ids, ids
        # every run is sorted, so each run contributes one contiguous, increasing row range per chunk
        next_row = np.zeros(len(cursors), dtype=np.int64)
        for lo in range(0, total, chunk_rows):
            chunk = order[lo:lo + chunk_rows]
            run = np.searchsorted(starts, chunk, side="right") - 1
            counts = np.bincount(run, minlength=len(cursors))
            first_rows = next_row.copy()
            block_start = np.zeros(len(cursors), dtype=np.int64)
            pieces, pos = [], 0
            for r in np.nonzero(counts)[0]:
                pieces.append(cursors[r].rows(int(first_rows[r]), int(first_rows[r] + counts[r])))
                block_start[r] = pos
                pos += int(counts[r])
            next_row += counts
            table = pa.concat_tables(pieces)
            # where each chunk element sits in `table`: its run's block + its offset inside that run's range
            perm = block_start[run] + (chunk - starts[run] - first_rows[run])
            writer.write(table.take(pa.array(perm)).combine_chunks())
        return total
    finally:
        writer.close()
        for c in cursors:
            c.close()


class _MergeShardFn(beam.DoFn):
    def __init__(self, config: PrepareConfig):
        self.config = config

    def process(self, element) -> Iterator[dict[str, Any]]:
        shard, runs = element
        cfg = self.config
        runs = sorted((r for r in runs if r), key=lambda r: r["path"])
        rel, split = shard_name(shard, cfg)
        path = storage.join(cfg.work_dir, rel)
        num_rows = merge_runs([storage.join(cfg.work_dir, r["path"]) for r in runs], path, cfg.format,
                              cfg.merge_chunk_rows)
        expected = sum(r["num_rows"] for r in runs)
        if num_rows != expected:
            raise RuntimeError(f"shard {shard}: merged {num_rows} rows, runs hold {expected}")
        storage.remove_tree(storage.join(cfg.work_dir, RUNS_DIR, f"shard-{shard:05d}"))
        yield {"shard": shard, "path": rel, "split": split, "num_rows": num_rows, "sha256": storage.sha256_file(path)}


class WriteShards(beam.PTransform):
    """``PCollection[pa.RecordBatch]`` → one ``{"shard", "path", "num_rows", "sha256"}`` per shard (every shard,
    even empty)."""

    def __init__(self, config: PrepareConfig):
        super().__init__()
        self.config = config

    def expand(self, rows):
        runs = rows | "SpillRuns" >> beam.ParDo(_SpillRunsFn(self.config))
        every_shard = rows.pipeline | "ShardKeys" >> beam.Create(
            [(s, None) for s in range(total_shards(self.config))], reshuffle=False)
        return ((runs, every_shard)
                | "AllShards" >> beam.Flatten()
                | "GroupRuns" >> beam.GroupByKey()
                | "MergeShard" >> beam.ParDo(_MergeShardFn(self.config)))
