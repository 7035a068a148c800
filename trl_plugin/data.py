"""Loading `im-data prepare` output and checking per-token loss weights.

A prepared directory holds ``manifest.json`` (written last, so its presence means the shards are complete) and
``shards/*.arrow`` or ``shards/*.parquet``. :func:`load_prepared` finds the shards through the manifest, checks row
counts (and optionally checksums) and, given a tokenizer, that the shards were tokenized by the same tokenizer.

The checks on the weights themselves (:func:`validate_weights`) run on Arrow batches, so they cost one vectorised
pass over the token columns.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from im_data.tokenizer import tokenizer_fingerprint

MANIFEST = "manifest.json"
#: ``Dataset.info.description`` prefix that carries the manifest's tokenizer fingerprint through `map`/`shuffle`.
_STAMP = "im-data-prepared:"


class WeightsError(ValueError):
    """The dataset's per-token loss weights cannot be trained on (missing column, bad length, all zero, ...)."""


class TokenizerMismatchError(ValueError):
    """The shards were tokenized by another tokenizer than the one the trainer uses."""


class ManifestError(ValueError):
    """A prepared directory is incomplete or its manifest disagrees with its shards."""


class FloatWeightsWarning(UserWarning):
    """Fractional loss weights would be binarised (weight > 0 -> 1) by a trainer that only reads ``labels``."""


# ---------------------------------------------------------------------------------------------------------------
# prepared directories
# ---------------------------------------------------------------------------------------------------------------
def is_prepared_dir(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    root = Path(path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ManifestError(
            f"{root} has no {MANIFEST}: it is not an `im-data prepare` output directory, or the job did not finish "
            "(the manifest is written last)."
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{manifest_path} is not valid JSON: {exc}") from exc
    for key in ("tokenizer", "shards", "format"):
        if key not in manifest:
            raise ManifestError(f"{manifest_path} lacks the {key!r} key")
    if manifest["format"] not in ("arrow", "parquet"):
        raise ManifestError(f"{manifest_path}: unknown shard format {manifest['format']!r} (arrow|parquet)")
    return manifest


def shard_paths(path: str | os.PathLike, manifest: dict[str, Any] | None = None) -> list[str]:
    """Absolute shard paths listed by the manifest (for ``data_files=`` of ``datasets.load_dataset``)."""
    root = Path(path)
    manifest = manifest or read_manifest(root)
    return [str(root / s["path"]) for s in manifest["shards"]]


def manifest_policy_is_binary(manifest: dict[str, Any]) -> bool | None:
    """True when every role weight of the manifest's policy is 0 or 1; None when the policy is unreadable."""
    policy = manifest.get("policy")
    if not isinstance(policy, dict):
        return None
    from im_data.policy import WeightPolicy

    try:
        return WeightPolicy.from_dict(policy).is_binary
    except (TypeError, ValueError):
        return None


def check_tokenizer(manifest: dict[str, Any], tokenizer: Any, where: str = "") -> None:
    expected = (manifest.get("tokenizer") or {}).get("fingerprint")
    if expected is None:
        raise ManifestError(f"manifest{where} has no tokenizer.fingerprint")
    actual = tokenizer_fingerprint(tokenizer)
    if expected != actual:
        name = (manifest.get("tokenizer") or {}).get("name_or_path", "?")
        raise TokenizerMismatchError(
            f"the shards{where} were tokenized by {name!r} (fingerprint {expected}), but the trainer's tokenizer "
            f"{getattr(tokenizer, 'name_or_path', '?')!r} has fingerprint {actual}. Token ids would mean different "
            "things: re-run `im-data prepare --tokenizer ...` with the model's tokenizer, or pass the tokenizer the "
            "shards were made with (--tokenizer_name_or_path)."
        )


def load_prepared(path: str | os.PathLike, tokenizer: Any = None, *, verify_checksums: bool = False,
                  warn_if_binarised: bool = False, cache_dir: str | None = None):
    """Load a prepared directory as one ``datasets.Dataset``.

    The shards go through ``datasets.load_dataset("arrow"|"parquet", data_files=...)``, so the datasets cache
    (``cache_dir``, default ``HF_DATASETS_CACHE``) holds the converted table and all later ``map`` caches; nothing is
    written into the prepared directory (which plain ``trl sft --dataset_name DIR/shards`` can then still read).
    With ``tokenizer``, raises :class:`TokenizerMismatchError` when the manifest's fingerprint differs. With ``warn_if_binarised`` (for code that will train from ``labels`` only, e.g. plain
    ``SFTTrainer``), warns with :class:`FloatWeightsWarning` when the manifest's policy has fractional weights.
    """
    import datasets

    root = Path(path)
    manifest = read_manifest(root)
    if tokenizer is not None:
        check_tokenizer(manifest, tokenizer, where=f" in {root}")
    if warn_if_binarised and manifest_policy_is_binary(manifest) is False:
        warnings.warn(
            f"{root} was prepared with fractional loss weights (policy {manifest.get('policy')}); a trainer that "
            "reads only `labels` trains every token with weight > 0 at weight 1. Use trl_plugin.WeightedSFTTrainer "
            "(im-sft) to train on the weights.",
            FloatWeightsWarning,
            stacklevel=2,
        )
    if not manifest["shards"]:
        raise ManifestError(f"{root}/{MANIFEST} lists no shards (every record was rejected?)")
    files = []
    for shard in manifest["shards"]:
        file = root / shard["path"]
        if not file.is_file():
            raise ManifestError(f"{root}/{MANIFEST} lists {shard['path']}, which does not exist")
        if verify_checksums and shard.get("sha256"):
            digest = hashlib.sha256()
            with open(file, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != shard["sha256"]:
                raise ManifestError(f"{file}: sha256 differs from the manifest; the shard was modified or truncated")
        files.append(str(file))

    # Through the `arrow`/`parquet` builders: they read IPC stream and file formats, and keep every cache file
    # (theirs and those of later `map` calls) in the datasets cache, never inside the prepared directory.
    ds = datasets.load_dataset(manifest["format"], data_files=files, split="train", cache_dir=cache_dir)
    expected = sum(int(s.get("num_rows", 0)) for s in manifest["shards"])
    if all("num_rows" in s for s in manifest["shards"]) and ds.num_rows != expected:
        raise ManifestError(f"{root}: the shards hold {ds.num_rows} rows, the manifest says {expected}")
    fingerprint = (manifest.get("tokenizer") or {}).get("fingerprint", "")
    ds.info.description = f"{_STAMP}{json.dumps({'tokenizer_fingerprint': fingerprint, 'path': str(root)})}"
    return ds


def stamped_fingerprint(dataset: Any) -> str | None:
    """The tokenizer fingerprint :func:`load_prepared` stamped on ``dataset``, if any."""
    info = getattr(dataset, "info", None)
    description = getattr(info, "description", None) or ""
    if not description.startswith(_STAMP):
        return None
    try:
        return json.loads(description[len(_STAMP):]).get("tokenizer_fingerprint")
    except json.JSONDecodeError:
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
    labels_values = np.where(_values(w) > 0, ids_values, -100).astype(np.int64 if ids_values.dtype == np.int64
                                                                      else np.int32)
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
