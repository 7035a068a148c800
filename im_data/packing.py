"""Offline packing: best-fit decreasing (the algorithm of TRL's ``pack_dataset(strategy="bfd")``), pure numpy
and pyarrow (no Beam, no TRL).

:func:`bfd_bins` places documents into bins of ``capacity`` tokens: documents in decreasing length (ties in
input order), each into the open bin with the least room that still fits it (ties: the bin that reached that
room first), else into a new bin; bins come out in the order they were opened. This is TRL's choice step for
step, so a shard packed here holds the rows TRL's online packing would build from the same examples.

:func:`pack_table` turns a table of shard rows into packed rows (:data:`PACKED_SCHEMA`): the list columns of the
documents of one bin concatenated, ``seq_lengths`` (TRL's column: each document's length, so padding-free
attention keeps documents apart) and ``example_ids``. The first token of every document weighs 0 (label -100),
as TRL's padding-free collator masks it: it would otherwise be predicted from the previous document.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .encode import IGNORE_INDEX

#: columns of a packed shard, in order
PACKED_COLUMN_ORDER = ("input_ids", "labels", "loss_weights", "roles", "seq_lengths", "example_ids")
PACKED_SCHEMA = pa.schema([
    pa.field("input_ids", pa.list_(pa.int32())), pa.field("labels", pa.list_(pa.int32())),
    pa.field("loss_weights", pa.list_(pa.float32())), pa.field("roles", pa.list_(pa.int8())),
    pa.field("seq_lengths", pa.list_(pa.int32())), pa.field("example_ids", pa.list_(pa.string()))])
_TOKEN_COLUMNS = ("input_ids", "labels", "loss_weights", "roles")


def bfd_bins(lengths: Sequence[int] | np.ndarray, capacity: int) -> list[np.ndarray]:
    """Best-fit decreasing: the documents (indices into ``lengths``) of each bin, bins in opening order and
    documents in placement order. Every length must be in ``[1, capacity]``."""
    if capacity < 1:
        raise ValueError(f"the pack length must be >= 1, got {capacity}")
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and (lengths.min() < 1 or lengths.max() > capacity):
        raise ValueError(f"document lengths must be in [1, {capacity}], got {int(lengths.min())}..{int(lengths.max())}")
    order = np.argsort(-lengths, kind="stable")
    bins: list[list[int]] = []
    waiting: dict[int, deque] = {}   # room left -> bins with that room, in the order they reached it
    rooms: list[int] = []            # sorted distinct rooms that have a waiting bin (0 < room < capacity)
    for idx in order.tolist():
        length = int(lengths[idx])
        at = bisect.bisect_left(rooms, length)
        if at < len(rooms):
            room = rooms[at]
            queue = waiting[room]
            b = queue.popleft()
            if not queue:
                del rooms[at]
        else:
            room, b = capacity, len(bins)
            bins.append([])
        bins[b].append(idx)
        room -= length
        if room > 0:
            queue = waiting.setdefault(room, deque())
            if not queue:
                bisect.insort(rooms, room)
            queue.append(b)
    return [np.asarray(b, dtype=np.int64) for b in bins]


def _concat_lists(column: pa.Array, bin_lengths: np.ndarray) -> pa.ListArray:
    """A list column whose rows (already in bin order) are concatenated into one list per bin."""
    offsets = np.concatenate([[0], np.cumsum(bin_lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), column.flatten())


def pack_rows(table: pa.Table, bins: Sequence[np.ndarray]) -> pa.RecordBatch:
    """The packed rows of ``bins`` (documents as row indices of ``table``, which holds the shard columns
    ``input_ids``, ``labels``, ``loss_weights``, ``roles`` and ``example_id``): one record batch with
    :data:`PACKED_SCHEMA`."""
    if not bins:
        return pa.RecordBatch.from_pylist([], schema=PACKED_SCHEMA)
    idx = np.concatenate(bins)
    taken = table.select([*_TOKEN_COLUMNS, "example_id"]).take(pa.array(idx)).combine_chunks()
    doc_lengths = pc.list_value_length(taken.column("input_ids").chunk(0)).to_numpy(zero_copy_only=False)
    docs_per_bin = np.fromiter((len(b) for b in bins), dtype=np.int64, count=len(bins))
    doc_bounds = np.concatenate([[0], np.cumsum(docs_per_bin)])
    bin_lengths = np.add.reduceat(doc_lengths, doc_bounds[:-1]) if len(doc_lengths) else np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum(doc_lengths)[:-1]]).astype(np.int64)  # first token of each document
    columns = {}
    for name in _TOKEN_COLUMNS:
        column = taken.column(name).chunk(0)
        if name in ("labels", "loss_weights"):
            values = column.flatten().to_numpy(zero_copy_only=False).copy()
            values[starts] = IGNORE_INDEX if name == "labels" else 0.0
            column = pa.ListArray.from_arrays(column.offsets, pa.array(values, column.type.value_type))
        columns[name] = _concat_lists(column, bin_lengths)
    seq_offsets = pa.array(doc_bounds.astype(np.int32), pa.int32())
    columns["seq_lengths"] = pa.ListArray.from_arrays(seq_offsets, pa.array(doc_lengths.astype(np.int32), pa.int32()))
    columns["example_ids"] = pa.ListArray.from_arrays(seq_offsets, taken.column("example_id").chunk(0))
    return pa.RecordBatch.from_arrays([columns[c] for c in PACKED_COLUMN_ORDER], schema=PACKED_SCHEMA)


def pack_table(table: pa.Table, capacity: int, rows_per_batch: int = 1024) -> Iterator[pa.RecordBatch]:
    """Pack a whole shard: its packed rows in record batches of at most ``rows_per_batch`` bins."""
    lengths = pc.list_value_length(table.column("input_ids")).to_numpy(zero_copy_only=False) \
        if table.num_rows else np.zeros(0, np.int64)
    bins = bfd_bins(lengths, capacity)
    for start in range(0, len(bins), rows_per_batch):
        yield pack_rows(table, bins[start:start + rows_per_batch])


def packing_efficiency(tokens: int, rows: int, capacity: int) -> float | None:
    """tokens / (rows × capacity): the share of the packed rows' token slots that hold a token."""
    return tokens / (rows * capacity) if rows and capacity else None
