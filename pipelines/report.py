"""Audit outputs: the comparison table (terminal and Markdown), the two plots, ``stats.json`` and ``report.md``.

Everything here works from plain data: one :class:`DatasetAudit` per dataset, holding the ``stats.json``
dict of ``LengthStats.to_dict()`` (the same schema as ``prepare``), the recommendation and a sample of
per-example ``(instruction tokens, output tokens)`` pairs for the scatter plot. No Beam here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from im_data.recommend import (BREAK_EVEN_RATIO, CAVEAT, CITATION, IM_THRESHOLD_PCT, IT_THRESHOLD_PCT,
                               RATIO_INTERCEPT, RATIO_SLOPE, SMALL_DATA_INTERCEPT, SMALL_DATA_SLOPE,
                               Recommendation)
from im_data.roles import ROLE_TABLE, content_roles, roles_on_side

SHORT_ROLE = {r.name: r.short for r in ROLE_TABLE}
#: "system + user + tool" / "assistant + reasoning + tool_call": what the length columns count
INSTRUCTION_CONTENT = " + ".join(content_roles("instruction"))
OUTPUT_CONTENT = " + ".join(content_roles("output"))
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclasses.dataclass
class DatasetAudit:
    name: str
    stats: dict[str, Any]                  # LengthStats.to_dict()
    recommendation: Recommendation
    lengths: np.ndarray | None = None      # int64[k, 2]: (instruction tokens, output tokens), possibly a sample
    source: str = ""                       # what was read (paths), for the report

    def stats_json(self) -> dict[str, Any]:
        """``stats.json`` content: prepare's schema plus ``name``, ``inputs`` and ``recommendation``."""
        out = dict(self.stats)
        out["name"] = self.name
        if self.source:
            out["inputs"] = self.source
        out["recommendation"] = self.recommendation.to_dict()
        return out


# --------------------------------------------------------------------------------------------------- table
def _num(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, (int, np.integer)) or float(x).is_integer() and abs(float(x)) >= 1000:
        return f"{int(x):,}"
    return f"{float(x):,.{digits}f}"


def _ratio(x: Any, digits: int = 3) -> str:
    if x is None or not math.isfinite(float(x)):
        return "-"
    x = float(x)
    return f"{x:.{digits}g}" if x < 1000 else f"{x:,.0f}"


def _mass_share(share: dict[str, float] | None) -> str:
    """``{"user": 0.38, "assistant": 0.6, ...}`` -> ``user 38% · asst 60% · end 2%`` (non-zero roles only)."""
    if not share:
        return "-"
    parts = []
    for role, value in share.items():
        value = float(value or 0.0)
        if value > 0:
            pct = value * 100
            parts.append(f"{SHORT_ROLE.get(role, role)} {pct:.0f}" if pct >= 1 else f"{SHORT_ROLE.get(role, role)} "
                                                                                   f"{pct:.1g}")
    return " · ".join(parts) or "-"


TABLE_COLUMNS = ("dataset", "examples", "instruction tokens mean / median", "output tokens mean / median",
                 "dataset ratio", "per-example ratio p5 / p25 / p50 / p75 / p95", "truncated",
                 "weight mass % per role, IT", "weight mass % per role, IM", "recommendation")
#: Shorter two-line headers for the terminal table.
TERMINAL_HEADERS = ("dataset", "examples", "instr. tokens\nmean / median", "output tokens\nmean / median",
                    "dataset\nratio", "per-example ratio\np5 / p25 / p50 / p75 / p95", "trun-\ncated",
                    "weight mass %\nunder IT", "weight mass %\nunder IM", "recommendation")


