"""The weighted loss in a plain ``transformers.Trainer`` (no TRL): :class:`WeightedLossMixin` and
:class:`WeightedTrainer`.

    from im_data.hf_trainer import WeightedTrainer
    from im_data.torch_data import PreparedMapDataset, WeightedCollator
    trainer = WeightedTrainer(model, args=TrainingArguments(...), train_dataset=PreparedMapDataset("out/wit"),
                              data_collator=WeightedCollator(pad_token_id=tok.pad_token_id),
                              loss_normalization="weight")

The loss is :mod:`im_data.loss` on the model's logits; the normaliser covers the whole gradient-accumulation window
and every process (``Trainer``'s ``num_items_in_batch`` hook), like ``WeightedSFTTrainer``'s.
"""

from __future__ import annotations

from typing import Any

import torch
import transformers

from .loss import SegmentMetrics, check_normalization, token_multipliers, weighted_lm_loss

#: batch keys the loss reads and the model must not receive
LOSS_KEYS = ("labels", "loss_weights", "roles")


class WeightedLossMixin:
    """Mix into a ``transformers.Trainer`` subclass (before it): trains on the batch's ``loss_weights``.

    Keyword arguments taken by ``__init__``: ``loss_normalization`` (``weight``, ``tokens``, ``sequence``) and
    ``segment_metrics`` (log ``loss_instruction`` / ``loss_output`` from the batch's ``roles``)."""

    # compute_loss normalises over the accumulation window: Trainer must not divide again
    loss_is_scaled_for_ga = True

    def __init__(self, *args: Any, loss_normalization: str = "weight", segment_metrics: bool = False,
                 role_metrics: bool = False, **kwargs: Any):
        self.loss_normalization = check_normalization(loss_normalization)
        self._segments = ({mode: SegmentMetrics(role_metrics) for mode in ("train", "eval")}
                          if segment_metrics or role_metrics else None)
        super().__init__(*args, **kwargs)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(dict.fromkeys([*self._signature_columns, *LOSS_KEYS, "seq_lengths"]))

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        if not batch_samples:
            return None
        total = sum(token_multipliers(b, self.loss_normalization)[1].to(device) for b in batch_samples)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            total = self.accelerator.gather(total.reshape(1)).sum()
        return total

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        if "loss_weights" not in inputs:
            raise ValueError("the batch has no `loss_weights`: use im_data.torch_data.WeightedCollator")
        batch = dict(inputs)
        model_inputs = {k: v for k, v in inputs.items() if k not in LOSS_KEYS}
        outputs = model(**model_inputs)
        mode = "train" if model.training else "eval"
        metrics = self._segments[mode] if self._segments is not None else None
        loss = weighted_lm_loss(batch, logits=outputs.logits, normalization=self.loss_normalization,
                                num_items=num_items_in_batch, metrics=metrics)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # the window normaliser counts every rank, and DDP averages the gradients over ranks
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self._segments is not None:
            mode = "train" if self.model.training else "eval"
            reduce = (lambda t: self.accelerator.reduce(t, reduction="sum")) \
                if self.accelerator.num_processes > 1 else (lambda t: t)
            logs.update(self._segments[mode].compute("eval_" if mode == "eval" else "", reduce=reduce))
        super().log(logs, *args, **kwargs)


class WeightedTrainer(WeightedLossMixin, transformers.Trainer):
    """``transformers.Trainer`` trained on per-token loss weights (see :class:`WeightedLossMixin`)."""
