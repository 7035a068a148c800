"""``--pack-length N``: offline packing of each shard (best-fit decreasing, ``im_data.packing``).

``PackShards`` takes the merged shards of ``WriteShards`` (written under ``_unpacked/`` when packing), packs each
one on its own into rows of at most N tokens (:data:`im_data.packing.PACKED_SCHEMA`: ``input_ids``, ``labels``,
``loss_weights``, ``roles``, ``seq_lengths``, ``example_ids``), writes it at the shard's final path in record
batches of exactly ``merge_chunk_rows`` rows, and removes the unpacked file. The bins depend only on the shard's
rows (in input order), so the packed bytes do not depend on the runner.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import apache_beam as beam
import pyarrow as pa

from im_data import storage
from im_data.dataset import iter_file_batches
from im_data.packing import PACKED_SCHEMA, pack_table, packing_efficiency
from im_data.shards import SHARD_SCHEMA

from .options import PrepareSpec
from .write import UNPACKED_DIR, _ShardWriter


def pack_shard(config: PrepareSpec, shard: dict[str, Any]) -> dict[str, Any]:
    """Pack one merged shard; returns its summary with ``num_rows`` (packed rows), ``documents`` and ``tokens``."""
    src = storage.join(config.work_dir, shard["path"])
    rel = shard["path"].removeprefix(f"{UNPACKED_DIR}/")
    batches = list(iter_file_batches(src, config.format))
    table = pa.Table.from_batches(batches, SHARD_SCHEMA) if batches else SHARD_SCHEMA.empty_table()
    writer = _ShardWriter(storage.join(config.work_dir, rel), config.format, config.merge_chunk_rows, PACKED_SCHEMA)
    tokens = 0
    try:
        for packed in pack_table(table, config.pack_length, config.merge_chunk_rows):
            tokens += len(packed.column("input_ids").flatten())
            writer.add(packed)
    except BaseException:
        writer.sink.close()
        raise
    sha256 = writer.close()
    del table, batches
    storage.remove(src)
    return dict(shard, path=rel, num_rows=writer.rows, sha256=sha256, documents=shard["num_rows"], tokens=tokens)


def packing_limit(encoder, pack_length: int | None):
    """With ``--pack-length N`` an example longer than N follows ``--truncation``: max length min(N, --max-length)."""
    if pack_length is None or (encoder.max_length is not None and encoder.max_length <= pack_length):
        return encoder
    return dataclasses.replace(encoder, max_length=pack_length)


def packing_stats(shards: list[dict[str, Any]], pack_length: int) -> dict[str, Any]:
    """The ``packing`` block of ``stats.json``: pack length, packed rows, documents, tokens and the efficiency
    tokens / (rows × pack length)."""
    rows = sum(int(s["num_rows"]) for s in shards)
    tokens = sum(int(s.get("tokens", 0)) for s in shards)
    documents = sum(int(s.get("documents", s["num_rows"])) for s in shards)
    return {"pack_length": pack_length, "rows": rows, "documents": documents, "tokens": tokens,
            "efficiency": packing_efficiency(tokens, rows, pack_length)}


class _PackShardFn(beam.DoFn):
    def __init__(self, config: PrepareSpec):
        self.config = config

    def process(self, shard: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield pack_shard(self.config, shard)


@beam.typehints.with_input_types(dict[str, Any])
@beam.typehints.with_output_types(dict[str, Any])
class PackShards(beam.PTransform):
    """``PCollection[shard summary]`` (unpacked, under ``_unpacked/``) → the packed shards' summaries
    (``num_rows`` = packed rows, plus ``documents`` and ``tokens``)."""

    def __init__(self, config: PrepareSpec):
        super().__init__()
        self.config = config

    def expand(self, shards):
        return shards | "PackShard" >> beam.ParDo(_PackShardFn(self.config)).with_output_types(dict[str, Any])
