"""``--decontaminate BENCH ...``: records sharing a word n-gram with a benchmark record are rejected
``contaminated`` (:mod:`im_data.decontam`).

The launcher reads the benchmarks once (:func:`build_index`) and writes their hashed n-grams
(:class:`im_data.decontam.NgramIndex`, a sorted uint64 array with the benchmark and record of each) to one file in
the run folder; each worker process loads it once (``DoFn.setup``, cached per process), and a record's n-grams are
looked up with one vectorised ``searchsorted`` per message. The index plays the part of a side input: Beam side
inputs are not passed by the Dask runner, and a file in the run folder reaches every runner's workers (object
storage included).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterator

import apache_beam as beam
from apache_beam import pvalue

from im_data import storage
from im_data.decontam import NgramIndex, WordHasher, find_contamination
from im_data.errors import RecordError

from .options import PrepareSpec
from .read import parse_payload
from .rejects import REJECTS, make_reject
from .read import RawRecord

LOG = logging.getLogger("im_data.prepare")
INDEX_DIR = "_decontam"
INDEX_FILE = f"{INDEX_DIR}/ngrams.npz"
BENCHMARKS = "benchmarks"
_INDEXES: dict[str, NgramIndex] = {}
_LOCK = threading.Lock()


def build_index(specs, n: int, max_record_bytes: int) -> NgramIndex:
    """The hashed n-grams of the benchmark inputs ``specs`` (files, globs, ``hf:NAME[:SPLIT]``); records that
    are not valid JSON are skipped."""
    from im_data.formats import parse_json_line

    from .read import expand_inputs, plan_splits, read_split

    def records(spec):
        for split in plan_splits(expand_inputs([spec]), 1 << 62):
            for rec in read_split(split, max_record_bytes):
                if rec.index is None or isinstance(rec.payload, RecordError):
                    continue
                try:
                    value = parse_json_line(rec.payload) if isinstance(rec.payload, (bytes, str)) else rec.payload
                except RecordError:
                    continue
                yield rec.index, value

    return NgramIndex.build([(spec, records(spec)) for spec in specs], n)


def load_index(path: str) -> NgramIndex:
    """The index at ``path``, read once per process."""
    with _LOCK:
        if path not in _INDEXES:
            _INDEXES[path] = NgramIndex.from_bytes(storage.read_bytes(path))
        return _INDEXES[path]


def write_index(specs, n: int, max_record_bytes: int, work_dir: str) -> NgramIndex:
    """Read the ``--decontaminate`` benchmarks once and write their n-gram index into the run folder."""
    index = build_index(specs, n, max_record_bytes)
    LOG.info("decontamination: %s distinct %d-grams from %d benchmark(s)", f"{len(index):,}", index.n,
             len(index.benchmarks))
    path = storage.join(work_dir, INDEX_FILE)
    storage.makedirs(storage.parent(path))
    storage.write_bytes_atomic(path, index.to_bytes())
    return index


class _DecontaminateFn(beam.DoFn):
    def __init__(self, config: PrepareSpec):
        self.config = config

    def setup(self) -> None:
        self.index = load_index(storage.join(self.config.work_dir, INDEX_FILE))
        self.hasher = WordHasher()

    def process(self, rec: RawRecord) -> Iterator[Any]:
        found = None
        if rec.index is not None and not isinstance(rec.payload, RecordError):
            try:
                found = find_contamination(parse_payload(rec), self.index, self.hasher,
                                           self.config.encoder.format_options)
            except RecordError:
                found = None  # not JSON: the encoder rejects it with its reason
        if found is None:
            yield rec
            return
        error, bench = found
        yield pvalue.TaggedOutput(REJECTS, make_reject(rec, error, rec.payload))
        yield pvalue.TaggedOutput(BENCHMARKS, bench)


@beam.typehints.with_input_types(RawRecord)
@beam.typehints.with_output_types(Any)  # outputs: records (RawRecord), rejects (dict), benchmarks (counts dict)
class Decontaminate(beam.PTransform):
    """``PCollection[RawRecord]`` → ``{"records", "rejects", "benchmarks"}``: the clean records, one
    ``contaminated`` dead letter per contaminated record, and one ``{benchmark: records rejected}`` (nothing
    when none was)."""

    def __init__(self, config: PrepareSpec):
        super().__init__()
        self.config = config

    def expand(self, records):
        out = records | "Match" >> beam.ParDo(_DecontaminateFn(self.config)).with_outputs(
            REJECTS, BENCHMARKS, main="records")
        counts = (out[BENCHMARKS]
                  | "PerBenchmark" >> beam.Map(lambda b: (b, 1)).with_output_types(tuple[str, int])
                  | "Sum" >> beam.CombinePerKey(sum).with_output_types(tuple[str, int])
                  | "Gather" >> beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
                  .with_output_types(list[tuple[str, int]])
                  | "AsDict" >> beam.Map(lambda pairs: dict(pairs)).with_output_types(dict[str, Any]))
        return {"records": out.records, "rejects": out[REJECTS], "benchmarks": counts}


def decontamination_stats(index: NgramIndex, counts: dict[str, int]) -> dict[str, Any]:
    """``stats.json`` ``decontamination``: the n-gram length and, per benchmark, its distinct n-grams and the
    records rejected for it."""
    ngrams = index.ngrams_per_benchmark()
    return {"ngram": index.n, "benchmarks": {b: {"ngrams": ngrams[b], "contaminated": int(counts.get(b, 0))}
                                             for b in index.benchmarks}}
