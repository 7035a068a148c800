"""The options of `im-sft`: every `trl sft` dataclass plus ours. Imported by the launcher (:mod:`trl_plugin.cli`,
for ``--help`` and to split its arguments) and by the training script (:mod:`trl_plugin.train`); TRL is imported
only when a parser is built."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field


@dataclass
class PreparedDataArguments:
    """Extra data options of `im-sft` (prepared `im-data prepare` directories)."""

    eval_dataset_name: str | None = field(
        default=None,
        metadata={"help": "Evaluation data: a prepared directory (manifest.json) or a `datasets` name/path."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Tokenizer to train with (default: the model's). Its fingerprint must match the shards'. "
                          "'default' is im_data's embedded tokenizer."},
    )
    verify_checksums: bool = field(
        default=False, metadata={"help": "Check every shard's sha256 against manifest.json before training."}
    )


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, TrlParser

    from .config import WeightedSFTConfig

    dataclass_types = (ScriptArguments, WeightedSFTConfig, ModelConfig, DatasetMixtureConfig, PreparedDataArguments)
    if subparsers is not None:
        return subparsers.add_parser("im-sft", help="SFT on per-token loss weights", dataclass_types=dataclass_types)
    return TrlParser(dataclass_types, prog=prog)
