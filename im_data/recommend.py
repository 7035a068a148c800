"""Is a dataset suited to Instruction Modelling (IM)? The paper's two fitted curves, and a recommendation.

Source: Shi et al., *Instruction Tuning With Loss Over Instructions* (NeurIPS 2024), the fits of its
Figure 2 / Section 4, made on **Llama-2-7B** results with AlpacaEval 1.0 as the metric. They are a guide,
not a promise: other base models, metrics or data can behave differently.

Two factors, two curves:

* **Ratio curve** (the decision). Predicted relative AlpacaEval-1.0 gain of IM over IT, in percent::

      gain(ratio) = 18.85 * ln(ratio) + 25.83

  where ``ratio`` = mean instruction length / mean output length (the *dataset ratio*). Its break-even
  is ``ratio = exp(-25.83 / 18.85) ~= 0.254``.

* **Small-data curve** (supporting evidence only). The *Superficial Alignment* effect: the relative gain
  of IM over IT as a function of the number of training examples ``n``, fitted at ratio 10 only::

      effect(n) = -39.37 * ln(n) + 431.74

  It is larger for small ``n`` and reaches 0 at ``n = exp(431.74 / 39.37) ~= 58,000``. Because it was
  fitted at a single ratio it is **not added** to the ratio curve; it is reported next to it, and it can
  only make the decision more cautious (see below).

Decision rule (thresholds are ours, chosen so that a user is not told to switch for a predicted gain
that is within the noise of AlpacaEval comparisons):

============  ===============================================  ===========================================
decision      condition                                        equivalent dataset ratio
============  ===============================================  ===========================================
``im``        predicted gain > +5 % and small-data effect > 0  ratio > 0.331 and n < ~58,000
``it``        predicted gain < -5 %                            ratio < 0.195
``neutral``   otherwise (a gain within +-5 %, or an IM gain    0.195 <= ratio <= 0.331, or a large dataset
              on a dataset so large that the small-data fit
              predicts no advantage any more)
============  ===============================================  ===========================================

Where IM is not clearly indicated (``it`` and ``neutral``) we suggest a WIT-style (Weighted Instruction
Tuning) prompt weight: ``0.1`` at the break-even ratio, scaled linearly with the dataset ratio and clipped
to ``[0.01, 0.2]`` (``w = clip(0.1 * ratio / 0.254, 0.01, 0.2)``, rounded to 2 decimals): a dataset with
short instructions gets a small prompt weight, one near the IM threshold gets a weight closer to 0.2.
Use it with ``im-data prepare --mode wit --prompt-weight W``.

This module is pure (no Beam, no I/O): :func:`recommend` takes ``(dataset_ratio, n)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

#: The paper's ratio curve: relative AlpacaEval-1.0 gain (%) of IM over IT = SLOPE * ln(ratio) + INTERCEPT.
RATIO_SLOPE = 18.85
RATIO_INTERCEPT = 25.83
#: The paper's small-data (Superficial Alignment) curve, fitted at ratio 10: effect (%) = SLOPE * ln(n) + INTERCEPT.
SMALL_DATA_SLOPE = -39.37
SMALL_DATA_INTERCEPT = 431.74
SMALL_DATA_FIT_RATIO = 10.0

#: Predicted gain (%) above which we recommend IM, and below which we recommend IT.
IM_THRESHOLD_PCT = 5.0
IT_THRESHOLD_PCT = -5.0
#: WIT prompt weight suggested at the break-even ratio, and its clipping range.
WIT_BASE_WEIGHT = 0.1
WIT_MIN_WEIGHT = 0.01
WIT_MAX_WEIGHT = 0.2

CITATION = ("Shi et al., 'Instruction Tuning With Loss Over Instructions', NeurIPS 2024: "
            "curves fitted on Llama-2-7B AlpacaEval-1.0 results")
CAVEAT = "The fits come from Llama-2-7B results; they are a guide, not a promise."
DECISIONS = ("im", "it", "neutral")


def predicted_gain(ratio: float) -> float:
    """The paper's ratio curve: predicted AlpacaEval-1.0 relative gain of IM over IT, in percent.

    >>> round(predicted_gain(1.0), 2)
    25.83
    >>> predicted_gain(0.0)
    -inf
    """
    if not ratio > 0:
        return -math.inf
    return RATIO_SLOPE * math.log(ratio) + RATIO_INTERCEPT


def small_data_effect(n: int) -> float:
    """The paper's small-data curve (fitted at ratio 10): relative gain of IM over IT in percent for n examples.

    >>> round(small_data_effect(1000), 2)
    159.78
    """
    if n < 1:
        raise ValueError(f"the small-data curve needs n >= 1 examples, got {n}")
    return SMALL_DATA_SLOPE * math.log(n) + SMALL_DATA_INTERCEPT


def ratio_for_gain(gain_pct: float) -> float:
    """Inverse of :func:`predicted_gain`: the dataset ratio at which the predicted gain is ``gain_pct``."""
    return math.exp((gain_pct - RATIO_INTERCEPT) / RATIO_SLOPE)


#: Dataset ratio where the ratio curve predicts no difference between IM and IT (~0.254).
BREAK_EVEN_RATIO = ratio_for_gain(0.0)
#: Dataset size where the small-data curve reaches 0 (~58,000 examples).
SMALL_DATA_ZERO_N = math.exp(-SMALL_DATA_INTERCEPT / SMALL_DATA_SLOPE)


def suggested_prompt_weight(ratio: float) -> float:
    """WIT prompt weight: 0.1 at the break-even ratio, proportional to the ratio, clipped to [0.01, 0.2]."""
    if not ratio > 0:
        return WIT_MIN_WEIGHT
    w = WIT_BASE_WEIGHT * ratio / BREAK_EVEN_RATIO
    return round(min(max(w, WIT_MIN_WEIGHT), WIT_MAX_WEIGHT), 2)


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """The outcome of :func:`recommend`; ``to_dict()`` is the ``recommendation`` object of ``stats.json``."""

    decision: str                       # "im" | "it" | "neutral"
    dataset_ratio: float
    num_examples: int
    predicted_gain_pct: float           # ratio curve; -inf when the ratio is 0
    small_data_effect_pct: float        # small-data curve at n (fitted at ratio 10), supporting evidence only
    reason: str                         # one plain sentence
    suggested_prompt_weight: float | None  # WIT prompt weight where IM is not clearly indicated, else None
    break_even_ratio: float = BREAK_EVEN_RATIO
    citation: str = CITATION
    caveat: str = CAVEAT

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")

    @property
    def summary(self) -> str:
        """A short cell for tables: ``im (+17.9%)`` or ``neutral (+1.2%, WIT 0.1)``."""
        gain = "-inf" if math.isinf(self.predicted_gain_pct) else f"{self.predicted_gain_pct:+.1f}%"
        if self.suggested_prompt_weight is not None:
            return f"{self.decision} ({gain}, WIT {self.suggested_prompt_weight:g})"
        return f"{self.decision} ({gain})"

    def to_dict(self) -> dict[str, Any]:
        gain = None if math.isinf(self.predicted_gain_pct) else round(self.predicted_gain_pct, 4)
        return {
            "decision": self.decision,
            "dataset_ratio": self.dataset_ratio,
            "num_examples": self.num_examples,
            "predicted_gain_pct": gain,
            "small_data_effect_pct": round(self.small_data_effect_pct, 4),
            "reason": self.reason,
            "suggested_prompt_weight": self.suggested_prompt_weight,
            "break_even_ratio": round(self.break_even_ratio, 4),
            "thresholds": {"im_gain_pct": IM_THRESHOLD_PCT, "it_gain_pct": IT_THRESHOLD_PCT},
            "curves": {
                "ratio_gain_pct": f"{RATIO_SLOPE}*ln(ratio) + {RATIO_INTERCEPT}",
                "small_data_effect_pct": f"{SMALL_DATA_SLOPE}*ln(n) + {SMALL_DATA_INTERCEPT} "
                                         f"(fitted at ratio {SMALL_DATA_FIT_RATIO:g})",
                "metric": "AlpacaEval 1.0 relative gain of IM over IT",
                "model": "Llama-2-7B",
            },
            "citation": self.citation,
            "caveat": self.caveat,
        }


def recommend(dataset_ratio: float, n: int) -> Recommendation:
    """Recommend ``im``, ``it`` or ``neutral`` for a dataset of ``n`` examples with the given dataset ratio.

    >>> recommend(0.094, 1030).decision      # LIMA: long outputs
    'it'
    >>> recommend(0.643, 2996).decision      # Alpagasus-Dolly-3k
    'im'
    >>> recommend(0.25, 1000).decision
    'neutral'
    """
    ratio = float(dataset_ratio)
    if math.isnan(ratio) or ratio < 0:
        raise ValueError(f"dataset ratio must be >= 0, got {dataset_ratio!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"cannot recommend for an empty dataset (n={n})")
    gain = predicted_gain(ratio)
    small = small_data_effect(n)
    gain_txt = "an unbounded loss" if math.isinf(gain) else f"{gain:+.1f}%"
    small_txt = f"the small-data effect at n={n:,} is {small:+.0f}% at ratio 10"
    if gain > IM_THRESHOLD_PCT and small > 0:
        decision = "im"
        reason = (f"Instructions are long relative to outputs (ratio {ratio:.3g} > break-even "
                  f"{BREAK_EVEN_RATIO:.2f}), so the paper's fit predicts {gain_txt} AlpacaEval gain for IM, "
                  f"and {small_txt}, which supports it.")
    elif gain > IM_THRESHOLD_PCT:
        decision = "neutral"
        reason = (f"The ratio curve predicts {gain_txt} for IM (ratio {ratio:.3g}), but with {n:,} examples "
                  f"the paper's small-data fit predicts no IM advantage ({small:+.0f}% at ratio 10), so IM is "
                  f"not clearly indicated.")
    elif gain < IT_THRESHOLD_PCT:
        decision = "it"
        reason = (f"Outputs are much longer than instructions (ratio {ratio:.3g} < break-even "
                  f"{BREAK_EVEN_RATIO:.2f}), so the paper's fit predicts {gain_txt} for IM: keep the loss on "
                  f"outputs (IT), or give instructions only a small weight.")
    else:
        decision = "neutral"
        reason = (f"The ratio {ratio:.3g} is close to the break-even {BREAK_EVEN_RATIO:.2f}, so the predicted "
                  f"difference ({gain_txt}) is within +-{IM_THRESHOLD_PCT:g}%; {small_txt}.")
    weight = None if decision == "im" else suggested_prompt_weight(ratio)
    return Recommendation(decision=decision, dataset_ratio=ratio, num_examples=n, predicted_gain_pct=gain,
                          small_data_effect_pct=small, reason=reason, suggested_prompt_weight=weight)
