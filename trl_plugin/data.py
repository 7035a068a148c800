"""Loading `im-data prepare` output and checking per-token loss weights.

A prepared directory holds ``manifest.json`` (written last, so its presence means the shards are complete) and
``shards/*.arrow`` or ``shards/*.parquet``. :func:`load_prepared` finds the shards through the manifest, checks row
counts (and optionally checksums) and, given a tokenizer, that the shards were tokenized by the same tokenizer.

The checks on the weights themselves (:func:`validate_weights`) run on Arrow batches, so they cost one vectorised
pass over the token columns.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from im_data import storage
from im_data.dataset import (TRAIN_SPLIT, Manifest, ManifestError, PreparedDataset,  # noqa: F401 (re-exported)
                             is_prepared_dir, read_manifest)
from im_data.encode import labels_from_weights
from im_data.tokenizer import tokenizer_fingerprint

#: ``Dataset.info.description`` prefix that carries the manifest's tokenizer fingerprint through `map`/`shuffle`.
_STAMP = "im-data-prepared:"


class WeightsError(ValueError):
    """The dataset's per-token loss weights cannot be trained on (missing column, bad length, all zero, ...)."""


class TokenizerMismatchError(ValueError):
    """The shards were tokenized by another tokenizer than the one the trainer uses."""


class FloatWeightsWarning(UserWarning):
    """Fractional loss weights would be binarised (weight > 0 -> 1) by a trainer that only reads ``labels``."""


# ---------------------------------------------------------------------------------------------------------------
# prepared directories (the contract itself lives in im_data.dataset)
# ---------------------------------------------------------------------------------------------------------------
def shard_paths(path: str | os.PathLike, manifest: Manifest | None = None, split: str = TRAIN_SPLIT) -> list[str]:
    """Shard paths (or URLs) of one split listed by the manifest (for ``data_files=`` of ``datasets.load_dataset``)."""
    root = os.fspath(path)
    prepared = PreparedDataset(root, manifest) if manifest is not None else PreparedDataset.open(root)
    return prepared.shard_files(split)


def check_tokenizer(manifest: Manifest, tokenizer: Any, where: str = "") -> None:
    expected = manifest.tokenizer_fingerprint
    actual = tokenizer_fingerprint(tokenizer)
    if expected != actual:
        raise TokenizerMismatchError(
            f"the shards{where} were tokenized by {manifest.tokenizer_name!r} (fingerprint {expected}), but the "
            f"trainer's tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has fingerprint {actual}. Token ids "
            "would mean different things: re-run `im-data prepare --tokenizer ...` with the model's tokenizer, or pass "
            "the tokenizer the shards were made with (--tokenizer_name_or_path)."
        )


def check_embedding_size(tokenizer: Any, num_embeddings: int, model_name: str = "the model") -> None:
    """Raise :class:`TokenizerMismatchError` when the tokenizer has ids the model cannot embed (the training step
    would fail with ``IndexError: index out of range in self``)."""
    size = len(tokenizer)
    if size > num_embeddings:
        raise TokenizerMismatchError(
            f"the tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has {size:,} tokens, but {model_name} embeds "
            f"only {num_embeddings:,} (ids {num_embeddings:,} to {size - 1:,} cannot be looked up): train with the "
            "tokenizer the model was made for, or resize the model's embeddings first "
            "(model.resize_token_embeddings(len(tokenizer)))."
        )


def load_prepared(path: str | os.PathLike, tokenizer: Any = None, *, split: str = TRAIN_SPLIT,
                  verify_checksums: bool = False, warn_if_binarised: bool = False, cache_dir: str | None = None):
    """Load one split (default ``train``) of a prepared directory, local or a URL (``s3://...``), as one
    ``datasets.Dataset``.

    The shards go through ``datasets.load_dataset("arrow"|"parquet", data_files=...)``, so the datasets cache
    (``cache_dir``, default ``HF_DATASETS_CACHE``) holds the converted table and all later ``map`` caches; nothing is
    written into the prepared directory. With ``tokenizer``, raises :class:`TokenizerMismatchError` when the
    manifest's fingerprint differs. With ``warn_if_binarised`` (for code that will train from ``labels`` only, e.g.
    plain ``SFTTrainer``), warns with :class:`FloatWeightsWarning` when the manifest's policy has fractional weights.
    """
    # read again when the directory is replaced (prepare --overwrite) meanwhile: one complete output, never a mix
    return PreparedDataset.read(path, lambda prepared: _load_split(prepared, tokenizer, split, verify_checksums,
                                                                   warn_if_binarised, cache_dir))