def table_rows(audits: Sequence[DatasetAudit]) -> list[list[str]]:
    rows = []
    for a in audits:
        s = a.stats
        ins, out = s.get("instruction_tokens", {}), s.get("output_tokens", {})
        q = s.get("ratio_quantiles", {}) or {}
        count = int(s.get("count", 0))
        trunc = int(s.get("truncated", 0))
        shares = s.get("weight_mass_share", {}) or {}
        rows.append([
            a.name,
            f"{count:,}",
            f"{_num(ins.get('mean'))} / {_num(ins.get('median'))}",
            f"{_num(out.get('mean'))} / {_num(out.get('median'))}",
            _ratio(s.get("dataset_ratio")),
            " / ".join(_ratio(q.get(k), 2) for k in ("p05", "p25", "p50", "p75", "p95")),
            f"{trunc / count:.1%}" if count and s.get("max_length") is not None else "-",
            _mass_share(shares.get("it")),
            _mass_share(shares.get("im")),
            a.recommendation.summary,
        ])
    return rows


#: Column groups for narrow terminals: two tables, each still one row per dataset.
NARROW_GROUPS = ((0, 1, 2, 3, 4, 6, 9), (0, 5, 7, 8))
_LEFT = (0, 7, 8, 9)


def rich_tables(audits: Sequence[DatasetAudit], width: int | None = None, title: str = "im-data audit") -> list[Any]:
    """One rich table with every column when it fits in ``width``, else two narrower ones."""
    from rich.console import Console
    from rich.table import Table

    style = {"im": "bold green", "it": "bold yellow", "neutral": "bold cyan"}
    rows = table_rows(audits)
    for a, row in zip(audits, rows):
        row[9] = f"[{style[a.recommendation.decision]}]{row[9]}[/]"

    def make(cols: Sequence[int], t: str) -> Any:
        table = Table(title=t, title_justify="left", show_lines=len(audits) > 1)
        for i in cols:
            table.add_column(TERMINAL_HEADERS[i], justify="left" if i in _LEFT else "right",
                             overflow="fold", no_wrap=i in (1, 4, 6))
        for row in rows:
            table.add_row(*[row[i] for i in cols])
        return table

    full = make(range(len(TERMINAL_HEADERS)), title)
    if width is None:
        return [full]
    needed = Console(width=10_000).measure(full).maximum
    if needed <= width:
        return [full]
    return [make(NARROW_GROUPS[0], title), make(NARROW_GROUPS[1], f"{title}: per-example ratios and weight mass")]


def recommendation_lines(audits: Sequence[DatasetAudit]) -> list[str]:
    """One plain sentence per dataset, then the formulas, citation and caveat (printed once)."""
    lines = []
    for a in audits:
        r = a.recommendation
        line = f"{a.name}: {r.decision.upper()}. {r.reason}"
        if r.suggested_prompt_weight is not None:
            line += (f" Suggested WIT prompt weight: {r.suggested_prompt_weight:g} "
                     f"(im-data prepare --mode wit --prompt-weight {r.suggested_prompt_weight:g}).")
        lines.append(line)
    lines.append(formula_note())
    return lines


def formula_note() -> str:
    return (f"Predicted AlpacaEval-1.0 relative gain of IM over IT = {RATIO_SLOPE}·ln(ratio) + {RATIO_INTERCEPT} % "
            f"(break-even ratio ≈ {BREAK_EVEN_RATIO:.2f}; im above {IM_THRESHOLD_PCT:+g}%, it below "
            f"{IT_THRESHOLD_PCT:+g}%); small-data effect, fitted at ratio 10 and shown as supporting evidence = "
            f"{SMALL_DATA_SLOPE}·ln(n) + {SMALL_DATA_INTERCEPT} %. Source: {CITATION}. {CAVEAT}")


def print_audit(audits: Sequence[DatasetAudit], console: Any = None) -> None:
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    for table in rich_tables(audits, width=console.width):
        console.print(table)
    for line in recommendation_lines(audits):
        console.print(Text(line))


