"""``--dedup exact``: records whose normalised conversation equals an earlier one's are rejected ``duplicate``.

Deterministic on any runner, in one shuffle and without side inputs (which the Dask runner does not pass):

1. ``Keys``: each record keyed by its conversation key (:func:`im_data.dedup.conversation_key`, 16 bytes of a
   sha256) with its input order ``(position << 40 | index)``. Records that cannot be parsed or converted have no
   key: they go on unchanged (the encoder rejects them with their own reason). The k-th repeats of a mixture
   (``INPUT@R``, index ``i + k * 2**32``) are keyed apart, so a repeat is never a duplicate of its original.
2. ``Keep``: a GroupByKey on the key; in each group the record with the smallest input order is kept and every
   other one becomes a ``duplicate`` dead letter naming the kept example id (source and index).
"""

from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
from apache_beam import pvalue

from im_data.dedup import conversation_key, duplicate_error
from im_data.errors import RecordError
from im_data.mixture import REPEAT_STRIDE
from im_data.shards import example_id

from .options import PrepareSpec
from .read import parse_payload
from .rejects import REJECTS, make_reject
from .read import RawRecord
from .write import order_keys


def _order(positions: dict[str, int], rec: RawRecord) -> int:
    return int(order_keys([positions[rec.source]], [rec.index])[0])


NO_KEY = "no_key"


class _KeyFn(beam.DoFn):
    def __init__(self, config: PrepareSpec):
        self.config = config

    def setup(self) -> None:
        self.positions = {source.label: i for i, source in enumerate(self.config.sources)}

    def process(self, rec: RawRecord) -> Iterator[Any]:
        key = None
        if rec.index is not None and not isinstance(rec.payload, RecordError):
            try:
                key = conversation_key(parse_payload(rec), self.config.encoder.format_options)
                # a mixture's repeats (INPUT@R with R above the input's size) are not duplicates of each other:
                # the k-th repeats are compared among themselves
                key += (rec.index // REPEAT_STRIDE).to_bytes(2, "big")
            except Exception:  # noqa: BLE001 - not a conversation: the encoder rejects it with its reason
                key = None
        if key is None:
            yield pvalue.TaggedOutput(NO_KEY, rec)
        else:
            yield key, (_order(self.positions, rec), rec)


def _keep_first(group) -> Iterator[Any]:
    """The group's first record in input order; the others as ``duplicate`` dead letters naming it."""
    _, entries = group
    entries = sorted(entries, key=lambda e: e[0])
    kept = entries[0][1]
    yield kept
    if len(entries) > 1:
        error = duplicate_error(example_id(kept.source, kept.index), kept.source, kept.index)
        for _, rec in entries[1:]:
            yield pvalue.TaggedOutput(REJECTS, make_reject(rec, error, rec.payload))


@beam.typehints.with_input_types(RawRecord)
@beam.typehints.with_output_types(Any)  # two tagged outputs: records (RawRecord), rejects (dict)
class DedupExact(beam.PTransform):
    """``PCollection[RawRecord]`` → ``{"records", "rejects"}``: the first record of each distinct normalised
    conversation (in input order), and one ``duplicate`` dead letter per later copy."""

    def __init__(self, config: PrepareSpec):
        super().__init__()
        self.config = config

    def expand(self, records):
        keyed = records | "Keys" >> beam.ParDo(_KeyFn(self.config)).with_outputs(NO_KEY, main="keyed")
        kept = (keyed.keyed
                | "GroupKeys" >> beam.GroupByKey().with_input_types(tuple[bytes, tuple[int, RawRecord]])
                | "Keep" >> beam.FlatMap(_keep_first).with_outputs(REJECTS, main="records"))
        return {"records": ((kept.records, keyed[NO_KEY])
                            | "Records" >> beam.Flatten().with_output_types(RawRecord)),
                "rejects": kept[REJECTS]}
