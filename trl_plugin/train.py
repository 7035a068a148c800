"""The training script `im-sft` launches (through `accelerate launch`, like `trl sft` launches `trl/scripts/sft.py`).

Run it directly for a single process: ``python -m trl_plugin.train --model_name_or_path ... --dataset_name OUT_DIR``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
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


def check_local_dataset(name: str) -> None:
    """Raise FileNotFoundError for a dataset name that is meant as a local path (``./x``, ``/x``, ``~/x``, or
    ``dir/x`` where ``dir`` exists here) but does not exist, instead of asking the hub for it."""
    path = Path(name).expanduser()
    looks_local = name.startswith((".", "/", "~")) or (len(path.parts) > 1 and path.parent.is_dir())
    if looks_local and not path.exists():
        raise FileNotFoundError(f"dataset {name!r} does not exist: give the directory `im-data prepare --output` "
                                "wrote, or a hub dataset as OWNER/NAME")


def _eval_dataset_name(script_args, training_args, data_args) -> str | None:
    return data_args.eval_dataset_name if training_args.eval_strategy != "no" else None


def preflight(script_args, training_args, model_args, dataset_args, data_args) -> None:
    """:func:`check_inputs` on the parsed options (run by `im-sft` before `accelerate launch`)."""
    check_inputs({"train": None if dataset_args.datasets else script_args.dataset_name,
                  "eval": _eval_dataset_name(script_args, training_args, data_args)},
                 model_args.model_name_or_path, data_args.tokenizer_name_or_path,
                 trust_remote_code=training_args.trust_remote_code, revision=model_args.model_revision)


def check_inputs(datasets: dict[str, str | None], model: str | None, tokenizer: str | None = None, *,
                 trust_remote_code: bool = False, revision: str | None = None, local_only: bool = False) -> None:
    """What can be checked before the model loads (and before `accelerate launch`), in a second or two: each
    dataset folder exists, a prepared one has a valid manifest and its shards; the tokenizer's fingerprint matches
    the manifests'; the tokenizer has no id beyond the model's embeddings (read from its config, not its weights).
    Raises the first problem (ValueError / OSError: one line, exit 2). A tokenizer or config that cannot be read
    here (a hub name offline; any non-local model with ``local_only``) is left to the training process."""
    from im_data.dataset import PreparedDataset, is_prepared_dir

    from .data import check_embedding_size, check_tokenizer

    manifests = {}
    for role, name in datasets.items():
        if not name:
            continue
        if is_prepared_dir(name):
            prepared = PreparedDataset.open(name)
            prepared.verify(checksums=False)
            manifests[role] = prepared.manifest
        else:
            check_local_dataset(name)
    if not model:
        return
    tok = _load_tokenizer_or_none(tokenizer or model, trust_remote_code)
    if tok is None:
        return
    for role, manifest in manifests.items():
        check_tokenizer(manifest, tok, where=f" of the {role} dataset")
    vocab = _model_vocab_size(model, revision, trust_remote_code, local_only)
    if vocab is not None:
        check_embedding_size(tok, vocab, f"the model {model!r}")


def _load_tokenizer_or_none(name: str, trust_remote_code: bool):
    from im_data.tokenizer import TokenizerLoadError, load_tokenizer

    try:
        return load_tokenizer(name, trust_remote_code=trust_remote_code)
    except (TokenizerLoadError, OSError, ValueError):
        return None


def _model_vocab_size(model: str, revision: str | None, trust_remote_code: bool, local_only: bool) -> int | None:
    """The model's embedding size from its config alone (no weights are read): ``config.json`` of a local
    folder directly, else through ``AutoConfig`` (unless ``local_only``)."""
    import json

    config_file = Path(model).expanduser() / "config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
        vocab = text.get("vocab_size", config.get("vocab_size"))
        return vocab if isinstance(vocab, int) else None
    if local_only:
        return None
    try:
        from transformers import AutoConfig

        vocab = getattr(AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code
                                                   ).get_text_config(), "vocab_size", None)
    except (OSError, ValueError):
        return None
    return vocab if isinstance(vocab, int) else None


def _load(name: str, script_args, data_args, split: str):
    from datasets import load_dataset

    from .data import is_prepared_dir, load_prepared

    if is_prepared_dir(name):
        return load_prepared(name, verify_checksums=data_args.verify_checksums)
    check_local_dataset(name)
    dataset = load_dataset(name, name=script_args.dataset_config, streaming=script_args.dataset_streaming)
    return dataset[split]


def main(script_args, training_args, model_args, dataset_args, data_args) -> None:
    import transformers
    from packaging.version import Version
    from trl import get_dataset, get_peft_config, get_quantization_config

    from .data import is_prepared_dir
    from .trainer import WeightedSFTTrainer

    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    if training_args.model_init_kwargs is not None:
        model_init_kwargs.update(training_args.model_init_kwargs)
    training_args.model_init_kwargs = model_init_kwargs

    eval_on = training_args.eval_strategy != "no"
    train_dataset = eval_dataset = None
    if dataset_args.datasets:
        dataset = get_dataset(dataset_args)
        train_dataset = dataset[script_args.dataset_train_split]
        if eval_on and script_args.dataset_test_split in dataset:
            eval_dataset = dataset[script_args.dataset_test_split]
    elif script_args.dataset_name:
        name = script_args.dataset_name
        # A prepared directory goes to the trainer as a path: it is loaded through its manifest and the
        # tokenizer fingerprint is checked against the trainer's tokenizer.
        train_dataset = name if is_prepared_dir(name) else _load(name, script_args, data_args,
                                                                  script_args.dataset_train_split)
    else:
        raise ValueError("Either `datasets` or `dataset_name` must be provided.")
    if eval_on and data_args.eval_dataset_name:
        name = data_args.eval_dataset_name
        eval_dataset = name if is_prepared_dir(name) else _load(name, script_args, data_args,
                                                                 script_args.dataset_test_split)
    elif eval_on and eval_dataset is None and script_args.dataset_name and is_prepared_dir(script_args.dataset_name):
        # the evaluation split of the prepared directory itself (`im-data prepare --eval-fraction`), if it has one
        from .data import load_prepared, read_manifest

        if script_args.dataset_test_split in read_manifest(script_args.dataset_name).splits:
            eval_dataset = load_prepared(script_args.dataset_name, split=script_args.dataset_test_split,
                                         verify_checksums=data_args.verify_checksums)
    if eval_on and eval_dataset is None:
        raise ValueError("eval_strategy is set but there is no evaluation data: pass --eval_dataset_name DIR, or "
                         "prepare the data with `im-data prepare --eval-fraction F`")

    processing_class = None
    if data_args.tokenizer_name_or_path:
        from im_data.tokenizer import load_tokenizer

        processing_class = load_tokenizer(data_args.tokenizer_name_or_path,
                                          trust_remote_code=training_args.trust_remote_code)

    trainer = WeightedSFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processing_class,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.accelerator.print("Training completed.")
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}.")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    if Version(transformers.__version__) >= Version("5.18.0"):
        trainer.end()


def run(argv: list[str] | None = None) -> int:
    """Parse and train; an error ends on one line (``im-sft: error: ...``) unless ``--debug`` or IM_SFT_DEBUG=1."""
    from .cli import guarded, one_line_warnings, split_debug

    args, debug = split_debug(sys.argv[1:] if argv is None else argv)
    one_line_warnings()

    def parse_and_train() -> None:
        parsed = make_parser(prog="im-sft").parse_args_and_config(args, fail_with_unknown_args=False)
        main(*parsed)

    return guarded(parse_and_train, debug)


if __name__ == "__main__":
    raise SystemExit(run())
