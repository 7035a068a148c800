"""Progress of ``prepare``/``audit`` when stderr is not a terminal: plain lines, phases, a final count line.

No timing: only the lines every run prints (start, final counts, phases) are checked, not the periodic ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline_helpers import DATA

REPO = Path(__file__).resolve().parents[2]
BAD = DATA / "bad.jsonl"


def run(tmp_path, *argv) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", IM_DATA_PROGRESS_INTERVAL="0.2")
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, argv)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def ours(stderr: str, label: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{label}: ")]


def test_prepare_plain_progress_lines(tmp_path, bad_expected):
    out = tmp_path / "out"
    proc = run(tmp_path, "prepare", BAD, "-o", out, "--num-shards", "2", "--direct_num_workers", "1")
    assert proc.returncode == 0, proc.stderr
    lines = ours(proc.stderr, "im-data prepare")
    size = BAD.stat().st_size
    assert lines[0] == f"im-data prepare: reading 1 input(s), {size / 1e6:,.1f} MB"
    rejected = sum(1 for r in bad_expected.values() if r != "LONG")
    final = [line for line in lines if line.startswith("im-data prepare: read 100% · ")]
    assert len(final) == 1
    parts = final[0].split(" · ")
    assert parts[1] == "16 records" and parts[-1] == f"{rejected} rejected"
    assert parts[2] == f"{size / 1e6:,.1f} MB of {size / 1e6:,.1f} MB"
    tail = lines[lines.index(final[0]):]
    assert tail[1:] == ["im-data prepare: merging shards", "im-data prepare: 2 shard(s) merged",
                        f"im-data prepare: publishing to {out}"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rejected"] == rejected and manifest["counts"]["read"] == 16
    # the summary names the policy, tokenizer, template and output
    from im_data.roles import ROLE_TABLE

    from pipelines.prepare import describe_policy

    trained = ", ".join(f"{r.name} 1" for r in ROLE_TABLE if r.side != "template")  # im: every non-template role
    assert describe_policy(manifest["policy"]) == f"im ({trained})"
    assert "im (system 1, user 1" in proc.stdout  # the summary table's policy row (it wraps the rest)
    assert "tokenizer" in proc.stdout and "chat template" in proc.stdout and str(out) in proc.stdout
    assert not [line for line in proc.stderr.splitlines() if line.startswith("INFO")]  # no log chatter


def test_quiet_prints_nothing(tmp_path):
    proc = run(tmp_path, "prepare", BAD, "-o", tmp_path / "out", "-q")
    assert proc.returncode == 0, proc.stderr
    assert ours(proc.stderr, "im-data prepare") == [] and proc.stdout == ""


def test_audit_plain_progress_lines(tmp_path):
    proc = run(tmp_path, "audit", BAD, REPO / "tests" / "data" / "sample_alpaca.jsonl")
    assert proc.returncode == 0, proc.stderr
    lines = ours(proc.stderr, "im-data audit")
    assert lines[0].startswith("im-data audit: reading 2 input(s), ")
    final = [line for line in lines if line.startswith("im-data audit: read 100% · ")]
    assert len(final) == 1 and final[0].split(" · ")[1] == "24 records"
    assert lines[-1] == "im-data audit: computing statistics"
