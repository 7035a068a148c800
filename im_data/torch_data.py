"""A prepared folder as PyTorch datasets, and a weights-aware collator: for a bare PyTorch / Accelerate loop or a
``transformers.Trainer`` (no TRL, no ``datasets``).

- :class:`PreparedMapDataset`: map-style (``len``, ``ds[i]``; use a ``DistributedSampler`` to shard it by rank);
  holds at most ``max_cached_shards`` shards at a time.
- :class:`PreparedIterableDataset`: streams record batches, split by rank (and by ``DataLoader`` worker): whole
  shards per rank when their number divides evenly, else every ``world_size``-th row; one record batch in memory.
- :class:`WeightedCollator`: pads (or packs, ``padding_free=True``) rows into ``input_ids`` / ``attention_mask`` /
  ``labels`` / ``loss_weights`` / ``roles`` (/ ``position_ids``) tensors; ``labels`` follow the weights (the one
  rule, :func:`im_data.encode.labels_from_weights`).

The folder (local, or a URL such as ``s3://bucket/prepared``) is read only through :mod:`im_data.dataset`.
Torch is imported here, never by ``import im_data``.
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from .dataset import TRAIN_SPLIT, PreparedDataset, iter_file_batches
from .encode import labels_from_weights
from .loss import NO_ROLE, position_ids_from_lengths

#: what a training loop needs from a shard row
TRAIN_COLUMNS = ("input_ids", "loss_weights", "roles")


def _open(prepared: str | os.PathLike | PreparedDataset) -> PreparedDataset:
    return prepared if isinstance(prepared, PreparedDataset) else PreparedDataset.open(prepared)


def _rows(batch: Any, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The rows of a record batch as dicts of numpy arrays (list columns) or Python scalars."""
    cols = {}
    for name in columns:
        column = batch.column(name)
        if hasattr(column.type, "value_type"):  # a list column: zero-copy offsets + values
            offsets = column.offsets.to_numpy()
            values = column.values.to_numpy(zero_copy_only=False)
            cols[name] = (offsets, values)
        else:
            cols[name] = column.to_pylist()
    for i in range(batch.num_rows):
        row = {}
        for name, col in cols.items():
            if isinstance(col, tuple):
                offsets, values = col
                row[name] = values[offsets[i]:offsets[i + 1]]
            else:
                row[name] = col[i]
        yield row


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)``: from ``torch.distributed`` when initialised, else ``RANK`` / ``WORLD_SIZE``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class PreparedMapDataset(torch.utils.data.Dataset):
    """Rows of one split of a prepared folder, by index. Shards are read when a row of theirs is asked for,
    and at most ``max_cached_shards`` are kept (a local Arrow shard is memory-mapped)."""

    def __init__(self, path: str | os.PathLike | PreparedDataset, split: str = TRAIN_SPLIT,
                 columns: Sequence[str] = TRAIN_COLUMNS, max_cached_shards: int = 2):
        self.prepared = _open(path)
        self.split = split
        self.columns = tuple(columns)
        self.shards = self.prepared.manifest.shards_of(split)
        self._starts = list(np.cumsum([0] + [s.num_rows for s in self.shards]))
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self._max_cached = max(1, max_cached_shards)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _table(self, k: int):
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        table = self.prepared.read_shard(self.shards[k], self.columns)
        self._cache[k] = table
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        return table

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"row {index} of a {n}-row split")
        k = bisect.bisect_right(self._starts, index) - 1
        table = self._table(k)
        batch = table.slice(index - int(self._starts[k]), 1).combine_chunks().to_batches()[0]
        return next(_rows(batch, self.columns))


