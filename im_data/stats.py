"""Mergeable length statistics (in the style of datatrove's ``MetricStats``).

The **dataset ratio** is the paper's: mean instruction length / mean output length = Σ instruction tokens /
Σ output tokens, computed from merged sums, never as a mean of per-example ratios. Instruction tokens are the
content tokens of ``system``/``user``/``tool`` messages; output tokens are the ``assistant``, ``reasoning`` and
``tool_call`` tokens, both counted before truncation (the ``content`` and ``side`` columns of
:data:`im_data.roles.ROLE_TABLE`). Tokens and weight mass are also kept per role, for every role of the table.

Everything merges exactly (integer sums, fixed histogram bins, weight mass in integer units of 2**-64), so the
result is the same whatever the runner, bundle sizes or merge order.

>>> a, b = LengthStats(), LengthStats()
>>> a.add({"num_instruction_tokens": 30, "num_output_tokens": 10, "num_template_tokens": 5})
>>> b.add({"num_instruction_tokens": 10, "num_output_tokens": 30, "num_template_tokens": 5})
>>> a.merge(b).dataset_ratio  # (30 + 10) / (10 + 30), although the per-example ratios are 3 and 1/3
1.0
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from .policy import WeightPolicy
from .roles import NUM_ROLES, ROLE_LABELS

STATS_SCHEMA_VERSION = 1
#: per-example ratio histogram: 10 log-spaced bins per decade from 1e-3 to 1e3, plus underflow/overflow
RATIO_EDGES = np.logspace(-3, 3, 61)
#: token-length histograms (for medians): 20 bins per decade from 1 to 1e6 tokens, plus underflow (0)/overflow
LENGTH_EDGES = np.logspace(0, 6, 121)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
MASS_SCALE = 2.0 ** 64  # weight mass is summed exactly as integers in units of 2**-64
_FIELDS = ("instruction", "output", "template")


def _hist_quantile(edges: np.ndarray, counts: list[int], q: float, lo: float, hi: float) -> float | None:
    total = sum(counts)
    if total == 0:
        return None
    target, cum = q * total, 0
    for i, c in enumerate(counts):
        if c and cum + c >= target:
            left = lo if i == 0 else float(edges[i - 1])
            right = hi if i == len(counts) - 1 else float(edges[i])
            left, right = max(left, lo), min(right, hi)
            frac = (target - cum) / c
            if left > 0 and right > 0:
                value = math.exp(math.log(left) + frac * (math.log(right) - math.log(left)))
            else:
                value = left + frac * (right - left)
            return float(min(max(value, lo), hi))
        cum += c
    return hi


def _per_role(values: Any, dtype: type, k: int) -> np.ndarray:
    """``values`` as a [k, NUM_ROLES] array; roles missing on the right (older data) are 0."""
    arr = np.asarray(values, dtype=dtype).reshape(k, -1)
    if arr.shape[1] > NUM_ROLES:
        raise ValueError(f"{arr.shape[1]} role columns, but the role table has {NUM_ROLES} roles")
    return np.pad(arr, ((0, 0), (0, NUM_ROLES - arr.shape[1])))


class LengthStats:
    """Count, sums, min/max, tokens and weight mass per role, and fixed log-scale histograms."""

    def __init__(self) -> None:
        self.count = 0
        self.truncated = 0
        self.sums = {f: 0 for f in _FIELDS}
        self.mins: dict[str, int | None] = {f: None for f in _FIELDS}
        self.maxs: dict[str, int | None] = {f: None for f in _FIELDS}
        self.role_tokens = [0] * NUM_ROLES
        self.weight_mass_units = [0] * NUM_ROLES
        self.ratio_hist = [0] * (len(RATIO_EDGES) + 1)
        self.length_hist = {f: [0] * (len(LENGTH_EDGES) + 1) for f in ("instruction", "output")}
        self.ratio_min: Fraction | None = None
        self.ratio_max: Fraction | None = None

    # -- accumulate ---------------------------------------------------------------------------
    def add(self, summary: Mapping[str, Any]) -> None:
        """Add one example's :meth:`EncodedExample.summary` (a dict)."""
        self.add_arrays(
            num_instruction_tokens=[summary["num_instruction_tokens"]],
            num_output_tokens=[summary["num_output_tokens"]],
            num_template_tokens=[summary.get("num_template_tokens", 0) or 0],
            truncated=[bool(summary.get("truncated", False))],
            role_token_counts=None if summary.get("role_token_counts") is None else [summary["role_token_counts"]],
            weight_mass=None if summary.get("weight_mass") is None else [summary["weight_mass"]])

    def add_examples(self, examples) -> None:
        """Add many :class:`~im_data.encode.EncodedExample` s at once (vectorised)."""
        if not examples:
            return
        self.add_arrays(
            num_instruction_tokens=[e.num_instruction_tokens for e in examples],
            num_output_tokens=[e.num_output_tokens for e in examples],
            num_template_tokens=[e.num_template_tokens for e in examples],
            truncated=[e.truncated for e in examples],
            role_token_counts=np.stack([e.role_token_counts for e in examples]),
            weight_mass=np.stack([e.weight_mass for e in examples]))

    def add_arrays(self, *, num_instruction_tokens, num_output_tokens, num_template_tokens, truncated,
                   role_token_counts=None, weight_mass=None) -> None:
        """Add k examples given as aligned arrays (``role_token_counts``/``weight_mass``: shape [k, NUM_ROLES]; fewer
        columns, from data written before a role existed, count as 0 for the missing roles)."""
        values = {"instruction": np.asarray(num_instruction_tokens, dtype=np.int64),
                  "output": np.asarray(num_output_tokens, dtype=np.int64),
                  "template": np.asarray(num_template_tokens, dtype=np.int64)}
        k = int(values["instruction"].shape[0])
        if k == 0:
            return
        self.count += k
        self.truncated += int(np.count_nonzero(np.asarray(truncated, dtype=bool)))
        for f, v in values.items():
            self.sums[f] += int(v.sum())
            lo, hi = int(v.min()), int(v.max())
            self.mins[f] = lo if self.mins[f] is None else min(self.mins[f], lo)
            self.maxs[f] = hi if self.maxs[f] is None else max(self.maxs[f], hi)
        for f in ("instruction", "output"):
            bins = np.searchsorted(LENGTH_EDGES, values[f], side="right")
            for i, c in enumerate(np.bincount(bins, minlength=len(LENGTH_EDGES) + 1).tolist()):
                self.length_hist[f][i] += c
        if role_token_counts is not None:
            for r, c in enumerate(_per_role(role_token_counts, np.int64, k).sum(axis=0).tolist()):
                self.role_tokens[r] += c
        if weight_mass is not None:
            scaled = _per_role(weight_mass, np.float64, k) * MASS_SCALE  # exact: a power-of-two scaling
            for r in range(NUM_ROLES):
                self.weight_mass_units[r] += sum(int(x) for x in scaled[:, r].tolist() if x)
        has_out = values["output"] > 0
        if has_out.any():
            instr, out = values["instruction"][has_out], values["output"][has_out]
            ratios = instr / out
            bins = np.searchsorted(RATIO_EDGES, ratios, side="right")
            for i, c in enumerate(np.bincount(bins, minlength=len(RATIO_EDGES) + 1).tolist()):
                self.ratio_hist[i] += c
            i_min, i_max = int(np.argmin(ratios)), int(np.argmax(ratios))
            r_min, r_max = Fraction(int(instr[i_min]), int(out[i_min])), Fraction(int(instr[i_max]), int(out[i_max]))
            self.ratio_min = r_min if self.ratio_min is None else min(self.ratio_min, r_min)
            self.ratio_max = r_max if self.ratio_max is None else max(self.ratio_max, r_max)

    def merge(self, other: "LengthStats") -> "LengthStats":
        """Merge ``other`` into ``self`` (exact and order-independent); returns ``self``."""
        self.count += other.count
        self.truncated += other.truncated
        for f in _FIELDS:
            self.sums[f] += other.sums[f]
            pairs = [v for v in (self.mins[f], other.mins[f]) if v is not None]
            self.mins[f] = min(pairs) if pairs else None
            pairs = [v for v in (self.maxs[f], other.maxs[f]) if v is not None]
            self.maxs[f] = max(pairs) if pairs else None
        self.role_tokens = [a + b for a, b in zip(self.role_tokens, other.role_tokens)]
        self.weight_mass_units = [a + b for a, b in zip(self.weight_mass_units, other.weight_mass_units)]
        self.ratio_hist = [a + b for a, b in zip(self.ratio_hist, other.ratio_hist)]
        for f in self.length_hist:
            self.length_hist[f] = [a + b for a, b in zip(self.length_hist[f], other.length_hist[f])]
        for attr, pick in (("ratio_min", min), ("ratio_max", max)):
            vals = [v for v in (getattr(self, attr), getattr(other, attr)) if v is not None]
            setattr(self, attr, pick(vals) if vals else None)
        return self

    @classmethod
    def merged(cls, parts) -> "LengthStats":
        out = cls()
        for part in parts:
            out.merge(part)
        return out

    # -- read ---------------------------------------------------------------------------------
    @property
    def dataset_ratio(self) -> float | None:
        """Σ instruction tokens / Σ output tokens (= mean instruction / mean output length)."""
        if self.sums["output"] == 0:
            return None
        return self.sums["instruction"] / self.sums["output"]

    def ratio_quantiles(self) -> dict[str, float | None]:
        lo = float(self.ratio_min) if self.ratio_min is not None else 0.0
        hi = float(self.ratio_max) if self.ratio_max is not None else 0.0
        return {f"p{int(q * 100):02d}": _hist_quantile(RATIO_EDGES, self.ratio_hist, q, lo, hi) for q in QUANTILES}

    def median(self, field: str) -> float | None:
        lo, hi = self.mins[field], self.maxs[field]
        if lo is None:
            return None
        return _hist_quantile(LENGTH_EDGES, self.length_hist[field], 0.5, float(lo), float(hi))

    def weight_mass_share(self) -> dict[str, dict[str, float]]:
        """Share of weight mass per role under the ``it`` and ``im`` presets, from the token counts per role."""
        tokens = np.asarray(self.role_tokens, dtype=np.float64)
        out = {}
        for mode in ("it", "im"):
            mass = tokens * WeightPolicy.preset(mode).weights_array()
            total = mass.sum()
            out[mode] = dict(zip(ROLE_LABELS, (mass / total if total else mass * 0.0).tolist()))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The ``stats.json`` schema: readable figures plus the exact accumulator state (``accumulator``)."""
        def block(f: str) -> dict[str, Any]:
            d = {"sum": self.sums[f], "min": self.mins[f], "max": self.maxs[f],
                 "mean": (self.sums[f] / self.count) if self.count else None}
            if f in self.length_hist:
                d["median"] = self.median(f)
            return d

        ratio = self.dataset_ratio
        return {
            "schema_version": STATS_SCHEMA_VERSION,
            "count": self.count,
            "truncated": self.truncated,
            "truncated_share": (self.truncated / self.count) if self.count else 0.0,
            "instruction_tokens": block("instruction"),
            "output_tokens": block("output"),
            "template_tokens": block("template"),
            "dataset_ratio": ratio,
            "ratio_definition": "mean instruction tokens / mean output tokens (sum over sum, not a mean of ratios)",
            "ratio_min": float(self.ratio_min) if self.ratio_min is not None else None,
            "ratio_max": float(self.ratio_max) if self.ratio_max is not None else None,
            "ratio_quantiles": self.ratio_quantiles(),
            "ratio_histogram": {"edges": [float(e) for e in RATIO_EDGES], "counts": self.ratio_hist[1:-1],
                                "underflow": self.ratio_hist[0], "overflow": self.ratio_hist[-1]},
            "tokens_per_role": dict(zip(ROLE_LABELS, self.role_tokens)),
            "weight_mass_per_role": {ROLE_LABELS[r]: u / MASS_SCALE for r, u in enumerate(self.weight_mass_units)},
            "weight_mass_share": self.weight_mass_share(),
            "accumulator": {
                "sums": self.sums, "mins": self.mins, "maxs": self.maxs,
                "weight_mass_units": [str(u) for u in self.weight_mass_units],  # units of 2**-64
                "ratio_hist": self.ratio_hist, "length_hist": self.length_hist,
                "ratio_min": None if self.ratio_min is None else f"{self.ratio_min.numerator}/{self.ratio_min.denominator}",
                "ratio_max": None if self.ratio_max is None else f"{self.ratio_max.numerator}/{self.ratio_max.denominator}",
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LengthStats":
        acc = data["accumulator"]
        s = cls()
        s.count, s.truncated = int(data["count"]), int(data["truncated"])
        s.sums = {f: int(acc["sums"][f]) for f in _FIELDS}
        s.mins = {f: acc["mins"][f] for f in _FIELDS}
        s.maxs = {f: acc["maxs"][f] for f in _FIELDS}
        # stats written before a role existed have no entry for it: zero tokens, zero mass
        s.role_tokens = [int(data["tokens_per_role"].get(label, 0)) for label in ROLE_LABELS]
        units = [int(u) for u in acc["weight_mass_units"]]
        s.weight_mass_units = units + [0] * (NUM_ROLES - len(units))
        s.ratio_hist = [int(c) for c in acc["ratio_hist"]]
        s.length_hist = {f: [int(c) for c in v] for f, v in acc["length_hist"].items()}
        s.ratio_min = None if acc["ratio_min"] is None else Fraction(acc["ratio_min"])
        s.ratio_max = None if acc["ratio_max"] is None else Fraction(acc["ratio_max"])
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LengthStats) and self.to_dict() == other.to_dict()
