"""Statistics: ``im_data.stats.LengthStats`` as a Beam CombineFn (exact, order-independent merge)."""

from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam
from apache_beam.transforms.combiners import SampleCombineFn
from apache_beam.typehints import TypeVariable, with_input_types, with_output_types

T = TypeVariable("T")


@with_input_types(Any)
@with_output_types(dict[str, Any])
class LengthStatsFn(beam.CombineFn):
    """Combines ``LengthStats`` partials (or ``EncodedExample.summary()`` dicts) into ``LengthStats.to_dict()``
    (the stats.json schema)."""

    def create_accumulator(self):
        from im_data import LengthStats

        return LengthStats()

    def add_input(self, acc, item):
        """``item``: a ``LengthStats`` partial (one per encode batch) or one ``EncodedExample.summary()``."""
        if isinstance(item, dict):
            acc.add(item)
        else:
            acc.merge(item)
        return acc

    def add_inputs(self, acc, items: Iterable[Any]):
        for item in items:
            self.add_input(acc, item)
        return acc

    def merge_accumulators(self, accs):
        from im_data import LengthStats

        return LengthStats.merged(accs)

    def extract_output(self, acc) -> dict[str, Any]:
        return acc.to_dict()


def empty_stats() -> dict[str, Any]:
    from im_data import LengthStats

    return LengthStats().to_dict()


@with_output_types(dict[str, Any])
class ComputeStats(beam.PTransform):
    """``PCollection[LengthStats | summary]`` → a single ``stats.json`` dict (no element when there are no rows)."""

    def expand(self, summaries):
        # without_defaults: the default-value path needs side inputs, which the Dask runner handles poorly;
        # the launcher uses an empty LengthStats when no element comes out.
        return (summaries | "LengthStats" >> beam.CombineGlobally(LengthStatsFn()).without_defaults()
                .with_output_types(dict[str, Any]))


@with_output_types(int)
class CountRecords(beam.PTransform):
    """``PCollection[Any]`` → one int (nothing when the input is empty)."""

    def expand(self, pcoll):
        return (pcoll | "Count" >> beam.CombineGlobally(beam.combiners.CountCombineFn()).without_defaults()
                .with_output_types(int))


@with_input_types(list[T])
@with_output_types(list[T])
class SampleRowsFn(SampleCombineFn):
    """A uniform sample of ``n`` rows from lists of rows (one list per record batch): the rows never become
    Beam elements one by one, which costs more than sampling them.

    Its input is a list of rows and its output one list of rows: the types are stated here, since the base
    class's (``T`` in, ``list[T]`` out) would make Beam infer a coder for lists of lists (apache-beam 2.78
    then fails while sampling element sizes)."""

    def add_input(self, heap, rows):
        for row in rows:
            heap = super().add_input(heap, row)
        return heap
