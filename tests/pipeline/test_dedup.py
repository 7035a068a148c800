"""``--dedup exact``: later copies of a normalised conversation are rejected ``duplicate`` naming the example kept
(the first in input order), counted per source, with the same output on Direct and Dask."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_helpers import read_output, run_cli

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "im_data/assets/sample.jsonl"


def _messages(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def test_key_is_the_normalised_conversation():
    from im_data.dedup import conversation_key

    base = conversation_key(_messages("Name a colour.", "Blue."))
    assert conversation_key(_messages("  Name   a\ncolour. ", "Blue.\n")) == base  # whitespace normalised
    assert conversation_key({"instruction": "Name a colour.", "output": "Blue."}) == base  # after conversion
    assert conversation_key({"prompt": "Name a colour.", "completion": "Blue."}) == base
    assert conversation_key({"conversations": [{"from": "human", "value": "Name a colour."},
                                               {"from": "gpt", "value": "Blue."}]}) == base
    assert conversation_key(_messages("Name a colour.", "Red.")) != base
    assert conversation_key(_messages("Name a colour.", "Blue")) != base  # punctuation is content
    assert conversation_key({**_messages("Name a colour.", "Blue."), "tools": [{"name": "t"}]}) != base


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def dup_inputs(tmp_path):
    a = _write(tmp_path / "a.jsonl", [_messages("Name a colour.", "Blue."), _messages("Count to two.", "1, 2."),
                                      _messages("Name  a colour.", " Blue."),  # duplicate of a:0
                                      {"instruction": "Say hi.", "output": "Hi."}])
    b = _write(tmp_path / "b.jsonl", [{"instruction": "Count to two.", "output": "1, 2."},  # duplicate of a:1
                                      _messages("Say hi.", "Hi."),  # duplicate of a:3
                                      _messages("New one.", "Yes."), "not json"])
    return a, b


def test_duplicates_are_rejected_naming_the_first(tmp_path, dup_inputs):
    from im_data.shards import example_id

    a, b = dup_inputs
    assert run_cli("prepare", a, b, "-o", tmp_path / "o", "--dedup", "exact", "-q") == 0
    out = read_output(tmp_path / "o")
    dups = sorted((r for r in out["rejects"] if r["reason"] == "duplicate"), key=lambda r: (r["source"], r["index"]))
    assert [(Path(r["source"]).name, r["index"]) for r in dups] == [("a.jsonl", 2), ("b.jsonl", 0), ("b.jsonl", 1)]
    kept = [(str(a), 0), (str(a), 1), (str(a), 3)]
    for r, (src, idx) in zip(dups, kept):
        assert f"example_id {example_id(src, idx)} ({src} record {idx})" in r["message"]
        assert r["example_id"] == example_id(r["source"], r["index"]) and json.loads(r["raw"])
    assert sorted(r["example_id"] for r in out["rows"]) == sorted(
        [example_id(s, i) for s, i in kept] + [example_id(str(b), 2)])
    c = out["manifest"]["counts"]
    assert c == {"read": 8, "written": 4, "rejected": 4, "truncated": 0,
                 "rejected_by_reason": {"duplicate": 3, "unknown_format": 1}}
    sources = out["stats"]["sources"]
    assert list(sources) == [str(a), str(b)] and sources == out["manifest"]["sources"]
    assert {k: sources[str(a)][k] for k in ("available", "read", "written", "rejected", "rejected_by_reason")} == {
        "available": 4, "read": 4, "written": 3, "rejected": 1, "rejected_by_reason": {"duplicate": 1}}
    assert {k: sources[str(b)][k] for k in ("available", "read", "written", "rejected", "rejected_by_reason")} == {
        "available": 4, "read": 4, "written": 1, "rejected": 3,
        "rejected_by_reason": {"duplicate": 2, "unknown_format": 1}}
    card = (tmp_path / "o" / "README.md").read_text()
    assert f"| `{b}` | all | 4 | 4 | 1 | 3 | duplicate 2, unknown_format 1 | 25.0 % |" in card


def test_kept_rows_are_those_of_a_run_without_dedup(tmp_path, dup_inputs):
    a, b = dup_inputs
    assert run_cli("prepare", a, b, "-o", tmp_path / "dedup", "--dedup", "exact", "-q") == 0
    assert run_cli("prepare", a, b, "-o", tmp_path / "all", "-q") == 0
    deduped, everything = read_output(tmp_path / "dedup"), read_output(tmp_path / "all")
    by_id = {r["example_id"]: r for r in everything["rows"]}
    assert len(everything["rows"]) == 7 and not any(r["reason"] == "duplicate" for r in everything["rejects"])
    assert deduped["rows"] == [by_id[r["example_id"]] for r in deduped["rows"]]


def test_dask_and_direct_dedup_the_same(scheduler_address, tmp_path, dup_inputs):
    a, b = dup_inputs
    inputs = [a, b, SAMPLE, SAMPLE.parent / "sample.jsonl"]
    common = ["--dedup", "exact", "--num-shards", "2", "-q"]
    assert run_cli("prepare", *inputs, "-o", tmp_path / "direct", *common) == 0
    assert run_cli("prepare", *inputs, "-o", tmp_path / "dask", *common, "--runner", "dask",
                   "--dask-address", scheduler_address) == 0
    x, y = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("direct", "dask"))
    assert x["shards"] == y["shards"] and x["counts"] == y["counts"]
    assert read_output(tmp_path / "direct")["stats"] == read_output(tmp_path / "dask")["stats"]
    assert sorted(json.dumps(r, sort_keys=True) for r in read_output(tmp_path / "direct")["rejects"]) == sorted(
        json.dumps(r, sort_keys=True) for r in read_output(tmp_path / "dask")["rejects"])
