"""Peak memory of `im-data prepare` on a large hostile input (issue 12: under 1 GB for inputs up to 1 GB).

    python benchmarks/hostile_memory.py [--size-mb 1024] [--dir /tmp/im-data-hostile-memory] [--keep]

Writes about SIZE MB of input made of what used to blow memory up, mixed with good records:

* ``huge_line.jsonl``: single-line records of 48 MB (over the default ``--max-record-bytes`` 16 MiB: too_large);
* ``rejected.jsonl``: 40 % of the size in ~2 KB lines that are all rejected (invalid_json), so that the reject
  files are as large as the input;
* ``long.jsonl``: 20 % in 1 MB records far over ``--max-length 512`` (``--truncation drop``: too_long, rejected
  without tokenizing);
* ``array.json``: 15 % as one JSON array of good records (read element by element);
* ``good.jsonl``: 15 %, good records (``--good-share`` sets the share of these two: 30 % by default).

Then runs ``python -m pipelines prepare`` on it in a subprocess and samples the resident memory of its whole
process tree (psutil, every 0.1 s). Prints one JSON line: input size, wall time, peak RSS and the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20


def _good(i: int) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": f"Question {i}: " + "why is the sky blue? " * 8},
                                    {"role": "assistant", "content": f"Answer {i}: " + "Rayleigh scattering. " * 10}
                                    ]}).encode() + b"\n"


def _fill(path: Path, size: int, line) -> int:
    written, i = 0, 0
    with open(path, "wb") as f:
        while written < size:
            data = line(i)
            f.write(data)
            written += len(data)
            i += 1
    return i


def build_input(root: Path, size: int, good_share: float = 0.3) -> dict[str, int]:
    root.mkdir(parents=True, exist_ok=True)
    counts = {}
    huge = b'{"messages": [{"role": "user", "content": "' + b"x" * (48 * MB) + b'"}, {"role": "assistant", ' \
           b'"content": "y"}]}\n'
    n_huge = max(1, int(size * 0.1) // len(huge))
    counts["huge_line.jsonl"] = _fill(root / "huge_line.jsonl", n_huge * len(huge), lambda i: huge)
    bad = b'{"messages": [{"role": "user", "content": "' + b"z" * 2000 + b'"}], "score": NaN}\n'
    counts["rejected.jsonl"] = _fill(root / "rejected.jsonl", int(size * 0.4), lambda i: bad)
    long = json.dumps({"messages": [{"role": "user", "content": "long words " * (MB // 11)},
                                    {"role": "assistant", "content": "ok"}]}).encode() + b"\n"
    counts["long.jsonl"] = _fill(root / "long.jsonl", int(size * 0.2), lambda i: long)
    n = 0
    with open(root / "array.json", "wb") as f:
        f.write(b"[")
        written = 0
        while written < size * good_share / 2:
            data = (b"," if n else b"") + _good(n).rstrip(b"\n")
            f.write(data)
            written += len(data)
            n += 1
        f.write(b"]")
    counts["array.json"] = n
    counts["good.jsonl"] = _fill(root / "good.jsonl", int(size * good_share / 2), _good)
    return counts


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(root: Path, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pipelines", "prepare", str(root / "*.jsonl"), str(root / "array.json"),
           "-o", str(out), "--max-length", "512", "--truncation", "drop", "-q", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    ps = psutil.Process(proc.pid)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(ps))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    sampler.join()
    return {"rc": rc, "wall_s": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peak[0] / MB, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--dir", default="/tmp/im-data-hostile-memory")
    ap.add_argument("--good-share", type=float, default=0.3,
                    help="share of the size in good records, half in array.json, half in good.jsonl (default 0.3; "
                         "encoding them is what takes the time)")
    ap.add_argument("--keep", action="store_true", help="keep the input and output")
    ap.add_argument("beam_args", nargs="*", help="extra flags for prepare (e.g. Beam options)")
    args = ap.parse_args()
    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    counts = build_input(root / "in", args.size_mb * MB, args.good_share)
    size = sum(f.stat().st_size for f in (root / "in").iterdir())
    result = run(root / "in", root / "out", args.beam_args)
    manifest = json.loads((root / "out" / "manifest.json").read_text()) if result["rc"] == 0 else {}
    reject_bytes = sum(f.stat().st_size for f in (root / "out" / "rejects").glob("*.jsonl")) if manifest else 0
    print(json.dumps({"input_mb": round(size / MB, 1), "records": counts, **result,
                      "counts": manifest.get("counts"), "reject_files_mb": round(reject_bytes / MB, 1)}))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
