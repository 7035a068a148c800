"""Mixtures (``INPUT@R``): ``SampleMixture`` takes each record 0, 1 or more times at its source's rate
(:mod:`im_data.mixture`: deterministic by the hash of ``--seed`` and the example id, no shuffle)."""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import apache_beam as beam

from im_data.mixture import copies, parse_input_ratio, repeat_index

from .options import PrepareSpec
from .read import RawRecord, Source, plan_splits, read_split


def record_keys(sources: tuple[Source, ...], max_record_bytes: int) -> list[tuple[str, int]]:
    """``(source, index)`` of every record of ``sources`` (one read pass, no parsing)."""
    return [(rec.source, rec.index) for split in plan_splits(tuple(sources), 1 << 62)
            for rec in read_split(split, max_record_bytes) if rec.index is not None]


def local_path_exists(spec: str) -> bool:
    """Whether ``spec`` names an existing local path (then an ``@R`` at its end is part of the name)."""
    return os.path.lexists(os.path.expanduser(spec))


def input_ratios(inputs) -> list[tuple[str, float | None]]:
    """``[(spec, ratio or None), ...]`` of the INPUT arguments (raises ``ValueError`` for a bad ratio)."""
    return [parse_input_ratio(spec, exists=local_path_exists) for spec in inputs]


def mixture_plan(specs: list[tuple[str, float | None]], sources, max_record_bytes: int, seed: int) -> tuple:
    """``((source label, whole, threshold), ...)`` for the inputs given with a ratio (``INPUT@R``): the plan of
    :func:`im_data.mixture.plan_sampling` over all the records of the input (every file a glob matches), whose
    indices are read once here."""
    from im_data.mixture import plan_sampling

    from .read import expand_inputs

    labels = {s.label for s in sources}
    out = []
    for spec, ratio in specs:
        if ratio is None:
            continue
        own = tuple(s for s in expand_inputs([spec]) if s.label in labels)
        whole, threshold = plan_sampling(ratio, record_keys(own, max_record_bytes), seed)
        out.extend((s.label, whole, threshold) for s in own)
    return tuple(out)


def mixture_ratios(inputs) -> dict[str, float]:
    """``{source label: ratio}`` of the inputs given as ``INPUT@R`` (for the per-source table)."""
    from .read import expand_inputs

    out = {}
    for spec in inputs:
        bare, ratio = parse_input_ratio(spec, exists=local_path_exists)
        if ratio is not None:
            out.update((s.label, ratio) for s in expand_inputs([bare]))
    return out


class _SampleFn(beam.DoFn):
    def __init__(self, config: PrepareSpec):
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

    def __init__(self, config: PrepareSpec):
        super().__init__()
        self.config = config

    def expand(self, records):
        return records | "Sample" >> beam.ParDo(_SampleFn(self.config)).with_output_types(RawRecord)
