"""`im-data audit` end to end: terminal table, report files, shard directories, grouping, bad input."""

from __future__ import annotations

import gzip
import json
import re
import shutil

import pytest
from rich.cells import cell_len

from im_data import LengthStats
from im_data.recommend import recommend

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_two_inputs_side_by_side_with_report(cli, data_dir, sample_data, tmp_path):
    report = tmp_path / "report"
    r = cli("audit", sample_data, data_dir / "sample_alpaca.jsonl", "--chat-template", "tulu", "--report", report,
            width=100)
    assert r.code == 0, r
    # terminal: one row per dataset, fits the width, cites the fits
    lines = r.out.splitlines()
    assert max(cell_len(line) for line in lines) <= 100
    assert sum(1 for line in lines if line.startswith("│ sample ")) == 2          # once per table
    assert sum(1 for line in lines if line.startswith("│ sample_alpaca ")) == 2
    text = " ".join(r.out.split())
    assert "18.85·ln(ratio) + 25.83" in text and "-39.37·ln(n) + 431.74" in text
    assert "Llama-2-7B" in text and "a guide, not a promise" in text
    # report files
    doc = json.loads((report / "stats.json").read_text())
    assert [d["name"] for d in doc["datasets"]] == ["sample", "sample_alpaca"]
    schema_keys = set(LengthStats().to_dict())
    for d in doc["datasets"]:
        assert schema_keys <= set(d)
        rec = d["recommendation"]
        assert rec["decision"] in ("im", "it", "neutral")
        assert rec == recommend(d["dataset_ratio"], d["count"]).to_dict()
        assert LengthStats.from_dict(d).dataset_ratio == pytest.approx(d["dataset_ratio"])
        assert d["read"] == d["count"] + d["rejected"]["count"]
    for png in ("ratio_hist.png", "lengths.png"):
        data = (report / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 20_000
    md = (report / "report.md").read_text()
    assert "![" in md and "(ratio_hist.png)" in md and "(lengths.png)" in md
    assert re.search(r"^\| dataset \| examples \|", md, re.M)
    assert re.search(r"^\| sample_alpaca \| 8 \|", md, re.M)


def test_single_dataset_stats_json_is_prepare_schema(cli, data_dir, tmp_path):
    r = cli("audit", data_dir / "sample_sharegpt.jsonl", "--report", tmp_path, "--max-length", "40")
    assert r.code == 0, r
    d = json.loads((tmp_path / "stats.json").read_text())
    assert set(LengthStats().to_dict()) <= set(d)
    assert d["name"] == "sample_sharegpt" and "recommendation" in d
    assert d["max_length"] == 40 and d["truncated"] > 0
    assert f"{d['truncated'] / d['count']:.1%}" in r.out


def test_shard_directory_matches_raw_input(cli, shard_dir, sample_data, tmp_path):
    r = cli("audit", shard_dir, sample_data, "--chat-template", "tulu", "--input-name", "prepared",
            "--input-name", "raw", "--report", tmp_path, width=200)
    assert r.code == 0, r
    prepared, raw = json.loads((tmp_path / "stats.json").read_text())["datasets"]
    assert (prepared["name"], raw["name"]) == ("prepared", "raw")
    for key in ("count", "dataset_ratio", "instruction_tokens", "output_tokens", "tokens_per_role",
                "ratio_quantiles", "ratio_histogram", "weight_mass_share"):
        assert prepared[key] == raw[key], key
    # the shard directory carries its WIT(0.2) weights; the raw audit encodes under IM
    wm = prepared["weight_mass_per_role"]
    assert wm["user"] == pytest.approx(0.2 * prepared["tokens_per_role"]["user"], rel=1e-5)
    assert raw["weight_mass_per_role"]["user"] == raw["tokens_per_role"]["user"]
    # stats.json of `prepare` and of the audit agree on the dataset ratio
    prep_stats = json.loads((shard_dir / "stats.json").read_text())
    assert prep_stats["dataset_ratio"] == pytest.approx(prepared["dataset_ratio"])


def test_same_label_merges_inputs(cli, data_dir, tmp_path):
    a, b = data_dir / "sample_alpaca.jsonl", data_dir / "sample_prompt_completion.jsonl"
    r = cli("audit", a, b, "--input-name", "mix", "--input-name", "mix", "--report", tmp_path)
    assert r.code == 0, r
    d = json.loads((tmp_path / "stats.json").read_text())
    assert d["name"] == "mix"
    n = sum(1 for p in (a, b) for line in p.read_text().splitlines() if line.strip())
    assert d["read"] == n


def test_rejected_records_are_reported(cli, data_dir, tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = (data_dir / "sample_alpaca.jsonl").read_text()
    path.write_text(good + "not json\n" + json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    r = cli("audit", path, "--report", tmp_path / "rep")
    assert r.code == 0, r
    d = json.loads((tmp_path / "rep" / "stats.json").read_text())
    assert d["rejected"] == {"count": 2, "by_reason": {"invalid_json": 1, "no_assistant_turn": 1}}
    assert "2 of 10 records rejected" in " ".join(r.out.split())


def _bad(tmp_path, kind):
    if kind == "missing":
        return [tmp_path / "nope.jsonl"]
    if kind == "empty":
        p = tmp_path / "empty.jsonl"
        p.write_text("")
        return [p]
    if kind == "all_rejected":
        p = tmp_path / "garbage.jsonl"
        p.write_bytes(b"\x00\xff\xfe binary\n{not json}\n")
        return [p]
    if kind == "corrupt_gzip":
        p = tmp_path / "broken.jsonl.gz"
        p.write_bytes(gzip.compress(b'{"prompt": "a", "completion": "b"}\n' * 50)[:30])
        return [p]
    if kind == "unknown_type":
        p = tmp_path / "data.csv"
        p.write_text("a,b\n")
        return [p]
    if kind == "no_manifest":
        d = tmp_path / "half-prepared"
        (d / "shards").mkdir(parents=True)
        return [d]
    if kind == "input_name_count":
        return [tmp_path / "x.jsonl", tmp_path / "y.jsonl", "--input-name", "one"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, message", [
    ("missing", "no such file"),
    ("empty", "is empty"),
    ("all_rejected", "all rejected (invalid_json: 2)"),
    ("corrupt_gzip", "unreadable input"),
    ("unknown_type", "unknown input type"),
    ("no_manifest", "no manifest.json"),
    ("input_name_count", "one label per INPUT"),
])
def test_bad_input_is_one_line_and_exit_2(cli, error_lines, tmp_path, kind, message):
    r = cli("audit", *_bad(tmp_path, kind))
    assert r.code == 2, r
    ours = error_lines(r)
    assert len(ours) == 1 and ours[0].startswith("im-data audit: error: ") and message in ours[0], r
    assert "Traceback" not in r.err
    assert r.out == ""


def test_shard_dir_with_manifest_removed(cli, error_lines, shard_dir, tmp_path):
    broken = tmp_path / "copy"
    shutil.copytree(shard_dir, broken)
    (broken / "manifest.json").unlink()
    r = cli("audit", broken)
    assert r.code == 2 and "no manifest.json" in error_lines(r)[0], r


@pytest.mark.shared_data
def test_paper_ratios_on_shared_data(cli, shared_data_dir, deepseek_dir, tmp_path):
    """Figure 2 of the paper: LIMA 0.094, Alpagasus-Dolly-3k 0.643, Alpagasus-Claude-t45-Alpaca 0.566."""
    paper = {"lima_data": 0.094, "alpagasus_3k_dolly": 0.643, "alpagasus_claude_t45_alpaca": 0.566}
    r = cli("audit", *(shared_data_dir / f"{name}.jsonl" for name in paper), "--tokenizer", deepseek_dir,
            "--chat-template", "tulu", "--report", tmp_path, width=220)
    assert r.code == 0, r
    docs = {d["name"]: d for d in json.loads((tmp_path / "stats.json").read_text())["datasets"]}
    for name, expected in paper.items():
        assert docs[name]["dataset_ratio"] == pytest.approx(expected, rel=0.04), name
    assert [docs[n]["recommendation"]["decision"] for n in paper] == ["it", "im", "im"]
    assert docs["lima_data"]["count"] == 1030 and docs["alpagasus_3k_dolly"]["count"] == 2996
