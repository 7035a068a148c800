"""TRL plugin for Instruction Modelling: train `SFTTrainer` on per-token loss weights from `im-data prepare` shards.

Usage::

    from trl_plugin import WeightedSFTConfig, WeightedSFTTrainer
    trainer = WeightedSFTTrainer(model, args=WeightedSFTConfig(...), train_dataset="out/im", processing_class=tok)

The names below are imported on first use, so that ``im-sft --help``/``--version`` (which import this package)
do not pay for torch and TRL's trainer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> submodule that defines it
_EXPORTS = {
    "WeightedDataCollator": "collator",
    "WeightedSFTConfig": "config",
    "FloatWeightsWarning": "data",
    "ManifestError": "data",
    "TokenizerMismatchError": "data",
    "WeightsError": "data",
    "load_prepared": "data",
    "read_manifest": "data",
    "shard_paths": "data",
    "TruncationWarning": "truncation",
    "WeightedSFTTrainer": "trainer",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .collator import WeightedDataCollator
    from .config import WeightedSFTConfig
    from .data import (FloatWeightsWarning, ManifestError, TokenizerMismatchError, WeightsError, load_prepared,
                       read_manifest, shard_paths)
    from .trainer import WeightedSFTTrainer
    from .truncation import TruncationWarning


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
