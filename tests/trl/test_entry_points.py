"""The weights in any trainer: `WeightedSFTTrainer` (TRL), `WeightedTrainer` (a `transformers.Trainer`) and a bare
PyTorch loop over `im_data.torch_data` give the same loss and gradients for the same batch (float64), and gradient
accumulation and 2 processes (gloo on CPU) give what one big batch gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_llama
from helpers import BASE_ARGS, make_trainer, max_grad_diff, window
from im_data.hf_trainer import WeightedTrainer
from im_data.loss import WeightedLMLoss, target_log_probs, weighted_lm_loss, window_normalizer
from im_data.policy import WeightPolicy
from im_data.torch_data import PreparedIterableDataset, PreparedMapDataset, WeightedCollator
from shard_fixture import write_shard_dir
from trl_plugin import load_prepared

REPO = Path(__file__).resolve().parents[2]
NORMALIZATIONS = ("weight", "tokens", "sequence")


@pytest.fixture(scope="module")
def wit_dir(tmp_path_factory, tok):
    """Fractional weights (WIT 0.3 / 1.0), so that the three normalisers really differ; 2 shards of 4 rows."""
    return write_shard_dir(tmp_path_factory.mktemp("wit"), tok, policy=WeightPolicy.wit(0.3, 1.0), n=8)


def model64(tok):
    return tiny_llama(tok).double()


def grads_of(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def bare_loop_window(model, batches, normalization, fused: bool = False):
    """One optimizer window of a hand-written loop: the window normaliser first, then forward/backward per
    micro-batch. ``fused``: the loss from TRL's fused LM head's log-probs instead of the logits."""
    model.zero_grad(set_to_none=True)
    norm = window_normalizer(batches, normalization)
    total = 0.0
    for batch in batches:
        # use_cache=False: with a cache, transformers does not read packed documents from position_ids
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
        inputs["use_cache"] = False
        if fused:
            log_probs = model(**inputs, labels=batch["labels"], fused_lm_head=True).log_probs
            loss = weighted_lm_loss(batch, log_probs=log_probs, normalization=normalization, num_items=norm)
        else:
            loss = weighted_lm_loss(batch, logits=model(**inputs).logits, normalization=normalization,
                                    num_items=norm)
        loss.backward()
        total += loss.item()
    return total, grads_of(model)


def micro_batches(data, collator, size: int, count: int):
    return [collator([data[i] for i in range(j * size, (j + 1) * size)]) for j in range(count)]


def hf_trainer(model, data, tok, tmp_path, normalization):
    from transformers import TrainingArguments

    args = TrainingArguments(str(tmp_path / "hf"), **{k: v for k, v in BASE_ARGS.items()
                                                       if k not in ("max_length", "dataset_num_proc")})
    return WeightedTrainer(model, args=args, train_dataset=data, loss_normalization=normalization,
                           data_collator=WeightedCollator(pad_token_id=tok.pad_token_id))


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_the_three_entry_points_agree(tok, tmp_path, wit_dir, normalization):
    data = PreparedMapDataset(wit_dir)
    trl = make_trainer(model64(tok), load_prepared(wit_dir, tok), tok, tmp_path, loss_normalization=normalization)
    loss_trl, g_trl = window(trl, batch_size=4, accumulation=2)
    hf = hf_trainer(model64(tok), data, tok, tmp_path, normalization)
    loss_hf, g_hf = window(hf, batch_size=4, accumulation=2)
    batches = micro_batches(data, WeightedCollator(pad_token_id=tok.pad_token_id), 4, 2)
    loss_bare, g_bare = bare_loop_window(model64(tok), batches, normalization)

    # the Trainer and the bare loop share the logits path: float64 throughout
    assert loss_hf == pytest.approx(loss_bare, abs=1e-12)
    assert max_grad_diff(g_hf, g_bare) < 1e-12
    # TRL's fused LM head computes its log-softmax in float32 even for a float64 model: the same loss and
    # gradients to float32 precision (loss ~8: relative 1e-7; gradients: absolute 1e-7)
    assert loss_trl == pytest.approx(loss_bare, rel=1e-7)
    assert max_grad_diff(g_trl, g_bare) < 1e-7
    # ... and bit for bit the same computation when the bare loop reads the same fused head's log-probs
    from trl.trainer.utils import add_fused_lm_head

    fused = model64(tok)
    add_fused_lm_head(fused)
    loss_fused, g_fused = bare_loop_window(fused, batches, normalization, fused=True)
    assert loss_fused == pytest.approx(loss_trl, abs=1e-12)
    assert max_grad_diff(g_fused, g_trl) < 1e-12


def _reference_window_loss(model, rows, normalization) -> float:
    """Σ w·nll over documents, normalised as documented, one example at a time, from plain cross-entropy."""
    num = den = 0.0
    per_doc = []
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor(row["input_ids"], dtype=torch.long)[None]
            w = torch.tensor(row["loss_weights"], dtype=torch.float64)[1:]
            nll = torch.nn.functional.cross_entropy(model(input_ids=ids).logits[0, :-1], ids[0, 1:],
                                                    reduction="none")
            if normalization == "sequence":
                per_doc.append(float((w * nll).sum() / w.sum()))
            else:
                num += float((w * nll).sum())
                den += float(w.sum() if normalization == "weight" else (w > 0).sum())
    return sum(per_doc) / len(per_doc) if normalization == "sequence" else num / den


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_bare_loop_accumulation_and_packing_equal_one_big_batch(tok, wit_dir, normalization):
    data = PreparedMapDataset(wit_dir)
    padded = WeightedCollator(pad_token_id=tok.pad_token_id)
    packed = WeightedCollator(pad_token_id=tok.pad_token_id, padding_free=True)
    model = model64(tok)
    loss_big, g_big = bare_loop_window(model, micro_batches(data, padded, 8, 1), normalization)
    for collator, size, count in ((padded, 4, 2), (padded, 1, 8), (packed, 8, 1), (packed, 2, 4)):
        loss, g = bare_loop_window(model, micro_batches(data, collator, size, count), normalization)
        assert loss == pytest.approx(loss_big, abs=1e-10), (collator.padding_free, size)
        assert max_grad_diff(g, g_big) < 1e-10, (collator.padding_free, size)
    assert loss_big == pytest.approx(_reference_window_loss(model, [data[i] for i in range(8)], normalization),
                                     abs=1e-10)


def test_hf_trainer_accumulation_equals_one_big_batch_and_trains(tok, tmp_path, wit_dir):
    data = PreparedMapDataset(wit_dir)
    big = hf_trainer(model64(tok), data, tok, tmp_path, "sequence")
    loss_big, g_big = window(big, batch_size=8, accumulation=1)
    small = hf_trainer(model64(tok), data, tok, tmp_path, "sequence")
    loss_small, g_small = window(small, batch_size=2, accumulation=4)
    assert loss_small == pytest.approx(loss_big, abs=1e-10)
    assert max_grad_diff(g_small, g_big) < 1e-10
    # a real run: loss goes down, the segment metrics are logged
    trainer = WeightedTrainer(tiny_llama(tok), args=big.args, train_dataset=data, segment_metrics=True,
                              data_collator=WeightedCollator(pad_token_id=tok.pad_token_id))
    trainer.args.max_steps, trainer.args.per_device_train_batch_size, trainer.args.learning_rate = 12, 4, 3e-3
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    assert logs[-1]["loss"] < logs[0]["loss"] - 0.5
    assert {"loss_instruction", "loss_output"} <= logs[0].keys()


def test_segment_metrics_of_the_loss_module(tok, wit_dir):
    """`WeightedLMLoss(segment_metrics=True)` reports the unweighted mean NLL of each side's tokens."""
    data = PreparedMapDataset(wit_dir)
    batch = WeightedCollator(pad_token_id=tok.pad_token_id)([data[i] for i in range(8)])
    model = model64(tok)
    loss_fn = WeightedLMLoss("weight", segment_metrics=True)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = loss_fn(batch, logits=logits)
        full = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        nll = -target_log_probs(logits, full)
    metrics = loss_fn.metrics.compute()
    roles = batch["roles"][:, 1:]
    for side, codes in (("instruction", (1, 2, 3)), ("output", (4, 6, 7))):
        mask = torch.isin(roles, torch.tensor(codes))
        assert metrics[f"loss_{side}"] == pytest.approx(float(nll[mask].mean()), rel=1e-6)  # float32 accumulators
    assert float(loss) == pytest.approx(_reference_window_loss(model, [data[i] for i in range(8)], "weight"),
                                        abs=1e-10)
    assert loss_fn.metrics.compute() == {}  # reset after compute


