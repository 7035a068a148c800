"""``build_pipeline(p, config)``: the whole `prepare` graph from labelled composites.

    ReadExamples ─► EncodeExamples ─┬─► rows ──────► WriteShards ─┐
         │                          ├─► stats ─────► ComputeStats ├─► Summarize (_summary.json)
         └─► CountRecords           └─► rejects ───► WriteRejects ┘

with the options of issue 18, each its own composite: ``SampleMixture`` (``INPUT@R``), ``DedupExact``
(``--dedup``) and ``Decontaminate`` (``--decontaminate``) between reading and encoding (their dead letters join
the encoder's), ``PackShards`` (``--pack-length``) after ``WriteShards``; ``CountBySource`` and ``SourceStats``
give the per-source table.

plus Beam metrics counters (namespace ``im_data``: read, written, rejected, rejected_<reason>).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import apache_beam as beam

from im_data import storage
from im_data.dataset import SUMMARY_FILE

from .options import PrepareSpec
from .encode import SOURCE_STATS, EncodeExamples
from .decontam import Decontaminate
from .dedup import DedupExact
from .pack import PackShards
from .mixture import SampleMixture
from .sources import CountBySource, SourceStats
from .progress import report_progress
from .read_beam import ReadExamples
from .rejects import WriteRejects
from .stats import ComputeStats, CountRecords, empty_stats
from .write import WriteShards, total_shards


def assemble_summary(items: list[tuple[str, Any]], num_shards: int) -> dict[str, Any]:
    """Gather the side branches' single results into one dict (the launcher turns it into the manifest)."""
    out: dict[str, Any] = {"read": 0, "stats": None, "shards": [], "rejects": [], "sources": {}}
    for kind, value in items:
        if kind == "read":
            out["read"] += int(value)
        elif kind == "stats":
            out["stats"] = value
        elif kind == "shard":
            out["shards"].append(value)
        elif kind == "rejects":
            out["rejects"].append(value)
        elif kind in ("sources", "source_stats", "contamination"):
            out[kind] = value
    out["shards"].sort(key=lambda s: s["shard"])
    out["rejects"].sort(key=lambda r: r["reason"])
    if out["stats"] is None:
        out["stats"] = empty_stats()
    if len(out["shards"]) != num_shards:
        raise RuntimeError(f"expected {num_shards} shards, the pipeline wrote {len(out['shards'])}")
    return out


class _WriteSummaryFn(beam.DoFn):
    def __init__(self, config: PrepareSpec):
        self.config = config

    def process(self, element) -> Iterator[dict[str, Any]]:
        _, items = element
        summary = assemble_summary(list(items), total_shards(self.config))
        storage.write_bytes_atomic(storage.join(self.config.work_dir, SUMMARY_FILE),
                                   json.dumps(summary, sort_keys=True).encode("utf-8"))
        yield summary


@beam.typehints.with_output_types(dict[str, Any])
class Summarize(beam.PTransform):
    """``(kind, value)`` results of every branch → one summary dict, also written to ``_summary.json``.

    Being the one sink that depends on every branch, it is also what a runner that computes only the last
    stage of a graph must compute."""

    def __init__(self, config: PrepareSpec):
        super().__init__()
        self.config = config

    def expand(self, tagged):
        return (tagged
                | "OneKey" >> beam.Map(lambda kv: (0, kv)).with_output_types(tuple[int, tuple[str, Any]])
                | "Gather" >> beam.GroupByKey()
                | "Write" >> beam.ParDo(_WriteSummaryFn(self.config)))


METRICS_NAMESPACE = "im_data"


