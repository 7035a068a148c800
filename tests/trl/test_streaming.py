"""A small streaming dataset (``IterableDataset``) with mixed 0/1 weights trains with WeightedSFTTrainer (issue 20: a
promise no test pinned down)."""

from __future__ import annotations

import math

import numpy as np

from helpers import make_trainer
from trl_plugin import load_prepared


def test_a_small_streaming_dataset_with_mixed_0_1_weights_trains(tok, make_model, tmp_path, it_dir):
    ds = load_prepared(it_dir, tok)
    weights = np.concatenate([np.asarray(w) for w in ds["loss_weights"]])
    assert set(weights.tolist()) == {0.0, 1.0}  # mixed 0/1 (it: the prompt is untrained)
    stream = ds.to_iterable_dataset()
    trainer = make_trainer(make_model(), stream, tok, tmp_path, max_steps=3, per_device_train_batch_size=4)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    assert trainer.state.global_step == 3 and len(losses) == 3
    assert all(math.isfinite(x) and x > 0 for x in losses)
