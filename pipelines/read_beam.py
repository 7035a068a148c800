"""``ReadExamples``: the Beam transform over :mod:`pipelines.read` (kept apart so that reading imports no Beam)."""

from __future__ import annotations

from typing import Iterator

import apache_beam as beam

from .options import PrepareSpec
from .read import RawRecord, Split, plan_splits, read_split


class _ReadSplitFn(beam.DoFn):
    def __init__(self, max_record_bytes: int):
        self.max_record_bytes = max_record_bytes

    def process(self, split: Split) -> Iterator[RawRecord]:
        yield from read_split(split, self.max_record_bytes)


@beam.typehints.with_output_types(RawRecord)
class ReadExamples(beam.PTransform):
    """``PBegin → PCollection[RawRecord]``: every record of the spec's sources, with its source and index; every
    reader honours the spec's limits (``max_record_bytes``)."""

    def __init__(self, spec: PrepareSpec):
        super().__init__()
        self.spec = spec

    def expand(self, pbegin):
        splits = plan_splits(self.spec.sources, self.spec.split_bytes)
        return (pbegin
                | "Splits" >> beam.Create(splits, reshuffle=False).with_output_types(Split)
                | "ReadSplits" >> beam.ParDo(_ReadSplitFn(self.spec.max_record_bytes)))
