"""Prepared shard directories (the output of ``prepare``), read without Beam: used by ``audit`` and ``inspect``."""

from __future__ import annotations

import json
import os
from typing import Any, Iterator

from .options import UsageError

MANIFEST = "manifest.json"


class ShardDirError(UsageError):
    """A broken or missing shard directory: one line on stderr, exit status 2."""


def is_shard_dir(path: str) -> bool:
    """A directory produced by ``prepare``: it has ``manifest.json``, or (broken) ``shards/`` or ``stats.json``
    without being a ``save_to_disk`` dataset."""
    if not os.path.isdir(path):
        return False
    if os.path.isfile(os.path.join(path, MANIFEST)):
        return True
    if os.path.isfile(os.path.join(path, "dataset_dict.json")) or os.path.isfile(os.path.join(path, "state.json")):
        return False
    return True  # any other directory: treated as a (broken) shard directory, so the error names the manifest


def read_manifest(path: str) -> dict[str, Any]:
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isfile(mpath):
        raise ShardDirError(f"{path}: no {MANIFEST}: not a prepared shard directory (or `im-data prepare` did not "
                            "finish), and not a save_to_disk dataset")
    try:
        with open(mpath, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardDirError(f"{mpath}: unreadable manifest: {str(exc).splitlines()[0]}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise ShardDirError(f"{mpath}: not an im-data manifest (no shard list)")
    return manifest


def iter_arrow_batches(spath: str, columns: list[str] | None = None) -> Iterator[Any]:
    """Record batches of one shard file: Parquet, Arrow IPC stream (what ``prepare`` writes) or IPC file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if spath.endswith(".parquet"):
            yield from pq.ParquetFile(spath).iter_batches(columns=columns, batch_size=4096)
            return
        with pa.memory_map(spath, "r") as source:
            try:
                reader = pa.ipc.open_stream(source)
                batches = iter(reader)
            except pa.ArrowInvalid:
                source.seek(0)
                f = pa.ipc.open_file(source)
                batches = (f.get_batch(i) for i in range(f.num_record_batches))
            for batch in batches:
                yield batch.select(columns) if columns else batch
    except (OSError, pa.ArrowException, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ShardDirError(f"{spath}: unreadable shard: {msg}") from None


def read_arrow_table(spath: str, columns: list[str] | None = None) -> Any:
    import pyarrow as pa

    batches = list(iter_arrow_batches(spath, columns))
    if not batches:
        from im_data.shards import SHARD_SCHEMA as SCHEMA

        schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
        return schema.empty_table()
    return pa.Table.from_batches(batches)


def iter_shard_batches(path: str, manifest: dict[str, Any], columns: list[str]) -> Iterator[Any]:
    """Record batches of the given columns, shard by shard in manifest order."""
    for shard in manifest["shards"]:
        yield from iter_arrow_batches(os.path.join(path, shard["path"]), columns)
