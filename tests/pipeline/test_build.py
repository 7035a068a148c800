"""build_pipeline driven by TestPipeline + assert_that, and the shard merge as a property."""

from __future__ import annotations

import hashlib
import random

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to, is_not_empty
from hypothesis import given, settings
from hypothesis import strategies as st

from im_data import WeightPolicy
from pipeline_helpers import DATA
from pipelines.build import build_pipeline
from pipelines.config import PrepareConfig
from pipelines.manifest import make_work_dir
from pipelines.options import EncoderOptions
from pipelines.read import expand_inputs
from pipelines.write import ROW_SCHEMA, RUNS_DIR, SCHEMA, WriteShards, merge_runs, write_run


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Row dicts (numpy list values, plus ``_order``) → a table with the pipeline's row schema."""
    plain = [{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in r.items()} for r in rows]
    return pa.Table.from_pylist(plain, schema=ROW_SCHEMA)


def test_build_pipeline_branches(tmp_path, bad_expected, type_checked_pipeline):
    encoder = EncoderOptions(policy=WeightPolicy.preset("it"), max_length=48, truncation="drop")
    config = PrepareConfig(sources=expand_inputs([str(DATA / "bad.jsonl"), str(DATA / "empty.jsonl")]),
                           work_dir=make_work_dir(str(tmp_path / "out")), encoder=encoder, num_shards=2)
    expected = sorted((i, "too_long" if r == "LONG" else r) for i, r in bad_expected.items())
    with type_checked_pipeline() as p:
        pc = build_pipeline(p, config)
        assert_that(pc["read_count"], equal_to([16]), label="read")
        assert_that(pc["rejects"] | "IdxReason" >> beam.Map(lambda r: (r["index"], r["reason"])),
                    equal_to(expected), label="rejects")
        assert_that(pc["rows"] | "Ids" >> beam.FlatMap(lambda b: [""] * b.num_rows),
                    equal_to([""] * (16 - len(expected))), label="rows")
        assert_that(pc["shards"] | "ShardNo" >> beam.Map(lambda s: s["shard"]),
                    equal_to([0, 1]), label="shards")
        assert_that(pc["summary"], is_not_empty(), label="summary")


def _row(key: int, n: int) -> dict:
    return dict(input_ids=np.arange(n, dtype=np.int32) + key % 7, labels=np.full(n, -100, np.int32),
                loss_weights=np.ones(n, np.float32), roles=np.full(n, 4, np.int8), example_id=f"{key:016x}",
                num_instruction_tokens=0, num_output_tokens=n, num_output_tokens_kept=n, truncated=key % 3 == 0,
                _order=key)


def _write_run(path: str, rows: list[dict], batch_rows: int) -> None:
    table = rows_to_table(sorted(rows, key=lambda r: r["_order"]))
    write_run(path, table.to_batches(max_chunksize=batch_rows) if rows else [])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 3000), runs=st.integers(1, 6), interleave=st.booleans(), chunk=st.integers(1, 2500),
       batch_rows=st.integers(1, 700), fmt=st.sampled_from(["arrow", "parquet"]), seed=st.integers(0, 2**32 - 1))
def test_merge_is_in_key_order_and_independent_of_runs(tmp_path_factory, n, runs, interleave, chunk, batch_rows,
                                                        fmt, seed):
    """Runs that cover disjoint key ranges (concatenation) or interleave (the k-way fallback), cut into record
    batches of any size: the same shard bytes as one run holding every row, rows in key order."""
    rng = random.Random(seed)
    keys = sorted(rng.sample(range(1 << 42), n))
    rows = [_row(k, rng.randint(0, 5)) for k in keys]
    if interleave:
        owner = [rng.randrange(runs) for _ in rows]
    else:
        cuts = sorted(rng.randint(0, n) for _ in range(runs - 1))
        owner = [sum(i >= c for c in cuts) for i in range(n)]
    tmp = tmp_path_factory.mktemp("merge")
    paths = []
    for k in range(runs):
        paths.append(str(tmp / f"run{k}.arrow"))
        _write_run(paths[-1], [r for r, o in zip(rows, owner) if o == k], batch_rows)
    rng.shuffle(paths)
    num_rows, sha = merge_runs(paths, str(tmp / f"out.{fmt}"), fmt, chunk)
    assert num_rows == n
    single = str(tmp / "single.arrow")
    _write_run(single, rows, 1024)
    merge_runs([single], str(tmp / f"ref.{fmt}"), fmt, chunk)
    data = (tmp / f"out.{fmt}").read_bytes()
    assert data == (tmp / f"ref.{fmt}").read_bytes() and sha == hashlib.sha256(data).hexdigest()
    got = pq.read_table(tmp / f"out.{fmt}") if fmt == "parquet" else pa.ipc.open_stream(data).read_all()
    assert got.schema == SCHEMA
    assert got["example_id"].to_pylist() == [f"{k:016x}" for k in keys]
    if fmt == "arrow" and n:
        sizes = [b.num_rows for b in pa.ipc.open_stream(data)]
        assert sizes == [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])


def test_write_shards_gives_the_same_bytes_whatever_the_row_order(tmp_path, type_checked_pipeline):
    """WriteShards through Beam: rows arriving scrambled across many small interleaving runs (a tiny run buffer:
    unsorted runs, the k-way fallback) give the same shard files as rows arriving in input order."""
    rng = random.Random(7)
    rows = [_row(k, rng.randint(1, 9)) for k in sorted(rng.sample(range(1 << 42), 600))]
    in_order = [rows_to_table(rows[i:i + 50]).to_batches()[0] for i in range(0, 600, 50)]
    scrambled = rows[:]
    rng.shuffle(scrambled)
    scrambled = [rows_to_table(scrambled[i:i + 37]).to_batches()[0] for i in range(0, 600, 37)]
    outputs = []
    for name, batches, buffer in (("ordered", in_order, 16 << 20), ("scrambled", scrambled, 1)):
        config = PrepareConfig(work_dir=str(tmp_path / name), num_shards=3, run_buffer_bytes=buffer,
                               merge_chunk_rows=64)
        with type_checked_pipeline() as p:
            _ = p | beam.Create(batches, reshuffle=False) | WriteShards(config)
        outputs.append({f.name: f.read_bytes() for f in sorted((tmp_path / name / "shards").glob("*.arrow"))})
        assert not (tmp_path / name / RUNS_DIR).exists() or not list((tmp_path / name / RUNS_DIR).rglob("*.arrow"))
    assert len(outputs[0]) == 3 and outputs[0] == outputs[1]
    shard_rows = {name: pa.ipc.open_stream(data).read_all()["example_id"].to_pylist()
                  for name, data in outputs[0].items()}
    assert sorted(sum(shard_rows.values(), [])) == sorted(r["example_id"] for r in rows)
    for ids in shard_rows.values():
        assert ids == sorted(ids)  # the ids here are the order keys in hex
