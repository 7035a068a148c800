"""What `im-sft` checks before the model loads (and before `accelerate launch`): datasets, manifests, tokenizer
and embedding size. Used by the launcher (:mod:`trl_plugin.cli`) and the training script (:mod:`trl_plugin.train`);
imports nothing heavy until a check needs it."""

from __future__ import annotations

from pathlib import Path


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