def markdown_table(audits: Sequence[DatasetAudit]) -> str:
    def cell(x: str) -> str:
        return x.replace("|", "\\|")

    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |",
             "|" + "|".join("---" if i in (0, 7, 8, 9) else "---:" for i in range(len(TABLE_COLUMNS))) + "|"]
    for row in table_rows(audits):
        lines.append("| " + " | ".join(cell(x) for x in row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_ratio_hist(audits: Sequence[DatasetAudit], path: str | os.PathLike) -> None:
    """Histogram of per-example ratios (share of examples per fixed log bin), log x axis; each dataset's ratio
    as a dashed line in its colour, the paper's break-even as a black line, under/overflow noted."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 6.2), dpi=110)
    xmin, xmax = math.inf, 0.0
    notes = []
    for i, a in enumerate(audits):
        color = COLORS[i % len(COLORS)]
        h = a.stats.get("ratio_histogram") or {}
        edges = np.asarray(h.get("edges", []), dtype=float)
        counts = np.asarray(h.get("counts", []), dtype=float)
        count = max(int(a.stats.get("count", 0)), 1)
        if len(edges) >= 2 and len(counts) == len(edges) - 1:
            nz = np.nonzero(counts)[0]
            if len(nz):
                lo, hi = max(nz[0] - 1, 0), min(nz[-1] + 2, len(counts))
                xmin, xmax = min(xmin, edges[lo]), max(xmax, edges[hi])
            ax.stairs(counts / count, edges, color=color, linewidth=1.8, label=f"{a.name} (n={count:,})")
            ax.stairs(counts / count, edges, color=color, alpha=0.12, fill=True)
        under, over = int(h.get("underflow", 0)), int(h.get("overflow", 0))
        if under or over:
            notes.append(f"{a.name}: {under:,} below / {over:,} above the bins")
        ratio = a.stats.get("dataset_ratio")
        if ratio and math.isfinite(ratio) and ratio > 0:
            ax.axvline(ratio, color=color, linestyle="--", linewidth=1.6,
                       label=f"{a.name} dataset ratio = {ratio:.3f}")
            xmin, xmax = min(xmin, ratio), max(xmax, ratio)
    ax.axvline(BREAK_EVEN_RATIO, color="black", linestyle=":", linewidth=2,
               label=f"paper's break-even ≈ {BREAK_EVEN_RATIO:.2f} (IM helps to the right)")
    if not math.isfinite(xmin) or xmax <= 0:
        xmin, xmax = 1e-3, 1e2
    xmin, xmax = min(xmin, BREAK_EVEN_RATIO / 2), max(xmax, BREAK_EVEN_RATIO * 2)
    ax.set_xscale("log")
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("per-example ratio = instruction tokens / output tokens (log scale)")
    ax.set_ylabel("share of examples per bin")
    ax.set_title("Instruction-to-output length ratio per example")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    if notes:
        ax.text(0.99, 0.98, "\n".join(notes), transform=ax.transAxes, ha="right", va="top", fontsize=7.5,
                color="#444")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_lengths(audits: Sequence[DatasetAudit], path: str | os.PathLike) -> None:
    """Instruction length against output length per example (log-log scatter), with the paper's break-even
    line (output = instruction / 0.254): points above it have ratio below break-even."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 7.6), dpi=110)
    lo, hi = math.inf, 1.0
    means = []
    for i, a in enumerate(audits):
        if a.lengths is None or len(a.lengths) == 0:
            continue
        xy = np.maximum(np.asarray(a.lengths, dtype=float), 1.0)  # log axes: 0 tokens plotted at 1
        color = COLORS[i % len(COLORS)]
        alpha = float(np.clip(30.0 / math.sqrt(len(xy)), 0.08, 0.7))
        total = int(a.stats.get("count", len(xy)))
        label = f"{a.name} (n={total:,})" if len(xy) >= total else f"{a.name} ({len(xy):,} of {total:,} sampled)"
        ax.scatter(xy[:, 0], xy[:, 1], s=7, color=color, alpha=alpha, linewidths=0, label=label, rasterized=True)
        lo, hi = min(lo, xy.min()), max(hi, xy.max())
        mi, mo = (a.stats.get("instruction_tokens") or {}).get("mean"), (a.stats.get("output_tokens") or {}).get("mean")
        if mi and mo:
            means.append((a.name, float(mi), float(mo), color))
    for name, mi, mo, color in means:  # drawn last, on top of every cloud
        ax.scatter([mi], [mo], s=170, marker="*", color=color, edgecolors="black", linewidths=1.2, zorder=5,
                   label=f"{name} mean (dataset ratio {mi / mo:.3f})")
    if not math.isfinite(lo):
        lo, hi = 1.0, 10.0
    lo, hi = lo / 1.5, hi * 1.5
    line = np.array([lo, hi])
    ax.plot(line, line / BREAK_EVEN_RATIO, color="black", linestyle=":", linewidth=2,
            label=f"paper's break-even: ratio ≈ {BREAK_EVEN_RATIO:.2f}")
    ax.plot(line, line, color="#777", linestyle="-", linewidth=1, label="ratio = 1 (equal lengths)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(f"instruction tokens per example ({INSTRUCTION_CONTENT} content, log scale)")
    ax.set_ylabel(f"output tokens per example ({OUTPUT_CONTENT} content, log scale)")
    ax.set_title("Instruction length vs output length per example\n"
                 "(above the dotted line: ratio below the paper's break-even)", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    leg = ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, frameon=False)
    for handle in leg.legend_handles:
        if hasattr(handle, "set_alpha"):
            handle.set_alpha(1.0)
        if hasattr(handle, "set_sizes") and handle.get_sizes() is not None and len(handle.get_sizes()) \
                and handle.get_sizes()[0] < 50:
            handle.set_sizes([30])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -------------------------------------------------------------------------------------------------- report
def stats_document(audits: Sequence[DatasetAudit]) -> dict[str, Any]:
    """``stats.json``: one dataset -> prepare's schema + ``name`` + ``recommendation``;
    several -> ``{"datasets": [that, ...]}`` in input order."""
    docs = [a.stats_json() for a in audits]
    return docs[0] if len(docs) == 1 else {"datasets": docs}


def write_report(audits: Sequence[DatasetAudit], directory: str | os.PathLike, *, command: str = "") -> dict[str, Path]:
    """Write ``stats.json``, ``ratio_hist.png``, ``lengths.png`` and ``report.md`` into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {name: d / name for name in ("stats.json", "ratio_hist.png", "lengths.png", "report.md")}
    tmp = paths["stats.json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(stats_document(audits), indent=2, sort_keys=False, allow_nan=False) + "\n")
    os.replace(tmp, paths["stats.json"])
    plot_ratio_hist(audits, paths["ratio_hist.png"])
    plot_lengths(audits, paths["lengths.png"])
    md = ["# im-data audit", ""]
    if command:
        md += ["```", command, "```", ""]
    md += [markdown_table(audits), ""]
    md += ["## Recommendation", ""]
    md += [f"- {line}" for line in recommendation_lines(audits)[:-1]]
    md += ["", f"*{formula_note()}*", ""]
    md += ["## Per-example ratio", "", "![per-example ratio histogram](ratio_hist.png)", "",
           "## Instruction vs output length", "", "![instruction length against output length](lengths.png)", ""]
    md += [f"Columns: token counts are of message *content* only (instruction = {INSTRUCTION_CONTENT}, output = "
           f"{OUTPUT_CONTENT}), counted before truncation. Dataset ratio = mean instruction / mean output tokens (as "
           "in the paper). Weight mass shares: the share of the total loss weight carried by each role when the same "
           f"examples are encoded under IT ({', '.join(roles_on_side('output'))}) and under IM (every role but "
           "template), after truncation.",
           ""]
    paths["report.md"].write_text("\n".join(md))
    return paths
