"""Per-source accounting: records read and rejected (by reason) per input source, so that every source satisfies
``read == written + rejected`` on its own (``stats.json`` ``sources``, the card)."""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from .read import RawRecord

READ = "read"


def _merge_counts(items) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (source, what), n in items:
        out.setdefault(source, {})[what] = out.get(source, {}).get(what, 0) + int(n)
    return out


@beam.typehints.with_output_types(dict[str, Any])
class CountBySource(beam.PTransform):
    """``(records, rejects)`` → one ``{source: {"read": n, reason: n, ...}}`` (nothing when there is no record)."""

    def expand(self, pcolls):
        records, rejects = pcolls
        read = records | "ReadKey" >> beam.Map(lambda r: ((r.source, READ), 1)).with_input_types(
            RawRecord).with_output_types(tuple[tuple[str, str], int])
        rejected = rejects | "RejectKey" >> beam.Map(lambda d: ((d["source"], d["reason"]), 1)).with_output_types(
            tuple[tuple[str, str], int])
        return ((read, rejected)
                | "All" >> beam.Flatten().with_output_types(tuple[tuple[str, str], int])
                | "Sum" >> beam.CombinePerKey(sum).with_output_types(tuple[tuple[str, str], int])
                | "Gather" >> beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
                .with_output_types(list[tuple[tuple[str, str], int]])
                | "AsDict" >> beam.Map(_merge_counts).with_output_types(dict[str, Any]))


def source_table(counts: dict[str, dict[str, int]], labels: list[str]) -> dict[str, dict[str, Any]]:
    """``stats.json`` ``sources``: per source (in input order) ``read``, ``written``, ``rejected`` and
    ``rejected_by_reason``; ``written = read - rejected`` (every record read is written or rejected)."""
    out = {}
    for label in labels:
        c = dict(counts.get(label, {}))
        read = c.pop(READ, 0)
        rejected = sum(c.values())
        out[label] = {"read": read, "written": read - rejected, "rejected": rejected,
                      "rejected_by_reason": dict(sorted(c.items()))}
    return out
