"""`WeightedSFTTrainer`: TRL's `SFTTrainer` trained on per-token loss weights.

How it hooks into TRL (1.16), with the smallest overrides:

- ``_prepare_dataset``: for pre-tokenized datasets with a weight column, checks the weights, rebuilds ``labels``
  from them (``input_ids`` where w > 0, else -100), truncates every token column together, and packs
  ``input_ids``/``labels``/weights/roles with TRL's own ``pack_dataset`` (which packs any list column).
- the collator is TRL's, subclassed (:class:`~trl_plugin.collator.WeightedDataCollator`), swapped in after
  ``SFTTrainer.__init__`` built it (TRL refuses custom collators with padding-free).
- ``_get_num_items_in_batch``: the normaliser (Σw, #w>0 or #sequences) over the whole accumulation window,
  summed over processes, in place of TRL's token count.
- ``compute_loss``: the loss is :mod:`im_data.loss` (plain PyTorch, shared with the other entry points); it calls
  ``SFTTrainer.compute_loss`` unchanged, with a thin wrapper around the model that scales
  the fused LM head's per-token ``log_probs`` by ``m_t`` (``m_t = w_t``, or ``w_t / W_seq`` for the ``sequence``
  normaliser) and passes the window normaliser ``N`` as ``num_items_in_batch``; TRL's ``Σ -log_probs / num_items``
  is then the weighted loss (bit-identical to TRL's for 0/1 weights), and TRL's own metrics (entropy, token accuracy, num_tokens) and its cross-process scaling run as is.
  The logits are never materialised.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import fields
from typing import Any

import torch
from datasets import Dataset, IterableDataset
from trl import SFTConfig, SFTTrainer
from trl.data_utils import get_dataset_column_names, pack_dataset
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
from trl.trainer.utils import global_then_local_main_first

from im_data.loss import SegmentMetrics, fold_normalizer, token_multipliers
from im_data.tokenizer import tokenizer_fingerprint

from im_data.dataset import Manifest

from .collator import WeightedDataCollator
from .config import AUTO, WeightedSFTConfig
from .data import (
    FloatWeightsWarning,
    TokenizerMismatchError,
    WeightsError,
    check_embedding_size,
    check_tokenizer,
    first_positive_weight,
    has_fractional_weights,
    is_prepared_dir,
    load_prepared,
    prepare_batch,
    read_manifest,
    stamped_fingerprint,
    stamped_manifest,
)
from .truncation import TruncationWarning, measure_truncation, resolve_max_length

#: TRL's own default, used by ``max_length="auto"`` for data that was not prepared by im-data
_TRL_MAX_LENGTH = next(f.default for f in fields(SFTConfig) if f.name == "max_length")


class _ScaledFusedForward:
    """Calls the model; on fused-LM-head calls, hands the output to ``post`` (which rescales ``log_probs``)."""

    def __init__(self, model, post):
        self._model = model
        self._post = post

    def __call__(self, *args, **kwargs):
        outputs = self._model(*args, **kwargs)
        return self._post(outputs) if kwargs.get("fused_lm_head") else outputs

    def __getattr__(self, name):
        return getattr(self._model, name)


class WeightedSFTTrainer(SFTTrainer):
    """[`trl.SFTTrainer`] that trains on a per-token loss-weight column (Instruction Modelling, WIT, ...).

    Takes the same arguments as `SFTTrainer`; `args` is a [`WeightedSFTConfig`] (an `SFTConfig` is converted).
    `train_dataset` / `eval_dataset` may also be paths to `im-data prepare` output directories: they are loaded
    through their `manifest.json`, and the manifest's tokenizer fingerprint must match the trainer's tokenizer.

    The dataset must be pre-tokenized (`input_ids`) and hold the weight column (`args.loss_weights_column`);
    `labels` are rebuilt from the weights. With `loss_weights_column=None` the trainer is plain `SFTTrainer`.
    """

    _tag_names = ["trl", "sft", "im-data", "weighted-sft"]
    _name = "WeightedSFT"
    # The loss is normalised over the accumulation window by `compute_loss`; never divide it again
    loss_is_scaled_for_ga = True

    def __init__(self, model, args: SFTConfig | None = None, data_collator=None, train_dataset=None,
                 eval_dataset=None, processing_class=None, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = WeightedSFTConfig(f"{str(name).rstrip('/').split('/')[-1]}-WeightedSFT")
        elif not isinstance(args, WeightedSFTConfig):
            values = {f.name: getattr(args, f.name) for f in fields(args) if f.init}
            args = WeightedSFTConfig(**values)
        self._weighted = args.loss_weights_column is not None
        if not self._weighted:
            # plain SFTTrainer: labels only. Fractional weights, if present, are binarised: say so
            self.loss_is_scaled_for_ga = None
            for name, ds in _named_datasets(train_dataset, eval_dataset):
                if isinstance(ds, (Dataset, IterableDataset)) and "loss_weights" in get_dataset_column_names(ds):
                    if has_fractional_weights(ds, "loss_weights"):
                        warnings.warn(
                            f"the {name} dataset holds fractional `loss_weights`, but loss_weights_column is "
                            "disabled: training reads `labels` only, so every token with weight > 0 weighs 1.",
                            FloatWeightsWarning,
                            stacklevel=2,
                        )
        else:
            if kwargs.get("compute_loss_func") is not None:
                raise ValueError("`compute_loss_func` cannot be combined with per-token loss weights")
            if args.label_smoothing_factor > 0:
                raise ValueError("label smoothing is not supported with per-token loss weights")
            if args.loss_type != "nll":
                raise ValueError(f"loss_type={args.loss_type!r} is not supported with per-token loss weights (nll)")

        # Prepared directories given as paths: load them through the manifest (tokenizer checked below)
        self._manifests: dict[str, Manifest] = {}
        train_dataset = self._maybe_load_dir(train_dataset, "train")
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: self._maybe_load_dir(v, k) for k, v in eval_dataset.items()}
        else:
            eval_dataset = self._maybe_load_dir(eval_dataset, "eval")
        self._stamps = {name: stamped_fingerprint(ds) for name, ds in _named_datasets(train_dataset, eval_dataset)}
        if processing_class is not None:
            self._check_fingerprints(processing_class)
        args = self._resolve_max_length(args, train_dataset, eval_dataset)
        args = _train_packed_as_they_are(args, train_dataset, eval_dataset)

        self._segments = {mode: SegmentMetrics(args.role_metrics) for mode in ("train", "eval")}
        self._warned_no_roles = False
        super().__init__(model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)
        if processing_class is None:
            self._check_fingerprints(self.processing_class)
        embeddings = self.model.get_input_embeddings() if hasattr(self.model, "get_input_embeddings") else None
        if embeddings is not None and hasattr(embeddings, "num_embeddings"):
            name = getattr(getattr(self.model, "config", None), "_name_or_path", "")
            check_embedding_size(getattr(self.processing_class, "tokenizer", self.processing_class),
                                 embeddings.num_embeddings, f"the model {name!r}" if name else "the model")

        if self._weighted:
            pc = getattr(self.accelerator, "parallelism_config", None)
            if pc is not None and (getattr(pc, "sp_enabled", False) or getattr(pc, "cp_enabled", False)):
                raise ValueError("per-token loss weights are not supported with sequence/context parallelism yet")
            if type(self.data_collator) is DataCollatorForLanguageModeling:
                base = self.data_collator
                self.data_collator = WeightedDataCollator(
                    **{f.name: getattr(base, f.name) for f in fields(base) if f.init},
                    loss_weights_column=args.loss_weights_column,
                    roles_column=args.roles_column if args.segment_metrics != "none" else None,
                )

    # -- datasets ------------------------------------------------------------------------------------------------
    def _maybe_load_dir(self, dataset, name):
        if isinstance(dataset, (str, os.PathLike)):
            if not is_prepared_dir(dataset):
                raise ValueError(f"{dataset} is not a prepared directory (no manifest.json)")
            self._manifests[name] = read_manifest(dataset)
            return load_prepared(dataset)
        return dataset

    def _resolve_max_length(self, args, train_dataset, eval_dataset):
        """``max_length="auto"``: the prepared data's own limit (see `WeightedSFTConfig`), on a copy of ``args``."""
        if args.max_length != AUTO:
            return args
        named = dict(_named_datasets(train_dataset, eval_dataset))
        manifests = {name: self._manifests.get(name) or stamped_manifest(ds) for name, ds in named.items()}
        args = copy.copy(args)
        args.max_length = resolve_max_length(AUTO, manifests, named.values(), args.packing, _TRL_MAX_LENGTH)
        return args

    def _report_truncation(self, dataset, args, packing, dataset_name, weights_column):
        """Warn (once, on the main process) with the tokens and trained weight that truncation at
        ``args.max_length`` removes: TRL cuts every sequence, and `bfd` packing cuts the longer ones."""
        if args.max_length is None or (packing and args.packing_strategy != "bfd"):
            return
        if "input_ids" not in get_dataset_column_names(dataset):
            return
        keep_end = not packing and args.truncation_mode == "keep_end"
        cost = measure_truncation(dataset, args.max_length, keep_end, weights_column)
        if cost is not None and cost.tokens_removed and args.process_index == 0:
            mode = f"packing {args.packing_strategy}" if packing else args.truncation_mode
            warnings.warn(cost.message(dataset_name, args.max_length, mode), TruncationWarning, stacklevel=3)

    def _check_fingerprints(self, processing_class):
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        for name, manifest in self._manifests.items():
            check_tokenizer(manifest, tokenizer, where=f" of the {name} dataset")
        actual = tokenizer_fingerprint(tokenizer)
        for name, expected in self._stamps.items():
            if expected and expected != actual and name not in self._manifests:
                raise TokenizerMismatchError(
                    f"the {name} dataset was prepared with a tokenizer of fingerprint {expected}, but the trainer's "
                    f"tokenizer has fingerprint {actual}"
                )

    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        if not self._weighted:
            self._report_truncation(dataset, args, packing, dataset_name, weights_column=None)
            return super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)
        col = args.loss_weights_column
        columns = get_dataset_column_names(dataset)
        if "input_ids" not in columns:
            raise WeightsError(
                f"the {dataset_name} dataset is not tokenized (no `input_ids`): per-token weights need the "
                "`im-data prepare` shards (input_ids, loss_weights, roles, ...)"
            )
        if col not in columns:
            raise WeightsError(
                f"the {dataset_name} dataset has no {col!r} column (columns: {sorted(columns)}). Prepare it with "
                "`im-data prepare`, set --loss_weights_column, or use loss_weights_column=none to train on labels."
            )
        roles = args.roles_column if args.roles_column in columns else None
        if roles is None and args.segment_metrics == "all":
            raise WeightsError(f"segment_metrics='all' needs the {args.roles_column!r} column")
        token_columns = [col] + ([roles] if roles else [])
        if formatting_func is not None:
            warnings.warn("formatting_func is ignored: the dataset is already tokenized", stacklevel=2)

        sl = None
        if args.max_length is not None and not packing:
            if args.truncation_mode == "keep_start":
                sl = slice(None, args.max_length)
            elif args.truncation_mode == "keep_end":
                sl = slice(-args.max_length, None)
            else:
                raise ValueError(f"Unsupported truncation mode: {args.truncation_mode}")
        self._report_truncation(dataset, args, packing, dataset_name, weights_column=col)
        map_kwargs: dict[str, Any] = {}
        if isinstance(dataset, Dataset):
            map_kwargs = {"num_proc": args.dataset_num_proc, "desc": f"Checking weights of {dataset_name} dataset"}
        keep = ["input_ids", "labels", *token_columns, *(["seq_lengths"] if "seq_lengths" in columns else [])]
        with global_then_local_main_first():
            dataset = dataset.with_format("arrow").map(
                prepare_batch, batched=True,
                fn_kwargs={"weights_column": col, "token_columns": token_columns, "sl": sl}, **map_kwargs,
            ).with_format(None)
            if sl is not None:  # like TRL: drop examples that truncation left without a trainable token
                if isinstance(dataset, Dataset):
                    map_kwargs["desc"] = f"Dropping fully masked examples from {dataset_name} dataset"
                dataset = dataset.filter(lambda ex: any(w > 0 for w in ex[col]), **map_kwargs)
            if not first_positive_weight(dataset, col):
                raise WeightsError(
                    f"every loss weight of the {dataset_name} dataset is 0 (after truncation to max_length="
                    f"{args.max_length}): nothing would be trained. Check the weight policy of `im-data prepare`."
                )
            if packing:
                if args.max_length is None:
                    raise ValueError("When packing is enabled, `max_length` can't be `None`.")
                if isinstance(dataset, Dataset):
                    map_kwargs["desc"] = f"Packing {dataset_name} dataset"
                dataset = dataset.select_columns(["input_ids", "labels", *token_columns])
                # shuffled twice, as TRL's SFTTrainer does (and so equal to it): here, so that the examples packed
                # together are not neighbours in the input; below, so that the packs come in random order too
                if args.shuffle_dataset:
                    dataset = dataset.shuffle(seed=args.seed)
                # TRL's packer packs every list column alike; weights and roles follow their tokens
                dataset = pack_dataset(dataset, args.max_length, args.packing_strategy, map_kwargs)
            else:
                dataset = dataset.select_columns([c for c in keep if c in get_dataset_column_names(dataset)])
        if args.shuffle_dataset:
            dataset = dataset.shuffle(seed=args.seed)
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self._weighted:
            extra = [self.args.loss_weights_column, self.args.roles_column]
            self._signature_columns = list(dict.fromkeys([*self._signature_columns, *extra]))

    # -- normaliser ----------------------------------------------------------------------------------------------
    def _token_multipliers(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, denominator contribution) for one micro-batch; m is aligned with ``labels[:, 1:]``."""
        return token_multipliers(batch, self.args.loss_normalization)

    def _get_num_items_in_batch(self, batch_samples, device):
        if not self._weighted:
            return super()._get_num_items_in_batch(batch_samples, device)
        if not batch_samples:
            return None
        total = sum(self._token_multipliers(batch)[1].to(device) for batch in batch_samples)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            total = self.accelerator.gather(total.reshape(1)).sum()
        # like Trainer: ranks that share a batch (TP/CP/SP) must not count it twice
        return total / (self.get_tp_size() * self.get_cp_size() * self.get_sp_size())

    # -- loss ----------------------------------------------------------------------------------------------------
    def _segments_on(self, mode: str) -> bool:
        setting = self.args.segment_metrics
        return setting == "all" or (setting == "eval" and mode == "eval")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._weighted:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        if "loss_weights" not in inputs:
            raise WeightsError("the batch has no `loss_weights`: use WeightedDataCollator (the default collator)")
        roles = inputs.pop("roles", None)
        multipliers, local_norm = self._token_multipliers(inputs)
        inputs.pop("loss_weights")
        if num_items_in_batch is None:
            # evaluation: this micro-batch is the window. TRL multiplies by the number of processes when
            # `average_tokens_across_devices` (the window then counts every rank); undo that for a local mean
            norm = local_norm
            if self.args.average_tokens_across_devices:
                norm = norm * (self.accelerator.num_processes // self.get_tp_size())
        else:
            norm = torch.as_tensor(num_items_in_batch, device=multipliers.device, dtype=torch.float32)
        # TRL computes Σ(-log_probs) / num_items, clamping num_items to >= 1: see `fold_normalizer`
        scale, num_items = fold_normalizer(multipliers, norm)

        labels = inputs["labels"]
        trained = labels[:, 1:] != -100
        segments = self._segments_on(mode)
        if segments and roles is None and not self._warned_no_roles:
            warnings.warn("segment metrics need the `roles` column; not logging loss_instruction/loss_output",
                          stacklevel=2)
            self._warned_no_roles = True
        segments = segments and roles is not None
        if segments:
            # score every segment's token, trained or not (IT leaves instruction tokens at -100)
            scored = self._segments[mode].scored(roles[:, 1:])
            full = labels.clone()
            full[:, 1:] = torch.where(scored, inputs["input_ids"][:, 1:], labels[:, 1:])
            inputs["labels"] = full

        def post(outputs):
            log_probs = outputs.log_probs
            if segments:
                self._segments[mode].add(log_probs.detach(), roles[:, 1:])
                outputs.label_mask = trained
                if outputs.entropy is not None:
                    outputs.entropy = outputs.entropy.masked_fill(~trained, 0.0)
                if outputs.is_top1 is not None:
                    outputs.is_top1 = outputs.is_top1 & trained
            outputs.log_probs = log_probs * scale.to(log_probs.dtype)
            return outputs

        try:
            return super().compute_loss(_ScaledFusedForward(model, post), inputs, return_outputs,
                                        num_items_in_batch=num_items)
        finally:
            inputs["labels"] = labels

    # -- segment metrics -----------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        if self._weighted and self._segments[mode].sums is not None:
            reduce = (lambda t: self.accelerator.reduce(t, reduction="sum")) \
                if self.accelerator.num_processes > 1 else (lambda t: t)
            logs.update(self._segments[mode].compute("eval_" if mode == "eval" else "", reduce=reduce))
        super().log(logs, start_time)


def _train_packed_as_they_are(args, train_dataset, eval_dataset):
    """Offline-packed rows (`im-data prepare --pack-length`: a ``seq_lengths`` column) are trained as they are:
    padding-free, so ``seq_lengths`` keeps the documents apart, never re-packed nor truncated (each row already
    fits the pack length). Returns a copy of ``args`` set so (``packing=False``, ``padding_free=True``,
    ``max_length=None``), or ``args`` itself for unpacked data."""
    packed = [name for name, ds in _named_datasets(train_dataset, eval_dataset)
              if isinstance(ds, (Dataset, IterableDataset)) and "seq_lengths" in (get_dataset_column_names(ds) or ())]
    if not packed:
        return args
    if args.packing:
        warnings.warn(f"the {' and '.join(packed)} dataset is already packed (seq_lengths): trained as packed, "
                      "not packed again (packing=False)", stacklevel=3)
    args = copy.copy(args)
    args.packing, args.padding_free, args.max_length = False, True, None
    return args


def _named_datasets(train_dataset, eval_dataset):
    if train_dataset is not None:
        yield "train", train_dataset
    if isinstance(eval_dataset, dict):
        yield from eval_dataset.items()
    elif eval_dataset is not None:
        yield "eval", eval_dataset
