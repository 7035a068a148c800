"""Overhead of `WeightedSFTTrainer` over stock `SFTTrainer`: time per optimizer step and peak memory.

Same random Llama built from a config, same prepared data (`im-data prepare --mode im` on the embedded sample data,
or the test fixture's toy shards when the pipeline is not importable), same batches. Configurations:

- ``stock``: `trl.SFTTrainer` (trains on `labels`);
- ``weighted``: `WeightedSFTTrainer`, `segment_metrics="none"` (the number the targets apply to);
- ``weighted+seg``: `WeightedSFTTrainer`, `segment_metrics="all"` (loss_instruction / loss_output every step).

Time: the three trainers are built once in one process and trained in short interleaved runs (stock, weighted,
weighted+seg, stock, ...), ``--repeats`` runs of ``--warmup + --steps`` steps each; the table gives the median and the
minimum step time over all timed steps (the minimum is the least disturbed by other load on the machine). Memory:
one more optimizer step per (warmed-up) trainer: on CUDA the growth of `torch.cuda.max_memory_allocated`, on CPU the
peak of live tensor bytes tracked by `torch.distributed._tools.mem_tracker.MemTracker` (CPU RSS is too noisy to
resolve 2%).

    python benchmarks/train_overhead.py                       # defaults below
    python benchmarks/train_overhead.py --hidden 64 --layers 2 --steps 30 --batch 8 --packing
    # smoke run on CPU (about a minute; checks that it runs, its timings mean nothing):
    python benchmarks/train_overhead.py --device cpu --hidden 32 --layers 1 --steps 2 --warmup 1 --repeats 1 \
        --batch 2 --max_length 128

The weighted loss itself lives in `im_data.loss` (plain PyTorch); `WeightedSFTTrainer` calls it inside TRL's fused
LM head path, so what this measures is unchanged by that move.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("CI", "1")
CONFIGS = ("stock", "weighted", "weighted+seg")


def prepare_data(root: Path) -> Path:
    out = root / "im"
    if (out / "manifest.json").is_file():
        return out
    try:
        subprocess.run([sys.executable, "-m", "pipelines", "prepare", "--output", str(out), "--mode", "im", "-q"],
                       cwd=REPO, check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    except (subprocess.CalledProcessError, FileNotFoundError):
        sys.path.insert(0, str(REPO / "tests" / "trl"))
        from shard_fixture import write_shard_dir  # test fixture fallback

        from im_data.tokenizer import load_tokenizer

        write_shard_dir(out, load_tokenizer(None), mode="im", n=80, num_shards=1)
    return out


def build(config: str, data: Path, opts, out_dir: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from im_data.tokenizer import load_tokenizer
    from trl_plugin import WeightedSFTConfig, WeightedSFTTrainer, load_prepared

    tok = load_tokenizer(None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=opts.hidden, num_hidden_layers=opts.layers,
        num_attention_heads=max(2, opts.hidden // 32), num_key_value_heads=max(1, opts.hidden // 64),
        intermediate_size=opts.hidden * 2, max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    dataset = load_prepared(data, tok)
    common = dict(output_dir=out_dir, report_to="none", save_strategy="no", max_steps=opts.warmup + opts.steps,
                  per_device_train_batch_size=opts.batch, gradient_accumulation_steps=opts.accum,
                  logging_steps=10**9, gradient_checkpointing=False, disable_tqdm=True, seed=0,
                  max_length=opts.max_length, packing=opts.packing, use_cpu=opts.device == "cpu" or not torch.cuda.is_available(),
                  dataloader_num_workers=0)
    if config == "stock":
        trainer = SFTTrainer(model, args=SFTConfig(**common), train_dataset=dataset, processing_class=tok)
    else:
        seg = "all" if config == "weighted+seg" else "none"
        trainer = WeightedSFTTrainer(model, args=WeightedSFTConfig(**common, segment_metrics=seg),
                                     train_dataset=dataset, processing_class=tok)

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self._t = [], None

        def _sync(self):
            if torch.cuda.is_available() and opts.device != "cpu":
                torch.cuda.synchronize()

        def on_step_begin(self, *args, **kwargs):
            self._sync()
            self._t = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            self._sync()
            self.times.append(time.perf_counter() - self._t)

    timer = Timer()
    trainer.add_callback(timer)
    return trainer, timer


def measure_memory(trainers: dict, opts) -> dict[str, int]:
    """Peak tensor memory of one optimizer step (forward, backward, optimizer) of each warmed-up trainer.

    CUDA: growth of `torch.cuda.max_memory_allocated`. CPU: PyTorch keeps no CPU allocator statistics, so the peak of
    live tensor bytes is tracked with `torch.distributed._tools.mem_tracker.MemTracker` (exact and deterministic,
    unlike RSS)."""
    import torch

    peaks = {}
    for config, (trainer, _) in trainers.items():
        trainer.args.max_steps = opts.accum and 1
        cuda = torch.cuda.is_available() and opts.device != "cpu"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            trainer.train()
            peaks[config] = torch.cuda.max_memory_allocated() - base
        else:
            from torch.distributed._tools.mem_tracker import MemTracker

            tracker = MemTracker()
            with tracker:
                trainer.train()
            snapshot = tracker.get_tracker_snapshot("peak")
            peaks[config] = int(sum(v.get("Total", 0) for v in snapshot.values()))
    return peaks


def time_steps(opts, data: Path):
    """Step times of the three configurations, interleaved in short `train()` runs (fair under noisy load)."""
    trainers = {}
    tmp = tempfile.mkdtemp()
    for config in CONFIGS:
        trainers[config] = build(config, data, opts, os.path.join(tmp, config.replace("+", "_")))
    times = {c: [] for c in CONFIGS}
    for _ in range(opts.repeats):
        for config in CONFIGS:
            trainer, timer = trainers[config]
            timer.times.clear()
            trainer.train()
            times[config] += timer.times[opts.warmup:]
    return times, trainers


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--max_length", type=int, default=1024)
    parser.add_argument("--packing", action="store_true")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=["auto", "cpu"], default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch default)")
    parser.add_argument("--data", type=Path, default=None, help="a prepared directory (default: prepare one)")
    opts = parser.parse_args(argv)

    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = opts.data or prepare_data(Path(tmp))
        times, trainers = time_steps(opts, data)
        memory = measure_memory(trainers, opts)

    import torch

    step = {c: statistics.median(v) for c, v in times.items()}
    best = {c: min(v) for c, v in times.items()}
    print("command: python benchmarks/train_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, model hidden={opts.hidden} "
          f"layers={opts.layers}, batch={opts.batch}x{opts.accum}, packing={opts.packing}, "
          f"{opts.steps} timed steps (+{opts.warmup} warmup) x {opts.repeats} interleaved runs per config")
    kind = ("CUDA max_memory_allocated growth" if torch.cuda.is_available() and opts.device != "cpu"
            else "peak live CPU tensor bytes (MemTracker)")
    print(f"memory: {kind}, one optimizer step after warm-up")
    print(f"{'config':<14}{'median ms':>10}{'x stock':>9}{'min ms':>9}{'x stock':>9}{'peak MiB':>10}{'x stock':>9}")
    for c in CONFIGS:
        mem = memory[c] / 2**20
        print(f"{c:<14}{step[c] * 1e3:>10.2f}{step[c] / step['stock']:>9.3f}{best[c] * 1e3:>9.2f}"
              f"{best[c] / best['stock']:>9.3f}{mem:>10.1f}"
              f"{memory[c] / max(memory['stock'], 1):>9.4f}")


if __name__ == "__main__":
    main()
