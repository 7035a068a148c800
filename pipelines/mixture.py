"""Mixtures (``INPUT@R``): ``SampleMixture`` takes each record 0, 1 or more times at its source's rate
(:mod:`im_data.mixture`: deterministic by the hash of ``--seed`` and the example id, no shuffle)."""

from __future__ import annotations

import dataclasses
from typing import Iterator

import apache_beam as beam

from im_data.mixture import copies, repeat_index

from .config import PrepareConfig
from .read import RawRecord, Source, plan_splits, read_split


def record_keys(sources: tuple[Source, ...], max_record_bytes: int) -> list[tuple[str, int]]:
    """``(source, index)`` of every record of ``sources`` (one read pass, no parsing)."""
    return [(rec.source, rec.index) for split in plan_splits(tuple(sources), 1 << 62)
            for rec in read_split(split, max_record_bytes) if rec.index is not None]


class _SampleFn(beam.DoFn):
    def __init__(self, config: PrepareConfig):
        self.config = config

    def setup(self) -> None:
        self.plans = {label: (whole, threshold) for label, whole, threshold in self.config.mixture}

    def process(self, rec: RawRecord) -> Iterator[RawRecord]:
        plan = self.plans.get(rec.source)
        if plan is None or rec.index is None:
            yield rec
            return
        for j in range(copies(*plan, self.config.seed, rec.source, rec.index)):
            yield rec if j == 0 else dataclasses.replace(rec, index=repeat_index(rec.index, j))


@beam.typehints.with_input_types(RawRecord)
@beam.typehints.with_output_types(RawRecord)
class SampleMixture(beam.PTransform):
    """``PCollection[RawRecord]`` → the mixture's records: each record of a planned source taken ``whole``
    times, plus once more when its hash is at most the plan's threshold; copies have their own index and
    example id."""

    def __init__(self, config: PrepareConfig):
        super().__init__()
        self.config = config

    def expand(self, records):
        return records | "Sample" >> beam.ParDo(_SampleFn(self.config)).with_output_types(RawRecord)
