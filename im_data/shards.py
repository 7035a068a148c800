"""The shard schema and columnar conversion of encoded examples (pyarrow only; no Beam, no TRL).

Columns (one row per example; list columns are aligned token for token, unshifted):

=========================  ===============  ==================================================
column                     type             meaning
=========================  ===============  ==================================================
``input_ids``              list<int32>      token ids
``labels``                 list<int32>      ``input_ids`` where the weight is > 0, else -100
``loss_weights``           list<float32>    per-token loss weight (never rounded)
``roles``                  list<int8>       role codes (:data:`im_data.roles.ROLE_CODES`)
``example_id``             string           stable id derived from source and index
``num_instruction_tokens``  int32            instruction content tokens, before truncation
``num_output_tokens``      int32            output (assistant content) tokens, before truncation
``num_output_tokens_kept`` int32            output tokens left after truncation
``truncated``              bool             whether truncation cut the example
=========================  ===============  ==================================================
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pyarrow as pa

from .encode import EncodedExample, labels_from_weights

SHARD_SCHEMA_VERSION = 1
LIST_COLUMNS = {"input_ids": pa.int32(), "labels": pa.int32(), "loss_weights": pa.float32(), "roles": pa.int8()}
SCALAR_COLUMNS = {"example_id": pa.string(), "num_instruction_tokens": pa.int32(), "num_output_tokens": pa.int32(),
                  "num_output_tokens_kept": pa.int32(), "truncated": pa.bool_()}
COLUMN_ORDER = ("input_ids", "labels", "loss_weights", "roles", "example_id", "num_instruction_tokens",
                "num_output_tokens", "num_output_tokens_kept", "truncated")
SHARD_SCHEMA = pa.schema([pa.field(c, pa.list_(LIST_COLUMNS[c]) if c in LIST_COLUMNS else SCALAR_COLUMNS[c])
                          for c in COLUMN_ORDER])


def example_id(source: str, index: int | None) -> str:
    """Stable id of a record: 16 hex digits of ``sha1("{source}|{index}")``."""
    return hashlib.sha1(f"{source}|{index}".encode("utf-8")).hexdigest()[:16]


def _list_array(parts: Sequence[np.ndarray], offsets: pa.Array, dtype: pa.DataType) -> pa.ListArray:
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype.to_pandas_dtype())
    return pa.ListArray.from_arrays(offsets, pa.array(values, dtype))


def examples_to_record_batch(examples: Sequence[EncodedExample], example_ids: Sequence[str]) -> pa.RecordBatch:
    """Many examples → one Arrow record batch with :data:`SHARD_SCHEMA`, built from flat buffers
    (one concatenation per column, no per-token Python)."""
    if len(examples) != len(example_ids):
        raise ValueError("one example id per example")
    lengths = np.fromiter((len(e) for e in examples), dtype=np.int64, count=len(examples))
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32), pa.int32())
    ids = np.concatenate([e.input_ids for e in examples]) if examples else np.zeros(0, np.int32)
    weights = np.concatenate([e.loss_weights for e in examples]) if examples else np.zeros(0, np.float32)
    labels = labels_from_weights(ids, weights).astype(np.int32, copy=False)
    columns = {
        "input_ids": pa.ListArray.from_arrays(offsets, pa.array(ids.astype(np.int32, copy=False), pa.int32())),
        "labels": pa.ListArray.from_arrays(offsets, pa.array(labels, pa.int32())),
        "loss_weights": pa.ListArray.from_arrays(offsets, pa.array(weights.astype(np.float32, copy=False),
                                                                   pa.float32())),
        "roles": _list_array([e.roles for e in examples], offsets, pa.int8()),
        "example_id": pa.array(list(example_ids), pa.string()),
        "num_instruction_tokens": pa.array([e.num_instruction_tokens for e in examples], pa.int32()),
        "num_output_tokens": pa.array([e.num_output_tokens for e in examples], pa.int32()),
        "num_output_tokens_kept": pa.array([e.num_output_tokens_kept for e in examples], pa.int32()),
        "truncated": pa.array([bool(e.truncated) for e in examples], pa.bool_()),
    }
    return pa.RecordBatch.from_arrays([columns[c] for c in COLUMN_ORDER], schema=SHARD_SCHEMA)
