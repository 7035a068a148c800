"""What the trainer's own truncation would remove from pre-tokenized data, measured before it is applied.

`im-data prepare` already applies the data's ``--max-length`` and records it in the manifest; the trainer's
``max_length`` therefore defaults to the manifest's (:func:`resolve_max_length`). When the trainer still cuts
sequences (a smaller ``max_length``, or TRL's default 1024 on other data), :func:`measure_truncation` counts the
tokens and the trained weight that go, so that the loss is never shortened silently (:class:`TruncationWarning`).
Sums are mergeable (one :class:`TruncationCost` per Arrow batch, added up).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import AUTO

logger = logging.getLogger(__name__)


class TruncationWarning(UserWarning):
    """The trainer truncates sequences at ``max_length``: tokens (and possibly trained weight) are dropped."""


@dataclass(frozen=True)
class TruncationCost:
    """Totals over the measured examples; ``weight`` is Σ loss weight (or the number of labelled tokens)."""

    examples: int = 0
    truncated_examples: int = 0
    emptied_examples: int = 0  # examples with trained weight before the cut and none after it
    tokens: int = 0
    tokens_removed: int = 0
    weight: float = 0.0
    weight_removed: float = 0.0
    longest: int = 0

    def __add__(self, other: TruncationCost) -> TruncationCost:
        values = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        values["longest"] = max(self.longest, other.longest)
        return TruncationCost(**values)

    def message(self, dataset_name: str, max_length: int, mode: str) -> str:
        """One line naming the loss and the fix."""
        def share(part: float, whole: float) -> str:
            return f"{100 * part / whole:.1f} %" if whole else "0 %"

        text = (f"max_length={max_length} ({mode}) truncates {self.truncated_examples:,} of {self.examples:,} "
                f"{dataset_name} examples: it removes {self.tokens_removed:,} of {self.tokens:,} tokens "
                f"({share(self.tokens_removed, self.tokens)}) and {self.weight_removed:,.1f} of {self.weight:,.1f} "
                f"trained weight ({share(self.weight_removed, self.weight)})")
        if self.emptied_examples:
            text += f"; {self.emptied_examples:,} examples keep no trained token and are dropped"
        return (text + f". The longest example has {self.longest:,} tokens: set max_length to at least that "
                "(or 'none') to train on every token.")


def _row_weights(table: pa.Table, weights_column: str | None) -> np.ndarray:
    """Per-token trained weight, flattened: the weight column, else 1 where ``labels`` != -100, else 1."""
    if weights_column is not None:
        column = table.column(weights_column).combine_chunks()
        return column.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    if "labels" in table.column_names:
        labels = table.column("labels").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return (labels != -100).astype(np.float64)
    ids = table.column("input_ids").combine_chunks()
    return np.ones(len(ids.flatten()), dtype=np.float64)


def measure_batch(table: pa.Table, max_length: int, keep_end: bool = False,
                  weights_column: str | None = None) -> TruncationCost:
    """The cost of cutting every row of ``table`` to ``max_length`` tokens (``keep_end``: the first tokens go)."""
    lengths = pc.list_value_length(table.column("input_ids").combine_chunks()).to_numpy(zero_copy_only=False)
    lengths = lengths.astype(np.int64)
    rows = len(lengths)
    if rows == 0:
        return TruncationCost()
    weights = _row_weights(table, weights_column)
    row_of_token = np.repeat(np.arange(rows), lengths)
    position = np.arange(len(row_of_token)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    if keep_end:
        cut = position < np.repeat(lengths - max_length, lengths)
    else:
        cut = position >= max_length
    row_weight = np.bincount(row_of_token, weights=weights, minlength=rows)
    kept_weight = np.bincount(row_of_token, weights=np.where(cut, 0.0, weights), minlength=rows)
    return TruncationCost(
        examples=rows,
        truncated_examples=int((lengths > max_length).sum()),
        emptied_examples=int(((row_weight > 0) & (kept_weight <= 0)).sum()),
        tokens=int(lengths.sum()),
        tokens_removed=int(np.maximum(lengths - max_length, 0).sum()),
        weight=float(weights.sum()),
        weight_removed=float(weights[cut].sum()),
        longest=int(lengths.max()),
    )


def measure_truncation(dataset: Any, max_length: int, keep_end: bool = False, weights_column: str | None = None,
                       batch_size: int = 8192) -> TruncationCost | None:
    """:func:`measure_batch` over a ``datasets.Dataset`` (one vectorised pass over its token columns); None for
    a streaming dataset, which cannot be measured without consuming it."""
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        return None
    columns = ["input_ids"] + [c for c in (weights_column or "labels",) if c in dataset.column_names]
    total = TruncationCost()
    for batch in dataset.select_columns(columns).with_format("arrow").iter(batch_size=batch_size):
        total = total + measure_batch(batch, max_length, keep_end, weights_column)
    return total


def longest_example(datasets: Iterable[Any]) -> int | None:
    """The most tokens in one example over ``datasets`` (``datasets.Dataset``s); None when one cannot be read."""
    from datasets import Dataset

    longest = 0
    for dataset in datasets:
        if not isinstance(dataset, Dataset) or "input_ids" not in dataset.column_names:
            return None
        lengths = pc.list_value_length(dataset.data.column("input_ids"))
        longest = max(longest, int(pc.max(lengths).as_py() or 0))
    return longest


def _manifest_max_length(manifest: Any) -> int | None:
    """The manifest's ``max_length``, from its JSON dict or a typed manifest object."""
    if isinstance(manifest, Mapping):
        return manifest.get("max_length")
    return getattr(manifest, "max_length", None)


def resolve_max_length(max_length: int | str | None, manifests: Mapping[str, Any],
                       datasets: Iterable[Any], packing: bool, trl_default: int | None) -> int | None:
    """The ``max_length`` the trainer uses for ``max_length="auto"`` (any other value is returned unchanged).

    ``manifests`` maps each dataset name to its `im-data prepare` manifest (None for data that was not prepared by
    im-data). With prepared data only: the largest manifest ``max_length``; no truncation (None) when a manifest has
    none, or, with packing (which needs a length), the longest example. Otherwise TRL's default.
    """
    if max_length != AUTO:
        return max_length
    if not manifests or any(m is None for m in manifests.values()):
        logger.info("max_length=auto: not every dataset is an im-data prepared one; TRL's default %s", trl_default)
        return trl_default
    limits = [_manifest_max_length(m) for m in manifests.values()]
    if all(isinstance(limit, int) for limit in limits):
        resolved = max(limits)
        logger.info("max_length=auto: %s, from the prepared data's manifest", resolved)
        return resolved
    if not packing:
        logger.info("max_length=auto: no truncation (the data was prepared without --max-length)")
        return None
    longest = longest_example(datasets)
    if longest is None:
        raise ValueError("packing needs max_length, and the data was prepared without --max-length: set "
                         "--max_length")
    logger.info("max_length=auto: %s, the longest example (packing; the data has no max_length)", longest)
    return longest
