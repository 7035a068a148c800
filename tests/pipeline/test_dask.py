"""The Dask path against a real `dask scheduler` and `dask worker` started on loopback (bounded, torn down; the
``scheduler_address`` fixture is in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pytest

from pipeline_helpers import DATA, read_output, run_cli

REPO = Path(__file__).resolve().parents[2]


def test_dask_runner_fixes(scheduler_address, tmp_path):
    """Several sinks, finish_bundle outputs and tagged outputs all arrive (Beam 2.77's DaskRunner loses them)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.dask_runner import DaskRunner

    class Split(beam.DoFn):
        def process(self, x):
            yield beam.pvalue.TaggedOutput("odd", x) if x % 2 else x

    class Write(beam.DoFn):
        def __init__(self, path):
            self.path = path

        def process(self, x):
            with open(self.path, "a") as f:
                f.write(json.dumps(x) + "\n")

    opts = PipelineOptions([f"--dask_client_address={scheduler_address}"])
    p = beam.Pipeline(runner=DaskRunner(), options=opts)
    res = p | "C1" >> beam.Create(list(range(10))) | beam.ParDo(Split()).with_outputs("odd", main="even")
    res.even | "W1" >> beam.ParDo(Write(str(tmp_path / "even")))
    res.odd | "W2" >> beam.ParDo(Write(str(tmp_path / "odd")))
    (p | "C2" >> beam.Create(list(range(10))) | beam.BatchElements(min_batch_size=4, max_batch_size=4)
     | "W3" >> beam.ParDo(Write(str(tmp_path / "batches"))))
    result = p.run()
    result.wait_until_finish()
    result.client.close()
    read = lambda name: [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]  # noqa: E731
    assert sorted(read("even")) == [0, 2, 4, 6, 8] and sorted(read("odd")) == [1, 3, 5, 7, 9]
    assert sorted(x for batch in read("batches") for x in batch) == list(range(10))


def test_dask_and_direct_give_the_same_rows_and_stats(scheduler_address, tmp_path):
    inputs = [DATA / "bad.jsonl", DATA / "empty.jsonl", REPO / "im_data/assets/sample.jsonl"]
    common = ["--num-shards", "3", "--max-length", "64", "-q"]
    assert run_cli("prepare", *inputs, "-o", tmp_path / "direct", *common) == 0
    # small splits, so that the Dask workers share the read
    assert run_cli("prepare", *inputs, "-o", tmp_path / "dask", *common, "--runner", "dask",
                   "--dask-address", scheduler_address) == 0
    a, b = read_output(tmp_path / "direct"), read_output(tmp_path / "dask")
    assert a["rows"] == b["rows"] and a["stats"] == b["stats"]
    assert sorted(a["rejects"], key=lambda r: r["example_id"] or "") == sorted(b["rejects"],
                                                                             key=lambda r: r["example_id"] or "")
    assert a["manifest"]["counts"] == b["manifest"]["counts"]
    assert [s["sha256"] for s in a["manifest"]["shards"]] == [s["sha256"] for s in b["manifest"]["shards"]]
    assert (tmp_path / "dask" / "stats.json").read_bytes() == (tmp_path / "direct" / "stats.json").read_bytes()
