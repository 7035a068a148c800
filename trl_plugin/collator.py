"""Collator: TRL's `DataCollatorForLanguageModeling`, plus `loss_weights` (and `roles`) padded and flattened exactly
like `labels`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
from trl.trainer.utils import pad

from im_data.loss import NO_ROLE  # the role of padding and of each packed document's first token


@dataclass
class WeightedDataCollator(DataCollatorForLanguageModeling):
    """Adds two keys to TRL's batch:

    - ``loss_weights`` (float32, same shape as ``labels``): 0 on padding, wherever ``labels`` is -100 and, with
      padding-free/packing, on the first token of every document (TRL sets its label to -100 too);
    - ``roles`` (int8 → int64 tensor, only when ``roles_column`` is set and present): ``-1`` on padding and on the
      first token of every packed document.

    Examples must hold ``input_ids`` and the weight column; lengths must agree.
    """

    loss_weights_column: str = "loss_weights"
    roles_column: str | None = "roles"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = super().torch_call(examples)
        col = self.loss_weights_column
        weights, roles = [], []
        with_roles = self.roles_column is not None and self.roles_column in examples[0]
        for i, example in enumerate(examples):
            if col not in example:
                raise ValueError(f"example {i} of the batch has no {col!r} column")
            w = torch.as_tensor(example[col], dtype=torch.float32)
            if w.shape[0] != len(example["input_ids"]):
                raise ValueError(
                    f"example {i} of the batch: {col!r} has {w.shape[0]} values, input_ids has "
                    f"{len(example['input_ids'])}"
                )
            weights.append(w)
            if with_roles:
                roles.append(torch.as_tensor(example[self.roles_column], dtype=torch.long))
        if self.padding_free:
            weights = [torch.cat(weights)]
            roles = [torch.cat(roles)] if with_roles else roles
        weights = pad(weights, padding_value=0.0, padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of)
        # `labels` already carry every exclusion (padding, -100 from the data, packed-document starts)
        output["loss_weights"] = weights.masked_fill_(output["labels"] == -100, 0.0)
        if with_roles:
            roles = pad(roles, padding_value=NO_ROLE, padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of)
            if self.padding_free:
                roles[output["position_ids"] == 0] = NO_ROLE
            output["roles"] = roles
        return output
