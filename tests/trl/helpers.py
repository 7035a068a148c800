"""Test helpers: build trainers the same way, run one optimizer window by hand, and an independent reference loss
computed with plain torch cross-entropy on full logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from datasets import Dataset

from trl import SFTConfig, SFTTrainer
from trl_plugin import WeightedSFTConfig, WeightedSFTTrainer

BASE_ARGS = dict(
    report_to="none", use_cpu=True, save_strategy="no", max_length=None, logging_steps=1,
    gradient_checkpointing=False, disable_tqdm=True, seed=0, learning_rate=1e-3, dataset_num_proc=None,
)


def make_trainer(model, dataset, tok, tmp_path, *, stock: bool = False, eval_dataset=None, **overrides):
    kwargs = {**BASE_ARGS, **overrides}
    if stock:
        args = SFTConfig(str(tmp_path / "stock"), **kwargs)
        return SFTTrainer(model, args=args, train_dataset=dataset, eval_dataset=eval_dataset, processing_class=tok)
    args = WeightedSFTConfig(str(tmp_path / "weighted"), **kwargs)
    return WeightedSFTTrainer(model, args=args, train_dataset=dataset, eval_dataset=eval_dataset,
                              processing_class=tok)


def window(trainer, batch_size: int, accumulation: int):
    """One optimizer window through the trainer's own code path (collator, `get_batch_samples`/normaliser,
    `training_step`/`compute_loss`, backward), in the dataset's order. Returns (summed loss, {name: grad})."""
    trainer.args.per_device_eval_batch_size = batch_size  # sequential loader over the prepared train dataset
    loader = trainer.get_eval_dataloader(trainer.train_dataset)
    model = trainer.model
    model.zero_grad(set_to_none=True)
    batches, num_items = trainer.get_batch_samples(iter(loader), accumulation, trainer.args.device)
    trainer.current_gradient_accumulation_steps = accumulation
    total = sum(float(trainer.training_step(model, batch, num_items)) for batch in batches)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return total, grads


def max_grad_diff(a, b):
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def reference_loss(model, rows: list[dict], normalization: str = "weight") -> torch.Tensor:
    """Σ w·nll normalised as documented, from full logits of the *unpatched* forward, one example at a time."""
    num, den, per_seq = torch.zeros(()), torch.zeros(()), []
    for row in rows:
        ids = torch.tensor(row["input_ids"])[None]
        w = torch.tensor(row["loss_weights"], dtype=torch.float32)[1:]
        logits = model(input_ids=ids).logits[0, :-1].float()  # no fused_lm_head flag: the original forward
        nll = F.cross_entropy(logits, ids[0, 1:], reduction="none")
        if normalization == "sequence":
            if w.sum() > 0:
                per_seq.append((w * nll).sum() / w.sum())
            continue
        num = num + (w * nll).sum()
        den = den + (w.sum() if normalization == "weight" else (w > 0).sum())
    if normalization == "sequence":
        return torch.stack(per_seq).mean()
    return num / den


def rows_of(dataset: Dataset, n: int | None = None) -> list[dict]:
    n = len(dataset) if n is None else n
    return [dataset[i] for i in range(n)]