class PreparedIterableDataset(torch.utils.data.IterableDataset):
    """Rows of one split, streamed record batch by record batch, this process's part only.

    ``rank`` / ``world_size`` default to :func:`distributed_rank`; inside a ``DataLoader`` with workers the part is
    split again between the workers. With as many shards as parts (or a multiple), each part reads whole shards;
    otherwise part ``p`` takes every row ``i`` with ``i % parts == p`` (every part streams every shard). Rows come
    in manifest order; ``shuffle_shards`` (with :meth:`set_epoch`) permutes the shard order per epoch."""

    def __init__(self, path: str | os.PathLike | PreparedDataset, split: str = TRAIN_SPLIT,
                 columns: Sequence[str] = TRAIN_COLUMNS, rank: int | None = None, world_size: int | None = None,
                 batch_size: int = 1024, shuffle_shards: bool = False, seed: int = 0):
        self.prepared = _open(path)
        self.split = split
        self.columns = tuple(columns)
        self.rank, self.world_size = rank, world_size
        self.batch_size = batch_size
        self.shuffle_shards, self.seed, self.epoch = shuffle_shards, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _part(self) -> tuple[int, int]:
        rank, world = distributed_rank()
        rank = rank if self.rank is None else self.rank
        world = world if self.world_size is None else self.world_size
        info = torch.utils.data.get_worker_info()
        if info is None:
            return rank, world
        # worker w of rank r reads part r + w * world: the workers of a rank share exactly that rank's rows
        return rank + info.id * world, world * info.num_workers

    def _batches(self, shards) -> Iterator[Any]:
        fmt = self.prepared.manifest.format
        for shard in shards:
            yield from iter_file_batches(self.prepared.path(shard.path), fmt, self.columns, self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        part, parts = self._part()
        shards = list(self.prepared.manifest.shards_of(self.split))
        if self.shuffle_shards:
            order = np.random.default_rng(self.seed + self.epoch).permutation(len(shards))
            shards = [shards[i] for i in order]
        if shards and len(shards) % parts == 0:
            for batch in self._batches(shards[part::parts]):
                yield from _rows(batch, self.columns)
            return
        i = 0
        for batch in self._batches(shards):
            first = (part - i) % parts  # the first row of this batch that is ours
            if first < batch.num_rows:
                yield from _rows(batch.slice(first).take(np.arange(0, batch.num_rows - first, parts)),
                                 self.columns)
            i += batch.num_rows


_NUMPY = {torch.long: np.int64, torch.float32: np.float32}


def _as_tensor(values: Any, dtype: torch.dtype) -> torch.Tensor:
    """A tensor that owns a copy (shard values are read-only Arrow memory)."""
    return torch.from_numpy(np.array(values, dtype=_NUMPY[dtype]))


def _pad(rows: list[torch.Tensor], value: float, multiple: int | None) -> torch.Tensor:
    length = max((len(r) for r in rows), default=0)
    if multiple:
        length = -(-length // multiple) * multiple
    out = torch.full((len(rows), length), value, dtype=rows[0].dtype if rows else torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


@dataclass
class WeightedCollator:
    """Rows (``input_ids``, ``loss_weights``, optionally ``roles`` and ``seq_lengths`` of pre-packed rows) → a
    batch for :mod:`im_data.loss`.

    Padded (default): right padding, ``attention_mask``, ``labels`` -100 and weight 0 on padding, roles -1.
    ``padding_free=True``: every row (and every document of a pre-packed row) is laid end to end in one row with
    ``position_ids`` restarting at 0 per document and no ``attention_mask``; the first token of each document gets
    label -100, weight 0 and role -1 (it is never a target), as in TRL's padding-free collator."""

    pad_token_id: int = 0
    padding_free: bool = False
    pad_to_multiple_of: int | None = None
    loss_weights_column: str = "loss_weights"
    roles_column: str | None = "roles"

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("an empty batch")
        col = self.loss_weights_column
        ids, weights, roles, lengths = [], [], [], []
        with_roles = self.roles_column is not None and self.roles_column in rows[0]
        for i, row in enumerate(rows):
            if col not in row:
                raise ValueError(f"row {i} of the batch has no {col!r} column")
            x = _as_tensor(row["input_ids"], torch.long)
            w = _as_tensor(row[col], torch.float32)
            if w.shape != x.shape:
                raise ValueError(f"row {i} of the batch: {col!r} has {w.numel()} values, input_ids has {x.numel()}")
            ids.append(x)
            weights.append(w)
            if with_roles:
                roles.append(_as_tensor(row[self.roles_column], torch.long))
            lengths.append(list(row.get("seq_lengths") or [len(x)]))
        if self.padding_free:
            ids, weights = [torch.cat(ids)], [torch.cat(weights)]
            roles = [torch.cat(roles)] if with_roles else roles
            position_ids = position_ids_from_lengths([n for ns in lengths for n in ns])[None]
        out = {"input_ids": _pad(ids, self.pad_token_id, self.pad_to_multiple_of)}
        loss_weights = _pad(weights, 0.0, self.pad_to_multiple_of)
        if self.padding_free:
            position_ids = _pad([position_ids[0]], 0, self.pad_to_multiple_of)
            starts = position_ids == 0
            starts[:, len(ids[0]):] = False  # padding at the end is not a document
            loss_weights = loss_weights.masked_fill(starts, 0.0)
            out["position_ids"] = position_ids
        else:
            out["attention_mask"] = _pad([torch.ones_like(x) for x in ids], 0, self.pad_to_multiple_of)
        out["labels"] = labels_from_weights(out["input_ids"], loss_weights)
        out["loss_weights"] = loss_weights
        if with_roles:
            out["roles"] = _pad(roles, NO_ROLE, self.pad_to_multiple_of)
            if self.padding_free:
                out["roles"] = out["roles"].masked_fill(starts, NO_ROLE)
        return out
