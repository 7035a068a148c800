"""Peak memory of `im-data prepare` on ONE big kept record, against a one-line input (issue 20, item 12).

    python benchmarks/big_record_memory.py [--size-mb 15] [-- PREPARE FLAGS]

Writes a single JSONL record whose user message is ``"word " * N`` (about SIZE MB, ~SIZE/5 M tokens with the
embedded tokenizer) and a one-line input, runs the whole ``python -m pipelines.cli prepare ... -q`` process on
each (peak RSS from ``os.wait4``) and prints one JSON line: sizes, seconds, peak RSS and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(path: Path, out: Path, flags: list[str]) -> dict:
    argv = [sys.executable, "-m", "pipelines.cli", "prepare", str(path), "-o", str(out), "--overwrite", "-q", *flags]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"prepare failed: {proc.stderr.read().decode(errors='replace')[-2000:]}")
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    return {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "written": counts["written"], "rejected": counts["rejected"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=15.0)
    ap.add_argument("prepare_flags", nargs="*", help="extra flags for prepare (after --)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="im-data-big-record-") as tmp:
        tmp = Path(tmp)
        words = int(args.size_mb * 1e6 / 5)
        big, small = tmp / "big.jsonl", tmp / "small.jsonl"
        for path, n in ((big, words), (small, 4)):
            rec = {"messages": [{"role": "user", "content": "word " * n}, {"role": "assistant", "content": "ok"}]}
            path.write_text(json.dumps(rec) + "\n")
        report = {"record_mb": round(big.stat().st_size / 1e6, 2),
                  "small": run(small, tmp / "o1", args.prepare_flags), "big": run(big, tmp / "o2", args.prepare_flags)}
    report["peak_rss_ratio_big_over_small"] = round(report["big"]["peak_rss_mib"] / report["small"]["peak_rss_mib"], 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