def _load_split(prepared: PreparedDataset, tokenizer: Any, split: str, verify_checksums: bool,
                warn_if_binarised: bool, cache_dir: str | None):
    import datasets

    root, manifest = prepared.root, prepared.manifest
    if tokenizer is not None:
        check_tokenizer(manifest, tokenizer, where=f" in {root}")
    if warn_if_binarised and manifest.policy_is_binary is False:
        warnings.warn(
            f"{root} was prepared with fractional loss weights (policy {dict(manifest.policy)}); a trainer that "
            "reads only `labels` trains every token with weight > 0 at weight 1. Use trl_plugin.WeightedSFTTrainer "
            "(im-sft) to train on the weights.",
            FloatWeightsWarning,
            stacklevel=5,
        )
    shards = manifest.shards_of(split)
    if not shards:
        raise ManifestError(f"{prepared.manifest_path} lists no shards of split {split!r} "
                            f"(splits: {', '.join(manifest.splits) or 'none'})")
    prepared.verify(checksums=verify_checksums)
    if storage.is_url(root):  # local copies (by sha256) in the datasets cache, then as for a local directory
        import datasets.config

        files = prepared.local_shard_files(split, os.path.join(cache_dir or datasets.config.HF_DATASETS_CACHE,
                                                                "im-data-remote"))
    else:
        files = prepared.shard_files(split)
    # Through the `arrow`/`parquet` builders: they read IPC stream and file formats, and keep every cache file
    # (theirs and those of later `map` calls) in the datasets cache, never inside the prepared directory.
    ds = datasets.load_dataset(manifest.format, data_files=files, split="train", cache_dir=cache_dir)
    expected = sum(s.num_rows for s in shards)
    if ds.num_rows != expected:
        raise ManifestError(f"{root}: the shards hold {ds.num_rows} rows, the manifest says {expected}")
    ds.info.description = f"{_STAMP}{json.dumps({'tokenizer_fingerprint': manifest.tokenizer_fingerprint, 'path': root})}"
    return ds


def prepared_stamp(dataset: Any) -> dict[str, Any] | None:
    """What :func:`load_prepared` stamped on ``dataset`` (``tokenizer_fingerprint``, ``path``), if anything."""
    info = getattr(dataset, "info", None)
    description = getattr(info, "description", None) or ""
    if not description.startswith(_STAMP):
        return None
    try:
        stamp = json.loads(description[len(_STAMP):])
    except json.JSONDecodeError:
        return None
    return stamp if isinstance(stamp, dict) else None


def stamped_fingerprint(dataset: Any) -> str | None:
    """The tokenizer fingerprint :func:`load_prepared` stamped on ``dataset``, if any."""
    return (prepared_stamp(dataset) or {}).get("tokenizer_fingerprint")


def stamped_manifest(dataset: Any) -> dict[str, Any] | None:
    """The manifest of the prepared directory ``dataset`` was loaded from, if it is still there."""
    path = (prepared_stamp(dataset) or {}).get("path")
    if not path or not is_prepared_dir(path):
        return None
    try:
        return read_manifest(path)
    except ManifestError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# weight checks and preparation (Arrow-vectorised)
# ---------------------------------------------------------------------------------------------------------------
def _lengths(column: pa.Array) -> np.ndarray:
    return pc.list_value_length(column).to_numpy(zero_copy_only=False)


def _values(column: pa.Array) -> np.ndarray:
    return column.flatten().to_numpy(zero_copy_only=False)


