"""Per-source accounting: records read and rejected (by reason) per input source, so that every source satisfies
``read == written + rejected`` on its own (``stats.json`` ``sources``, the card)."""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from .read import RawRecord

READ = "read"
AVAILABLE = "available"  # records in the source before mixture sampling


def _merge_counts(items) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (source, what), n in items:
        out.setdefault(source, {})[what] = out.get(source, {}).get(what, 0) + int(n)
    return out


@beam.typehints.with_output_types(dict[str, Any])
class CountBySource(beam.PTransform):
    """``(records, rejects[, available])`` → one ``{source: {"read": n, "available": n, reason: n, ...}}`` (nothing
    when there is no record). ``available``: the records before mixture sampling (only with a mixture)."""

    def expand(self, pcolls):
        records, rejects, *available = pcolls
        before = () if not available else (
            available[0] | "AvailableKey" >> beam.Map(lambda r: ((r.source, AVAILABLE), 1)).with_input_types(
                RawRecord).with_output_types(tuple[tuple[str, str], int]),)
        read = records | "ReadKey" >> beam.Map(lambda r: ((r.source, READ), 1)).with_input_types(
            RawRecord).with_output_types(tuple[tuple[str, str], int])
        rejected = rejects | "RejectKey" >> beam.Map(lambda d: ((d["source"], d["reason"]), 1)).with_output_types(
            tuple[tuple[str, str], int])
        return ((read, rejected, *before)
                | "All" >> beam.Flatten().with_output_types(tuple[tuple[str, str], int])
                | "Sum" >> beam.CombinePerKey(sum).with_output_types(tuple[tuple[str, str], int])
                | "Gather" >> beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
                .with_output_types(list[tuple[tuple[str, str], int]])
                | "AsDict" >> beam.Map(_merge_counts).with_output_types(dict[str, Any]))


@beam.typehints.with_output_types(dict[str, Any])
class SourceStats(beam.PTransform):
    """``(source, LengthStats)`` partials → one ``{source: stats.json dict}`` (nothing when there is none)."""

    def expand(self, partials):
        from .stats import LengthStatsFn

        return (partials
                | "PerSource" >> beam.CombinePerKey(LengthStatsFn()).with_output_types(tuple[str, dict[str, Any]])
                | "Gather" >> beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
                .with_output_types(list[tuple[str, dict[str, Any]]])
                | "AsDict" >> beam.Map(lambda pairs: dict(pairs)).with_output_types(dict[str, Any]))


def _length_columns(stats: dict[str, Any] | None) -> dict[str, Any]:
    """Tokens, the length ratio and the audit recommendation of one source's ``stats.json`` dict."""
    from im_data.recommend import recommend

    if not stats or not stats.get("count"):
        return {"tokens": 0, "instruction_tokens": 0, "output_tokens": 0, "dataset_ratio": None,
                "recommendation": None}
    ratio = stats.get("dataset_ratio")
    rec = recommend(ratio, int(stats["count"])) if ratio is not None else None
    return {"tokens": int(sum(stats["tokens_per_role"].values())),
            "instruction_tokens": int(stats["instruction_tokens"]["sum"]),
            "output_tokens": int(stats["output_tokens"]["sum"]), "dataset_ratio": ratio,
            "recommendation": None if rec is None else {"decision": rec.decision, "summary": rec.summary,
                                                        "suggested_prompt_weight": rec.suggested_prompt_weight}}


def source_table(counts: dict[str, dict[str, int]], labels: list[str],
                 ratios: dict[str, float] | None = None,
                 stats: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """``stats.json`` ``sources``: per source label ``available`` (records in the source), ``ratio``
    (its ``INPUT@R`` ratio, null without), ``read`` (records taken into the run, copies
    included), ``written``, ``rejected``, ``rejected_by_reason`` and ``share`` (its share of the examples
    written: the mixture's realised share), ``token_share``, and from the source's statistics ``tokens``,
    ``instruction_tokens``, ``output_tokens``, ``dataset_ratio`` and the audit ``recommendation`` (``stats``: the
    per-source statistics; with one source, the run's own). ``written = read - rejected``."""
    ratios = ratios or {}
    out = {}
    for label in labels:
        c = dict(counts.get(label, {}))
        read = c.pop(READ, 0)
        available = c.pop(AVAILABLE, read)  # without a mixture, every record of the source is read
        rejected = sum(c.values())
        out[label] = {"available": available, "ratio": ratios.get(label), "read": read,
                      "written": read - rejected, "rejected": rejected, "rejected_by_reason": dict(sorted(c.items())),
                      **_length_columns((stats or {}).get(label))}
    total = sum(s["written"] for s in out.values())
    tokens = sum(s["tokens"] for s in out.values())
    for s in out.values():
        s["share"] = s["written"] / total if total else None
        s["token_share"] = s["tokens"] / tokens if tokens else None
    return out


def source_lines(sources: dict[str, dict[str, Any]]) -> list[str]:
    """One line per source of a prepared directory's manifest (what ``audit`` prints for it): the mixture ratio,
    records read / written / rejected by reason, realised share, tokens, length ratio and recommendation."""
    lines = []
    for label, s in sources.items():
        ratio = "" if s.get("ratio") is None else f" @{s['ratio']:g}"
        reasons = ", ".join(f"{r} {n:,}" for r, n in s.get("rejected_by_reason", {}).items())
        share = "n/a" if s.get("share") is None else f"{100 * s['share']:.1f} %"
        dr = "n/a" if s.get("dataset_ratio") is None else f"{s['dataset_ratio']:.3f}"
        rec = (s.get("recommendation") or {}).get("summary", "n/a")
        lines.append(f"source {label}{ratio}: read {s['read']:,}, written {s['written']:,}, rejected "
                     f"{s['rejected']:,}{f' ({reasons})' if reasons else ''}, share {share}, tokens "
                     f"{s.get('tokens', 0):,}, ratio {dr}, recommendation {rec}")
    return lines


def source_accounting(summary: dict[str, Any], labels: list[str], ratios: dict[str, float]) -> dict[str, Any]:
    """``stats.json`` ``sources``: read / written / rejected by reason per input source; their sums must be the
    run's own counts (read, rejected by reason, rows written)."""
    per_source = summary.get("source_stats") or ({labels[0]: summary["stats"]} if len(labels) == 1 else {})
    table = source_table(summary.get("sources") or {}, labels, ratios, per_source)
    read = sum(s["read"] for s in table.values())
    rejected = sum(s["rejected"] for s in table.values())
    if read != summary["read"] or rejected != sum(int(r["count"]) for r in summary["rejects"]):
        raise RuntimeError(f"per-source counts ({read} read, {rejected} rejected) differ from the run's; "
                           "nothing is published")
    return table
