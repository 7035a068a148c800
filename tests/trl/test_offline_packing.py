"""Shards packed offline by `im-data prepare --pack-length N` train as they are: the same rows, loss and gradients
as TRL's online packing (`packing=True, max_length=N`) of the same examples prepared unpacked (float64)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import tiny_llama
from helpers import make_trainer, max_grad_diff, window
from trl_plugin import load_prepared

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "im_data/assets/sample.jsonl"
N = 256


def _prepare(out: Path, *flags: str) -> str:
    from pipelines.cli import main

    assert main(["prepare", str(SAMPLE), "-o", str(out), "-q", *flags]) == 0
    return str(out)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("packing")
    policy = ["--mode", "wit", "--prompt-weight", "0.3"]
    return {"plain": _prepare(root / "plain", "--max-length", str(N), *policy),
            "packed": _prepare(root / "packed", "--pack-length", str(N), *policy),
            "plain_im": _prepare(root / "plain_im", "--max-length", str(N)),
            "packed_im": _prepare(root / "packed_im", "--pack-length", str(N))}


def _double(tok):
    return tiny_llama(tok).to(torch.float64)


@pytest.mark.parametrize("normalization", ["weight", "sequence"])
def test_offline_packed_shards_train_like_trls_online_packing(tok, tmp_path, dirs, normalization):
    offline = make_trainer(_double(tok), dirs["packed"], tok, tmp_path / "off", loss_normalization=normalization,
                           max_length="auto")
    online = make_trainer(_double(tok), dirs["plain"], tok, tmp_path / "on", loss_normalization=normalization,
                          packing=True, max_length=N)
    assert offline.args.padding_free and not offline.args.packing and offline.args.max_length is None
    a, b = offline.train_dataset, online.train_dataset
    assert len(a) == len(b) < len(load_prepared(dirs["plain"]))  # really packed, into the same number of rows
    for col in ("input_ids", "roles", "seq_lengths"):
        assert a[col] == b[col], col
    loss_off, g_off = window(offline, batch_size=len(a), accumulation=1)
    loss_on, g_on = window(online, batch_size=len(b), accumulation=1)
    assert loss_off == pytest.approx(loss_on, rel=0, abs=1e-7)
    assert max_grad_diff(g_off, g_on) < 1e-7


def test_plain_trl_trains_offline_packed_shards_padding_free(tok, tmp_path, dirs):
    """Stock `SFTTrainer` on the packed shards (`padding_free=True`, no max_length) = stock online packing."""
    packed = load_prepared(dirs["packed_im"], tok)
    plain = load_prepared(dirs["plain_im"], tok)
    offline = make_trainer(_double(tok), packed, tok, tmp_path / "off", stock=True, padding_free=True)
    online = make_trainer(_double(tok), plain, tok, tmp_path / "on", stock=True, packing=True, max_length=N)
    assert offline.train_dataset["input_ids"] == online.train_dataset["input_ids"]
    loss_off, g_off = window(offline, batch_size=len(packed), accumulation=1)
    loss_on, g_on = window(online, batch_size=len(packed), accumulation=1)
    assert loss_off == pytest.approx(loss_on, rel=0, abs=1e-7)
    assert max_grad_diff(g_off, g_on) < 1e-7


def test_packing_flag_on_packed_shards_does_not_repack(tok, tmp_path, dirs):
    with pytest.warns(UserWarning, match="already packed"):
        trainer = make_trainer(tiny_llama(tok), dirs["packed"], tok, tmp_path, packing=True, max_length=64)
    assert trainer.train_dataset["seq_lengths"] == load_prepared(dirs["packed"])["seq_lengths"]
