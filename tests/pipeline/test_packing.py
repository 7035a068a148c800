"""``--pack-length``: best-fit decreasing as TRL's ``pack_dataset``, packed rows that hold every example once
(token for token), truncation of too-long examples, accounting, and the same bytes on Direct and Dask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline_helpers import DATA, read_output, run_cli

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "im_data/assets/sample.jsonl"


def _packed_output(out) -> dict:
    """manifest, stats and dead letters of a packed output (its rows: :func:`_table`)."""
    out = Path(out)
    rejects = [json.loads(line) for f in sorted((out / "rejects").glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    return {"manifest": json.loads((out / "manifest.json").read_text()),
            "stats": json.loads((out / "stats.json").read_text()), "rejects": rejects}


def _table(out) -> pa.Table:
    """Every packed row, shard by shard in manifest order, read through the output contract."""
    from im_data.dataset import PreparedDataset, iter_file_batches

    prepared = PreparedDataset.open(str(out))
    batches = [b for s in prepared.manifest.shards_of(None) for b in iter_file_batches(prepared.path(s.path))]
    return pa.Table.from_batches(batches)


@pytest.mark.parametrize("seed", range(12))
def test_bins_are_trls_best_fit_decreasing(seed):
    from datasets import Dataset
    from trl import pack_dataset

    from im_data.packing import bfd_bins

    rng = np.random.default_rng(seed)
    capacity = int(rng.integers(4, 80))
    lengths = rng.integers(1, capacity + 1, size=int(rng.integers(1, 400)))
    docs = [list(range(i * 1000, i * 1000 + n)) for i, n in enumerate(lengths)]
    trl_rows = pack_dataset(Dataset.from_dict({"input_ids": docs}), capacity, "bfd")
    ours = bfd_bins(lengths, capacity)
    assert trl_rows["input_ids"] == [[t for i in b for t in docs[i]] for b in ours]
    assert trl_rows["seq_lengths"] == [[int(lengths[i]) for i in b] for b in ours]


def test_bins_reject_documents_longer_than_the_pack_length():
    from im_data.packing import bfd_bins

    with pytest.raises(ValueError, match="lengths must be in"):
        bfd_bins([3, 9], 8)


def test_packed_rows_hold_every_example_once(tmp_path):
    assert run_cli("prepare", SAMPLE, "-o", tmp_path / "plain", "--max-length", "300", "-q") == 0
    assert run_cli("prepare", SAMPLE, "-o", tmp_path / "packed", "--pack-length", "300", "--num-shards", "2",
                   "-q") == 0
    plain = {r["example_id"]: r for r in read_output(tmp_path / "plain")["rows"]}
    out = _packed_output(tmp_path / "packed")
    m, stats = out["manifest"], out["stats"]
    assert m["pack_length"] == 300 and m["max_length"] == 300
    assert [c["name"] for c in m["columns"]] == ["input_ids", "labels", "loss_weights", "roles", "seq_lengths",
                                                 "example_ids"]
    table = _table(tmp_path / "packed")
    seen = []
    for row in table.to_pylist():
        assert sum(row["seq_lengths"]) == len(row["input_ids"]) <= 300
        assert len(row["labels"]) == len(row["loss_weights"]) == len(row["roles"]) == len(row["input_ids"])
        start = 0
        for eid, n in zip(row["example_ids"], row["seq_lengths"]):
            ref = plain[eid]
            sl = slice(start, start + n)
            assert row["input_ids"][sl] == ref["input_ids"] and row["roles"][sl] == ref["roles"]
            # the first token of each document weighs 0 (label -100), as TRL's padding-free collator masks it
            assert row["loss_weights"][sl] == [0.0] + ref["loss_weights"][1:]
            assert row["labels"][sl] == [-100] + ref["labels"][1:]
            seen.append(eid)
            start += n
    assert sorted(seen) == sorted(plain)  # every example exactly once
    tokens = sum(len(r["input_ids"]) for r in plain.values())
    assert m["counts"]["written"] == len(plain) == m["counts"]["read"]
    assert sum(s["num_rows"] for s in m["shards"]) == table.num_rows < len(plain)
    assert stats["packing"] == {"pack_length": 300, "rows": table.num_rows, "documents": len(plain),
                                "tokens": tokens, "efficiency": tokens / (table.num_rows * 300)}
    card = (tmp_path / "packed" / "README.md").read_text()
    assert f"| efficiency (tokens / (rows × pack length)) | {tokens / (table.num_rows * 300):,.4f} |" in card
    assert not (tmp_path / "packed" / "_unpacked").exists()


@pytest.mark.parametrize("truncation", ["keep_start", "drop"])
def test_too_long_examples_follow_truncation(tmp_path, truncation):
    assert run_cli("prepare", SAMPLE, "-o", tmp_path / "o", "--pack-length", "128", "--truncation", truncation,
                   "-q") == 0
    out = _packed_output(tmp_path / "o")
    c, table = out["manifest"]["counts"], _table(tmp_path / "o")
    lengths = [n for row in table.column("seq_lengths").to_pylist() for n in row]
    assert max(lengths) <= 128 and c["read"] == c["written"] + c["rejected"] == 80
    assert len(lengths) == c["written"]
    if truncation == "drop":
        assert c["rejected_by_reason"]["too_long"] == c["rejected"] > 0 and c["truncated"] == 0
        assert {r["reason"] for r in out["rejects"]} == {"too_long"}
    else:
        # keep_start keeps the first 128 tokens; an example whose output that cuts away entirely is too_long
        assert c["truncated"] > 0 and 128 in lengths
        assert all(r["reason"] == "too_long" and "cut the output to nothing" in r["message"] for r in out["rejects"])


def test_pack_length_is_checked(tmp_path, capsys):
    assert run_cli("prepare", SAMPLE, "-o", tmp_path / "o", "--pack-length", "1") == 2
    assert "--pack-length must be >= 2" in capsys.readouterr().err


def test_parquet_packing(tmp_path):
    assert run_cli("prepare", SAMPLE, "-o", tmp_path / "a", "--pack-length", "256", "-q") == 0
    assert run_cli("prepare", SAMPLE, "-o", tmp_path / "p", "--pack-length", "256", "--format", "parquet",
                   "-q") == 0
    assert _table(tmp_path / "a").equals(_table(tmp_path / "p"))


def test_dask_and_direct_pack_the_same_bytes(scheduler_address, tmp_path):
    inputs = [DATA / "bad.jsonl", SAMPLE]
    common = ["--num-shards", "2", "--pack-length", "200", "--eval-fraction", "0.2", "-q"]
    assert run_cli("prepare", *inputs, "-o", tmp_path / "direct", *common) == 0
    assert run_cli("prepare", *inputs, "-o", tmp_path / "dask", *common, "--runner", "dask",
                   "--dask-address", scheduler_address) == 0
    a, b = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("direct", "dask"))
    assert a["shards"] == b["shards"] and a["counts"] == b["counts"]
    assert json.loads((tmp_path / "direct/stats.json").read_text()) == json.loads(
        (tmp_path / "dask/stats.json").read_text())
