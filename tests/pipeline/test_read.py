"""Readers: input specs, splits and every input kind, without running a pipeline."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from im_data import RecordError
from pipelines.read import InputError, Source, expand_inputs, plan_splits, read_split


def read_all(sources, split_bytes=1 << 20):
    return [r for s in plan_splits(tuple(sources), split_bytes) for r in read_split(s)]


def test_missing_inputs_fail_up_front(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        expand_inputs([str(tmp_path / "missing.jsonl")])
    with pytest.raises(InputError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.jsonl")])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="unknown input type"):
        expand_inputs([str(tmp_path / "notes.txt")])
    (tmp_path / "plain_dir").mkdir()
    with pytest.raises(InputError, match="save_to_disk"):
        expand_inputs([str(tmp_path / "plain_dir")])


def test_globs_hub_names_and_duplicates(tmp_path):
    for name in ("b.jsonl", "a.jsonl", "c.txt"):
        (tmp_path / name).write_text("{}\n")
    sources = expand_inputs([str(tmp_path / "*"), str(tmp_path / "a.jsonl"), "hf:tatsu-lab/alpaca:train",
                             "HuggingFaceH4/no_robots"])
    assert [s.kind for s in sources] == ["jsonl", "jsonl", "hub", "hub"]  # c.txt skipped, a.jsonl once
    assert sources[0].path.endswith("a.jsonl")
    assert sources[2].path == "tatsu-lab/alpaca" and sources[3].split == "train"


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.sampled_from([b'{"a": 1}', b"", b"x" * 37, b"\xff\xfe", b"   "]), max_size=40),
       trailing_newline=st.booleans(), split_bytes=st.integers(1, 64))
def test_jsonl_splits_cover_every_line_once_with_its_index(tmp_path_factory, lines, trailing_newline, split_bytes):
    path = tmp_path_factory.mktemp("split") / "f.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if trailing_newline and lines else b""))
    src = expand_inputs([str(path)])
    got = [(r.index, r.payload) for r in read_all(src, split_bytes)]
    expected = [(i, line) for i, line in enumerate(lines) if line.strip()]
    assert got == expected


def test_gzip_json_array_and_jsonl_in_json(tmp_path):
    recs = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            for i in range(3)]
    with gzip.open(tmp_path / "a.jsonl.gz", "wb") as f:
        f.write(b"\n".join(json.dumps(r).encode() for r in recs) + b"\n")
    (tmp_path / "b.json").write_text(json.dumps(recs))
    (tmp_path / "c.json").write_text("\n".join(json.dumps(r) for r in recs))
    (tmp_path / "d.json").write_text('[{"messages": ')
    got = read_all(expand_inputs([str(tmp_path / n) for n in ("a.jsonl.gz", "b.json", "c.json", "d.json")]))
    by_src = {}
    for r in got:
        by_src.setdefault(r.source.rsplit("/", 1)[1], []).append(r)
    assert [json.loads(r.payload) for r in by_src["a.jsonl.gz"]] == recs
    # array elements travel as their original bytes (parsed later, like JSONL lines)
    assert [json.loads(r.payload) for r in by_src["b.json"]] == recs
    assert [r.index for r in by_src["b.json"]] == [0, 1, 2]
    assert [json.loads(r.payload) for r in by_src["c.json"]] == recs
    (bad,) = by_src["d.json"]
    assert bad.index == 0 and bad.payload == b'{"messages":'  # a truncated element: invalid_json when parsed


def test_parquet_row_index_across_row_groups_and_splits(tmp_path):
    table = pa.table({"instruction": [f"i{k}" for k in range(50)], "output": [f"o{k}" for k in range(50)]})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=7)
    src = expand_inputs([str(tmp_path / "t.parquet")])
    splits = plan_splits(src, 1)  # tiny split size: one split per row group
    assert len(splits) == 8
    got = [r for s in splits for r in read_split(s)]
    assert [r.index for r in got] == list(range(50))
    assert got[13].payload == {"instruction": "i13", "output": "o13"}


def test_corrupt_parquet_is_one_read_error(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    (rec,) = read_all(expand_inputs([str(tmp_path / "bad.parquet")]))
    assert isinstance(rec.payload, RecordError) and rec.payload.reason == "read_error"


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"prompt": ["p0", "p1"], "completion": ["c0", "c1"]})
    ds.save_to_disk(str(tmp_path / "ds"))
    datasets.DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(tmp_path / "dd"))
    sources = expand_inputs([str(tmp_path / "ds"), str(tmp_path / "dd")])
    assert [s.kind for s in sources] == ["disk"] * 3
    got = read_all(sources)
    assert [(r.source.rsplit("/", 1)[1], r.index, r.payload["prompt"]) for r in got] == [
        ("ds", 0, "p0"), ("ds", 1, "p1"), ("dd[train]", 0, "p0"), ("dd[train]", 1, "p1"), ("dd[test]", 0, "p1")]


def test_empty_file_yields_nothing(tmp_path):
    (tmp_path / "e.jsonl").write_bytes(b"")
    assert read_all(expand_inputs([str(tmp_path / "e.jsonl")])) == []
    assert isinstance(Source("jsonl", "x", "x").to_dict(), dict)
