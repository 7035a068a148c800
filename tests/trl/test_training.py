"""Short real training runs, the collator, packing of weights, and the segment metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import make_trainer, rows_of
from trl_plugin import WeightedDataCollator, load_prepared


@pytest.mark.parametrize("mode", ["im", "it"])
def test_twenty_steps_reduce_loss_and_log_segment_metrics(tok, make_model, tmp_path, im_dir, it_dir, mode):
    data = im_dir if mode == "im" else it_dir
    trainer = make_trainer(make_model(), str(data), tok, tmp_path, eval_dataset=str(data), max_steps=20,
                           per_device_train_batch_size=4, learning_rate=3e-3, segment_metrics="all",
                           lr_scheduler_type="constant")
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    assert len(logs) == 20
    first, last = np.mean([h["loss"] for h in logs[:3]]), np.mean([h["loss"] for h in logs[-3:]])
    assert last < first - 0.5, (first, last)
    for h in logs:
        assert {"loss_instruction", "loss_output", "entropy", "mean_token_accuracy", "num_tokens"} <= h.keys()
    # the segment metric is the unweighted mean NLL: in IT the instruction is untrained and must stay high
    out_drop = logs[0]["loss_output"] - logs[-1]["loss_output"]
    instr_drop = logs[0]["loss_instruction"] - logs[-1]["loss_instruction"]
    assert out_drop > 0.5
    if mode == "it":
        assert logs[-1]["loss_instruction"] > logs[-1]["loss_output"]
    else:
        assert instr_drop > 0.5
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_loss_instruction", "eval_loss_output", "eval_mean_token_accuracy"} <= metrics.keys()
    # eval_loss_output is an independent quantity: check it against a plain cross-entropy over output tokens
    model = trainer.model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for row in rows_of(load_prepared(data, tok)):
            ids = torch.tensor(row["input_ids"])[None]
            roles = torch.tensor(row["roles"])[1:]
            token_nll = torch.nn.functional.cross_entropy(model(input_ids=ids).logits[0, :-1], ids[0, 1:],
                                                          reduction="none")
            nll += float(token_nll[roles == 4].sum())
            count += int((roles == 4).sum())
    assert metrics["eval_loss_output"] == pytest.approx(nll / count, rel=1e-4)


def test_segment_metrics_default_is_eval_only(tok, make_model, tmp_path, im_dir):
    trainer = make_trainer(make_model(), str(im_dir), tok, tmp_path, eval_dataset=str(im_dir), max_steps=2,
                           per_device_train_batch_size=4)
    assert trainer.args.segment_metrics == "eval"
    trainer.train()
    assert not any("loss_instruction" in h for h in trainer.state.log_history)
    assert "eval_loss_output" in trainer.evaluate()


def test_collator_pads_and_flattens_weights_like_labels(tok):
    examples = [
        {"input_ids": [5, 6, 7], "labels": [5, -100, 7], "loss_weights": [0.5, 0.0, 2.0], "roles": [2, 0, 4]},
        {"input_ids": [8, 9], "labels": [8, 9], "loss_weights": [1.0, 0.25], "roles": [2, 4]},
    ]
    padded = WeightedDataCollator(pad_token_id=0)(examples)
    assert padded["loss_weights"].tolist() == [[0.5, 0.0, 2.0], [1.0, 0.25, 0.0]]
    assert padded["roles"].tolist() == [[2, 0, 4], [2, 4, -1]]
    flat = WeightedDataCollator(pad_token_id=0, padding_free=True)(examples)
    # the first token of each document weighs 0 (TRL sets its label to -100), roles -1 there
    assert flat["loss_weights"].tolist() == [[0.0, 0.0, 2.0, 0.0, 0.25]]
    assert flat["labels"].tolist() == [[-100, -100, 7, -100, 9]]
    assert flat["roles"].tolist() == [[-1, 0, 4, -1, 4]]
    with pytest.raises(ValueError, match="has 1 values, input_ids has 2"):
        WeightedDataCollator(pad_token_id=0)([{"input_ids": [1, 2], "loss_weights": [1.0]}])


def test_packing_keeps_each_documents_weights(tok, make_model, tmp_path, im_dir):
    ds = load_prepared(im_dir, tok)
    trainer = make_trainer(make_model(), ds, tok, tmp_path, packing=True, max_length=256)
    packed = trainer.train_dataset
    assert len(packed) < len(ds)
    originals = {tuple(r["input_ids"]): r for r in rows_of(ds)}
    seen = 0
    for row in rows_of(packed):
        start = 0
        for n in row["seq_lengths"]:
            doc = originals[tuple(row["input_ids"][start:start + n])]
            assert row["loss_weights"][start:start + n] == pytest.approx(doc["loss_weights"])
            assert row["roles"][start:start + n] == doc["roles"]
            start += n
            seen += 1
    assert seen == len(ds)
    batch = trainer.data_collator([packed[0], packed[1]])
    starts = batch["position_ids"][0] == 0
    assert float(batch["loss_weights"][0][starts].abs().sum()) == 0.0


def test_truncation_cuts_weights_with_tokens(tok, make_model, tmp_path, im_dir):
    ds = load_prepared(im_dir, tok)
    for mode in ("keep_start", "keep_end"):
        trainer = make_trainer(make_model(), ds, tok, tmp_path, max_length=12, truncation_mode=mode)
        for before, after in zip(rows_of(ds), rows_of(trainer.train_dataset)):
            sl = slice(None, 12) if mode == "keep_start" else slice(-12, None)
            assert after["input_ids"] == before["input_ids"][sl]
            assert after["loss_weights"] == pytest.approx(before["loss_weights"][sl])
            assert after["labels"] == [i if w > 0 else -100 for i, w in zip(after["input_ids"],
                                                                             after["loss_weights"])]
