"""The training script `im-sft` launches (through `accelerate launch`, like `trl sft` launches `trl/scripts/sft.py`).

Run it directly for a single process: ``python -m trl_plugin.train --model_name_or_path ... --dataset_name OUT_DIR``.
"""

from __future__ import annotations

import sys

from .args import PreparedDataArguments, make_parser  # noqa: F401 (PreparedDataArguments: re-exported)
from .checks import check_inputs, check_local_dataset, preflight  # noqa: F401 (check_inputs, preflight: re-exported)


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
