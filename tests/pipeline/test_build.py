"""build_pipeline driven by TestPipeline + assert_that, and the shard merge as a property."""

from __future__ import annotations

import random

import apache_beam as beam
import numpy as np
import pyarrow as pa
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
from pipelines.write import SCHEMA, merge_runs, write_ipc_file


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Row dicts (numpy list values) → a table with the shard schema."""
    plain = [{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in r.items()} for r in rows]
    return pa.Table.from_pylist(plain, schema=SCHEMA)


def test_build_pipeline_branches(tmp_path, bad_expected):
    encoder = EncoderOptions(policy=WeightPolicy.preset("it"), max_length=48, truncation="drop")
    config = PrepareConfig(sources=expand_inputs([str(DATA / "bad.jsonl"), str(DATA / "empty.jsonl")]),
                           work_dir=make_work_dir(str(tmp_path / "out")), encoder=encoder, num_shards=2)
    expected = sorted((i, "too_long" if r == "LONG" else r) for i, r in bad_expected.items())
    with test_pipeline.TestPipeline() as p:
        pc = build_pipeline(p, config)
        assert_that(pc["read_count"], equal_to([16]), label="read")
        assert_that(pc["rejects"] | "IdxReason" >> beam.Map(lambda r: (r["index"], r["reason"])),
                    equal_to(expected), label="rejects")
        assert_that(pc["rows"] | "Ids" >> beam.FlatMap(lambda b: [""] * b.num_rows),
                    equal_to([""] * (16 - len(expected))), label="rows")
        assert_that(pc["shards"] | "ShardNo" >> beam.Map(lambda s: s["shard"]),
                    equal_to([0, 1]), label="shards")
        assert_that(pc["summary"], is_not_empty(), label="summary")


def _row(eid: str, n: int) -> dict:
    return dict(input_ids=np.arange(n, dtype=np.int32), labels=np.full(n, -100, np.int32),
                loss_weights=np.ones(n, np.float32), roles=np.full(n, 4, np.int8), example_id=eid,
                num_instruction_tokens=0, num_output_tokens=n, num_output_tokens_kept=n, truncated=False)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 3000), cuts=st.lists(st.integers(0, 3000), max_size=6), chunk=st.integers(1, 2500),
       seed=st.integers(0, 2**32 - 1))
def test_merge_is_sorted_and_independent_of_runs(tmp_path_factory, n, cuts, chunk, seed):
    rng = random.Random(seed)
    rows = [_row(f"{rng.getrandbits(64):016x}", rng.randint(0, 5)) for _ in range(n)]
    tmp = tmp_path_factory.mktemp("merge")
    bounds = sorted({0, n, *[c for c in cuts if c < n]})
    runs = []
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        runs.append(str(tmp / f"run{k}.arrow"))
        write_ipc_file(runs[-1], rows_to_table(sorted(rows[a:b], key=lambda r: r["example_id"])))
    assert merge_runs(runs, str(tmp / "out.arrow"), "arrow", chunk) == n
    single = str(tmp / "single.arrow")
    write_ipc_file(single, rows_to_table(sorted(rows, key=lambda r: r["example_id"])))
    merge_runs([single], str(tmp / "ref.arrow"), "arrow", chunk)
    got = pa.ipc.open_stream(pa.memory_map(str(tmp / "out.arrow"))).read_all()
    assert got["example_id"].to_pylist() == sorted(r["example_id"] for r in rows)
    assert (tmp / "out.arrow").read_bytes() == (tmp / "ref.arrow").read_bytes()