def check_batch(table: pa.Table, weights_column: str, token_columns: Iterable[str], offset: int = 0) -> None:
    """Raise :class:`WeightsError` if any row's weight list is missing/null, has another length than its
    ``input_ids``, or holds a negative or non-finite weight."""
    ids_len = _lengths(table.column("input_ids").combine_chunks())
    for name in token_columns:
        column = table.column(name).combine_chunks()
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise WeightsError(f"row {offset + row}: column {name!r} is null")
        bad = np.flatnonzero(_lengths(column) != ids_len)
        if bad.size:
            row = int(bad[0])
            example = ""
            if "example_id" in table.column_names:
                example = f" (example_id {table.column('example_id')[row].as_py()!r})"
            raise WeightsError(
                f"row {offset + row}{example}: column {name!r} has {_lengths(column)[row]} values but input_ids has "
                f"{ids_len[row]}; every token needs exactly one weight ({bad.size} such rows in this batch)"
            )
    w = _values(table.column(weights_column).combine_chunks())
    if w.size and not np.all(np.isfinite(w)):
        raise WeightsError(f"column {weights_column!r} holds NaN or infinite weights")
    if w.size and float(w.min()) < 0:
        raise WeightsError(f"column {weights_column!r} holds negative weights (min {float(w.min())})")


def prepare_batch(table: pa.Table, weights_column: str, token_columns: list[str], sl: slice | None) -> pa.Table:
    """Check a batch, rebuild ``labels`` from the weights (``input_ids`` where w > 0, else -100) and truncate every
    token column with the same slice. ``labels`` therefore never disagree with the weights."""
    check_batch(table, weights_column, token_columns)
    ids = table.column("input_ids").combine_chunks()
    w = table.column(weights_column).combine_chunks()
    ids_values = _values(ids)
    labels_values = labels_from_weights(ids_values, _values(w)).astype(
        np.int64 if ids_values.dtype == np.int64 else np.int32, copy=False)
    offsets = np.concatenate([[0], np.cumsum(_lengths(ids))]).astype(np.int32)
    labels = pa.ListArray.from_arrays(pa.array(offsets), pa.array(labels_values))
    if "labels" in table.column_names:
        table = table.set_column(table.column_names.index("labels"), "labels", labels)
    else:
        table = table.append_column("labels", labels)
    if sl is not None:
        for name in ["input_ids", "labels", *token_columns]:
            column = table.column(name).combine_chunks()
            if sl.start is None:  # keep_start: slice(None, L)
                sliced = pc.list_slice(column, 0, sl.stop)
            else:  # keep_end: slice(-L, None); list_slice takes one scalar start, so gather per-row windows
                n = _lengths(column)
                keep = np.minimum(n, -sl.start)
                starts = np.concatenate([[0], np.cumsum(n)[:-1]]) + (n - keep)
                new_offsets = np.concatenate([[0], np.cumsum(keep)])
                take = np.arange(new_offsets[-1]) - np.repeat(new_offsets[:-1], keep) + np.repeat(starts, keep)
                sliced = pa.ListArray.from_arrays(pa.array(new_offsets.astype(np.int32)),
                                                  column.flatten().take(pa.array(take.astype(np.int64))))
            table = table.set_column(table.column_names.index(name), name, sliced)
    return table


def first_positive_weight(dataset: Any, weights_column: str, batch_size: int = 4096) -> bool:
    """True as soon as one weight > 0 is found (usually in the first batch; a full pass only when none is)."""
    from datasets import Dataset

    if isinstance(dataset, Dataset):
        for batch in dataset.select_columns([weights_column]).with_format("arrow").iter(batch_size=batch_size):
            values = _values(batch.column(weights_column).combine_chunks())
            if values.size and float(values.max()) > 0:
                return True
        return False
    for i, example in enumerate(dataset):  # IterableDataset: look at the first examples only
        if any(w > 0 for w in example[weights_column]):
            return True
        if i >= batch_size:
            return True  # unknown beyond this point; do not consume the stream
    return False


def has_fractional_weights(dataset: Any, weights_column: str, max_rows: int = 4096) -> bool:
    """True when a sample of ``dataset`` holds weights other than 0 and 1."""
    from datasets import Dataset

    if isinstance(dataset, Dataset):
        sample = dataset.select(range(min(max_rows, len(dataset)))).select_columns([weights_column])
        values = _values(sample.with_format("arrow")[:].column(weights_column).combine_chunks())
    else:
        values = np.concatenate([np.asarray(ex[weights_column], dtype=np.float32)
                                 for _, ex in zip(range(64), dataset)] or [np.zeros(0)])
    return bool(values.size) and bool(np.any((values != 0) & (values != 1)))
