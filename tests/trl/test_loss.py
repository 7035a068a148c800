"""The weighted loss against stock SFTTrainer and against an independent torch cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from helpers import make_trainer, max_grad_diff, reference_loss, rows_of, window
from im_data.policy import WeightPolicy
from trl_plugin import load_prepared


def _with_weights(dataset: Dataset, table: np.ndarray) -> Dataset:
    """Same tokens, weights looked up from a role->weight table; labels rebuilt to match."""
    def fn(ex):
        w = table[np.asarray(ex["roles"])].astype(np.float32)
        ids = np.asarray(ex["input_ids"])
        return {"loss_weights": w.tolist(), "labels": np.where(w > 0, ids, -100).tolist()}
    return dataset.map(fn)


@pytest.mark.parametrize("mode", ["it", "im"])
def test_binary_weights_match_stock_sft_trainer(tok, make_model, tmp_path, it_dir, im_dir, mode):
    ds = load_prepared(it_dir if mode == "it" else im_dir, tok).select(range(8))
    stock = make_trainer(make_model(), ds, tok, tmp_path, stock=True)
    weighted = make_trainer(make_model(), ds, tok, tmp_path)
    loss_s, grads_s = window(stock, batch_size=4, accumulation=2)
    loss_w, grads_w = window(weighted, batch_size=4, accumulation=2)
    assert loss_w == pytest.approx(loss_s, abs=1e-6)
    assert max_grad_diff(grads_w, grads_s) < 1e-6
    # and the value is the right one: the mean NLL over labelled tokens
    assert loss_w == pytest.approx(float(reference_loss(weighted.model, rows_of(ds))), abs=1e-5)


def test_all_ones_is_plain_causal_lm_cross_entropy(tok, make_model, tmp_path, im_dir):
    ds = _with_weights(load_prepared(im_dir, tok).select(range(6)), np.ones(6, dtype=np.float32))
    trainer = make_trainer(make_model(), ds, tok, tmp_path)
    loss, _ = window(trainer, batch_size=3, accumulation=2)
    # independent: F.cross_entropy over every next token of every example, mean over all of them
    model = trainer.model
    nll = []
    for row in rows_of(ds):
        ids = torch.tensor(row["input_ids"])[None]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        nll.append(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none"))
    assert loss == pytest.approx(float(torch.cat(nll).mean()), abs=1e-5)


def test_half_and_full_weights_give_different_gradients(tok, make_model, tmp_path, im_dir):
    base = load_prepared(im_dir, tok).select(range(8))
    wit = _with_weights(base, WeightPolicy.wit(0.5, 1.0).weights_array())
    ones = _with_weights(base, WeightPolicy.wit(1.0, 1.0).weights_array())
    t_half = make_trainer(make_model(), wit, tok, tmp_path)
    t_full = make_trainer(make_model(), ones, tok, tmp_path)
    loss_half, g_half = window(t_half, 4, 2)
    loss_full, g_full = window(t_full, 4, 2)
    assert max_grad_diff(g_half, g_full) > 1e-4
    with torch.no_grad():
        assert loss_half == pytest.approx(float(reference_loss(t_half.model, rows_of(wit))), abs=1e-5)
        assert loss_full == pytest.approx(float(reference_loss(t_full.model, rows_of(ones))), abs=1e-5)
    assert loss_half != pytest.approx(loss_full, abs=1e-4)


@pytest.mark.parametrize("normalization", ["weight", "tokens", "sequence"])
def test_micro_batch_split_does_not_change_gradients(tok, make_model, tmp_path, im_dir, normalization):
    # fractional weights so that the three normalisers really differ
    ds = _with_weights(load_prepared(im_dir, tok).select(range(8)), WeightPolicy.wit(0.3, 1.0).weights_array())
    a = make_trainer(make_model(), ds, tok, tmp_path, loss_normalization=normalization)
    b = make_trainer(make_model(), ds, tok, tmp_path, loss_normalization=normalization)
    loss_a, g_a = window(a, batch_size=4, accumulation=1)
    loss_b, g_b = window(b, batch_size=1, accumulation=4)
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    assert max_grad_diff(g_a, g_b) < 1e-6
    with torch.no_grad():
        expected = float(reference_loss(a.model, rows_of(ds, 4), normalization))
    assert loss_a == pytest.approx(expected, abs=1e-5)


def test_normalisers_differ(tok, make_model, tmp_path, im_dir):
    ds = _with_weights(load_prepared(im_dir, tok).select(range(4)), WeightPolicy.wit(0.3, 1.0).weights_array())
    losses = {n: window(make_trainer(make_model(), ds, tok, tmp_path, loss_normalization=n), 4, 1)[0]
              for n in ("weight", "tokens", "sequence")}
    assert len({round(v, 5) for v in losses.values()}) == 3, losses


@pytest.mark.parametrize("normalization", ["weight", "sequence"])
def test_packed_and_unpacked_give_the_same_loss(tok, make_model, tmp_path, im_dir, normalization):
    ds = _with_weights(load_prepared(im_dir, tok), WeightPolicy.wit(0.3, 1.0).weights_array())
    longest = max(len(x) for x in ds["input_ids"])
    unpacked = make_trainer(make_model(), ds, tok, tmp_path, loss_normalization=normalization)
    packed = make_trainer(make_model(), ds, tok, tmp_path, loss_normalization=normalization, packing=True,
                          max_length=max(longest, 128))
    assert len(packed.train_dataset) < len(ds)  # really packed
    loss_u, g_u = window(unpacked, batch_size=len(ds), accumulation=1)
    loss_p, g_p = window(packed, batch_size=len(ds), accumulation=1)
    assert loss_p == pytest.approx(loss_u, abs=1e-5)
    assert max_grad_diff(g_p, g_u) < 1e-5