class _CountFn(beam.DoFn):
    """Beam metrics counters, so a runner's UI shows the counts while the job runs: ``read`` (records),
    ``written`` (rows, counted per record batch), ``rejected`` and ``rejected_<reason>``. Outputs nothing."""

    def __init__(self, kind: str):
        self.kind = kind

    def setup(self) -> None:
        self.counters: dict[str, Any] = {}

    def _inc(self, name: str, n: int = 1) -> None:
        counter = self.counters.get(name)
        if counter is None:
            counter = self.counters[name] = beam.metrics.Metrics.counter(METRICS_NAMESPACE, name)
        counter.inc(n)

    def process(self, element) -> Iterator[Any]:
        if self.kind == "written":
            self._inc("written", element.num_rows)
        elif self.kind == "rejected":
            self._inc("rejected")
            self._inc(f"rejected_{element['reason']}")
        else:
            self._inc(self.kind)
        return iter(())


def _tag(kind: str):
    return lambda value: (kind, value)


def build_pipeline(p: beam.Pipeline, config: PrepareSpec) -> dict[str, beam.PCollection]:
    """Apply the prepare graph to ``p``; returns its PCollections (for tests with ``assert_that``)."""
    records = p | "ReadExamples" >> ReadExamples(config)
    available = records
    if config.mixture:
        records = available | "SampleMixture" >> SampleMixture(config)
    to_encode, dropped = records, []
    if config.dedup:
        deduped = records | "DedupExact" >> DedupExact(config)
        to_encode, dropped = deduped["records"], [deduped["rejects"]]
    contamination = None
    if config.decontaminate:
        clean = to_encode | "Decontaminate" >> Decontaminate(config)
        to_encode, contamination = clean["records"], clean["benchmarks"]
        dropped.append(clean["rejects"])
    encoded = to_encode | "EncodeExamples" >> EncodeExamples(config)
    all_rejects = encoded.rejects
    if dropped:
        all_rejects = ([*dropped, encoded.rejects]
                       | "AllRejects" >> beam.Flatten().with_output_types(dict[str, Any]))
    progress = config.progress_dir  # records, tokens and rejects are reported by EncodeExamples itself
    shards = encoded.rows | "WriteShards" >> WriteShards(config)
    if config.pack_length:
        shards = shards | "PackShards" >> PackShards(config)
    shards = report_progress(shards, progress, "merged", "ProgressMerged")
    stats = report_progress(encoded.stats | "ComputeStats" >> ComputeStats(), progress, "encode_done",
                            "ProgressEncoded")
    reject_files = all_rejects | "WriteRejects" >> WriteRejects(config.work_dir)
    read_count = records | "CountRecords" >> CountRecords()
    by_source = ((records, all_rejects, available) if config.mixture else (records, all_rejects)) \
        | "CountBySource" >> CountBySource()
    source_stats = encoded[SOURCE_STATS] | "SourceStats" >> SourceStats()
    for kind, pcoll in (("read", records), ("written", encoded.rows), ("rejected", all_rejects)):
        _ = pcoll | f"Metric_{kind}" >> beam.ParDo(_CountFn(kind)).with_output_types(Any)
    extra = [] if contamination is None else [
        contamination | "TagContamination" >> beam.Map(_tag("contamination")).with_output_types(tuple[str, Any])]
    summary = ([*extra, shards | "TagShards" >> beam.Map(_tag("shard")).with_output_types(tuple[str, Any]),
                stats | "TagStats" >> beam.Map(_tag("stats")).with_output_types(tuple[str, Any]),
                reject_files | "TagRejects" >> beam.Map(_tag("rejects")).with_output_types(tuple[str, Any]),
                read_count | "TagRead" >> beam.Map(_tag("read")).with_output_types(tuple[str, Any]),
                by_source | "TagSources" >> beam.Map(_tag("sources")).with_output_types(tuple[str, Any]),
                source_stats | "TagSourceStats" >> beam.Map(_tag("source_stats")).with_output_types(tuple[str, Any])]
               | "AllResults" >> beam.Flatten().with_output_types(tuple[str, Any])
               | "Summarize" >> Summarize(config))
    return {"records": records, "rows": encoded.rows, "summaries": encoded.stats, "rejects": all_rejects,
            "shards": shards, "stats": stats, "reject_files": reject_files, "read_count": read_count,
            "summary": summary}
