"""``ReadExamples``: the Beam transform over :mod:`pipelines.read` (kept apart so that reading imports no Beam)."""

from __future__ import annotations

from typing import Iterator

import apache_beam as beam

from im_data.limits import DEFAULT_MAX_RECORD_BYTES

from .read import RawRecord, Source, Split, plan_splits, read_split


class _ReadSplitFn(beam.DoFn):
    def __init__(self, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
        self.max_record_bytes = max_record_bytes

    def process(self, split: Split) -> Iterator[RawRecord]:
        yield from read_split(split, self.max_record_bytes)


@beam.typehints.with_output_types(RawRecord)
class ReadExamples(beam.PTransform):
    """``PBegin → PCollection[RawRecord]``: every record of every source, with its source and index."""

    def __init__(self, sources: tuple[Source, ...], split_bytes: int = 16 << 20,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
        super().__init__()
        self.sources = tuple(sources)
        self.split_bytes = split_bytes
        self.max_record_bytes = max_record_bytes

    def expand(self, pbegin):
        splits = plan_splits(self.sources, self.split_bytes)
        return (pbegin
                | "Splits" >> beam.Create(splits, reshuffle=False).with_output_types(Split)
                | "ReadSplits" >> beam.ParDo(_ReadSplitFn(self.max_record_bytes)))
