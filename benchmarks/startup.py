"""Start-up time of the commands a newcomer runs first, against their targets, measured in one run.

    python benchmarks/startup.py [--repeat 5] [--json]

Each command runs in a fresh process (what a user waits for, interpreter start included), the commands
interleaved round by round so that machine load hits them alike; the best of ``--repeat`` rounds counts.

* ``im-data inspect ONE.jsonl`` (one JSONL example, the embedded tokenizer): target <= 1.5 s.
* ``im-data --help``: reported (no target of its own; it must not import Beam or torch).
* ``im-sft --help`` against ``trl sft --help`` in the same run: target: no slower.

The commands run as their console scripts do (``from pipelines.cli import main; main()``), from this checkout;
``trl`` is the installed one. Exit status 1 when a target is missed.
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
RECORD = {"messages": [{"role": "user", "content": "Name three primary colours."},
                       {"role": "assistant", "content": "Red, yellow and blue."}]}
INSPECT_TARGET_S = 1.5


def entry_point(module: str, prog: str, *args: str) -> list[str]:
    """What a console script runs: ``from MODULE import main; sys.exit(main())``."""
    code = f"import sys; from {module} import main; sys.argv[0] = {prog!r}; sys.exit(main())"
    return [sys.executable, "-c", code, *args]


def commands(example: Path) -> dict[str, list[str]]:
    return {
        "im-data inspect (1 example)": entry_point("pipelines.cli", "im-data", "inspect", str(example), "--tokens"),
        "im-data --help": entry_point("pipelines.cli", "im-data", "--help"),
        "im-sft --help": entry_point("trl_plugin.cli", "im-sft", "--help"),
        "trl sft --help": entry_point("trl.cli", "trl", "sft", "--help"),
    }


def time_once(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="rounds; the best of them counts (default: 5)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object (default: a table)")
    args = ap.parse_args(argv)

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        example = Path(tmp) / "one.jsonl"
        example.write_text(json.dumps(RECORD) + "\n")
        cmds = commands(example)
        for cmd in cmds.values():  # warm the file cache; not counted
            time_once(cmd, env, Path(tmp))
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(max(args.repeat, 1)):
            for name, cmd in cmds.items():
                times[name].append(time_once(cmd, env, Path(tmp)))
    best = {name: min(ts) for name, ts in times.items()}
    checks = {
        "inspect <= 1.5 s": best["im-data inspect (1 example)"] <= INSPECT_TARGET_S,
        "im-sft --help <= trl sft --help": best["im-sft --help"] <= best["trl sft --help"],
    }
    if args.json:
        print(json.dumps({"best_s": {k: round(v, 3) for k, v in best.items()}, "targets_met": checks,
                          "repeat": args.repeat, "cpus": os.cpu_count(), "load_avg": os.getloadavg()}))
    else:
        print(f"best of {args.repeat} rounds (load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")
        for name, value in best.items():
            print(f"  {name:<30} {value:6.2f} s   (median {sorted(times[name])[len(times[name]) // 2]:.2f} s)")
        ratio = best["im-sft --help"] / best["trl sft --help"]
        print(f"  im-sft --help / trl sft --help = {ratio:.2f} (target <= 1.00)")
        for name, ok in checks.items():
            print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