_WORKER = """
import json, os, sys
import torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from conftest import tiny_llama
from im_data.loss import weighted_lm_loss, window_normalizer
from im_data.tokenizer import load_tokenizer
from im_data.torch_data import PreparedIterableDataset, WeightedCollator

def main(rank, world, data, out, port, normalization):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    tok = load_tokenizer(None)
    model = torch.nn.parallel.DistributedDataParallel(tiny_llama(tok).double())
    loader = torch.utils.data.DataLoader(PreparedIterableDataset(data), batch_size=2,
                                         collate_fn=WeightedCollator(pad_token_id=tok.pad_token_id))
    batches = list(loader)  # this rank's 4 rows, as 2 micro-batches of 2: one window
    norm = window_normalizer(batches, normalization)  # all-reduced over the 2 ranks
    total = torch.zeros((), dtype=torch.float64)
    for i, batch in enumerate(batches):
        ctx = model.no_sync() if i < len(batches) - 1 else torch.enable_grad()
        with ctx:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = weighted_lm_loss(batch, logits=logits, normalization=normalization, num_items=norm)
            (loss * world).backward()  # DDP averages the gradients over ranks
        total += loss.detach()
    dist.all_reduce(total)
    if rank == 0:
        grads = {{n: p.grad.tolist() for n, p in model.module.named_parameters()}}
        json.dump({{"loss": float(total), "grads": grads}}, open(out, "w"))
    dist.destroy_process_group()

if __name__ == "__main__":
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    torch.multiprocessing.spawn(main, args=(2, sys.argv[1], sys.argv[2], port, sys.argv[3]), nprocs=2)
"""


@pytest.mark.parametrize("normalization", ["weight", "sequence"])
def test_two_processes_equal_one_big_batch(tok, tmp_path, wit_dir, normalization):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(tests=str(Path(__file__).resolve().parent)))
    out = tmp_path / "rank0.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(wit_dir), str(out), normalization], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    # one process, one batch of all 8 rows
    data = PreparedMapDataset(wit_dir)
    loss_big, g_big = bare_loop_window(model64(tok), micro_batches(data, WeightedCollator(
        pad_token_id=tok.pad_token_id), 8, 1), normalization)
    assert got["loss"] == pytest.approx(loss_big, abs=1e-10)
    assert max_grad_diff({k: torch.tensor(v, dtype=torch.float64) for k, v in got["grads"].items()}, g_big) < 1e-10
    # the two ranks read disjoint halves of the split
    halves = [[tuple(r["input_ids"]) for r in PreparedIterableDataset(wit_dir, rank=r, world_size=2)]
              for r in (0, 1)]
    assert len(halves[0]) == len(halves[1]) == 4 and not set(halves[0]) & set(halves[1])
