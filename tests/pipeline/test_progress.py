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


def test_encode_step_counts_each_batch_with_its_tokens_once(tmp_path):
    """The encode step reports a batch's records, tokens and rejects when it is done with the batch, in one flush:
    a runner that runs each stage over a whole partition (Dask) shows records only with their tokens, never 100 %
    of the records read at 0 tokens/s."""
    from pipelines.config import PrepareConfig
    from pipelines.encode import _EncodeBatchFn
    from pipelines.options import EncoderOptions
    from pipelines.progress import read_counts
    from pipelines.read import expand_inputs, plan_splits, read_split

    progress = tmp_path / "progress"
    progress.mkdir()
    sources = expand_inputs([str(BAD)])
    config = PrepareConfig(sources=sources, encoder=EncoderOptions().resolved(EncoderOptions().load_tokenizer()),
                           progress_dir=str(progress))
    records = [rec for split in plan_splits(sources, 1 << 62) for rec in read_split(split)]
    batches = [records[i:i + 5] for i in range(0, len(records), 5)]
    fn = _EncodeBatchFn(config)
    fn.setup()
    fn.start_bundle()
    rows_tokens, rejected, seen = 0, 0, []
    for batch in batches:
        for out in fn.process(batch):
            tag = getattr(out, "tag", None)
            rejected += tag == "rejects"
            rows_tokens += len(out.column("input_ids").values) if tag is None else 0
        fn.reporter.flush(force=True)
        seen.append(read_counts(str(progress)))
    for out in fn.finish_bundle():
        value = out.value if getattr(out, "tag", None) else out
        tag = getattr(out, "tag", None)
        rejected += tag == "rejects"
        rows_tokens += len(value.value.column("input_ids").values) if tag is None else 0
    fn.teardown()
    final = read_counts(str(progress))
    assert final["records"] == len(records) == 16
    assert final["bytes"] == sum(len(r.payload) + 1 for r in records)  # each line with its newline
    assert final["tokens"] == rows_tokens > 0 and final["rejected"] == rejected > 0
    # while encoding: the batch in flight is not counted yet; whatever is counted comes with its tokens
    assert [c["records"] for c in seen] == [min(5 * k, 16) for k in range(len(batches))]
    assert all(c["tokens"] > 0 for c in seen if c["records"] > c["rejected"])


def test_dask_progress_counts_each_record_once_and_stays_quiet(tmp_path):
    """--runner dask: each record counted once (Beam's DaskRunner computed the stages shared by several sinks
    once per sink), a real tokens/s, and no worker chatter (apitools warnings, a busy dashboard port) without -v."""
    sample = REPO / "im_data" / "assets" / "sample.jsonl"
    proc = run(tmp_path, "prepare", sample, BAD, "-o", tmp_path / "out", "--runner", "dask", "--dask-workers", "1",
               "--batch-size", "8")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    foreign = [line for line in lines if not line.startswith(("im-data prepare: ", "WARNING im_data.prepare: "))]
    assert foreign == [], "only our own lines on stderr (the 12 rejects of bad.jsonl are our warning)"
    final = [line.split(" · ") for line in lines if line.startswith("im-data prepare: read 100% · ")]
    assert len(final) == 1 and final[0][1] == "96 records", lines  # 80 + 16, not 2× or 3×
    assert int(final[0][3].split()[0].replace(",", "")) > 0  # tokens/s
    for line in lines:  # the periodic lines: records come with their tokens
        if line.startswith("im-data prepare: encoding"):
            parts = line.split(" · ")
            records, rate = (int(parts[i].split()[0].replace(",", "")) for i in (1, 3))
            assert rate > 0 or records == int(parts[4].split()[0]), line
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["read"] == 96
