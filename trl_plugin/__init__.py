"""TRL plugin for Instruction Modelling: train `SFTTrainer` on per-token loss weights from `im-data prepare` shards.

Usage::

    from trl_plugin import WeightedSFTConfig, WeightedSFTTrainer
    trainer = WeightedSFTTrainer(model, args=WeightedSFTConfig(...), train_dataset="out/im", processing_class=tok)
"""

from .collator import WeightedDataCollator
from .config import WeightedSFTConfig
from .data import (
    FloatWeightsWarning,
    ManifestError,
    TokenizerMismatchError,
    WeightsError,
    load_prepared,
    read_manifest,
    shard_paths,
)
from .trainer import WeightedSFTTrainer

__all__ = [
    "FloatWeightsWarning",
    "ManifestError",
    "TokenizerMismatchError",
    "WeightedDataCollator",
    "WeightedSFTConfig",
    "WeightedSFTTrainer",
    "WeightsError",
    "load_prepared",
    "read_manifest",
    "shard_paths",
]
