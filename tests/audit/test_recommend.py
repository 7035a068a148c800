"""The paper's curves and the recommendation rule (im_data.recommend), table-driven."""

from __future__ import annotations

import json
import math

import pytest

from im_data.recommend import (BREAK_EVEN_RATIO, SMALL_DATA_ZERO_N, Recommendation, predicted_gain, ratio_for_gain,
                               recommend, small_data_effect, suggested_prompt_weight)


@pytest.mark.parametrize("ratio, expected", [
    (1.0, 25.83),
    (math.e, 18.85 + 25.83),
    (0.094, 18.85 * math.log(0.094) + 25.83),   # LIMA (Figure 2)
    (0.643, 18.85 * math.log(0.643) + 25.83),   # Alpagasus-Dolly-3k
    (10.0, 18.85 * math.log(10) + 25.83),
])
def test_ratio_curve(ratio, expected):
    assert predicted_gain(ratio) == pytest.approx(expected)


@pytest.mark.parametrize("n, expected", [(1, 431.74), (1000, -39.37 * math.log(1000) + 431.74),
                                         (10_000, -39.37 * math.log(10_000) + 431.74)])
def test_small_data_curve(n, expected):
    assert small_data_effect(n) == pytest.approx(expected)


def test_break_even_and_zero_points():
    assert BREAK_EVEN_RATIO == pytest.approx(0.254, abs=5e-4)      # the paper's "ratio ~ 0.25"
    assert predicted_gain(BREAK_EVEN_RATIO) == pytest.approx(0.0, abs=1e-9)
    assert small_data_effect(round(SMALL_DATA_ZERO_N)) == pytest.approx(0.0, abs=1e-3)
    assert ratio_for_gain(5.0) == pytest.approx(0.331, abs=1e-3)
    assert ratio_for_gain(-5.0) == pytest.approx(0.195, abs=1e-3)


@pytest.mark.parametrize("ratio, n, decision, weight", [
    (0.094, 1_030, "it", 0.04),          # LIMA: long outputs, IM predicted to hurt
    (0.643, 2_996, "im", None),          # Alpagasus-Dolly-3k
    (0.566, 5_305, "im", None),          # Alpagasus-Claude-t45-Alpaca
    (0.25, 1_000, "neutral", 0.1),       # at the break-even
    (0.32, 1_000, "neutral", 0.13),      # +4.2%: within the +-5% band
    (0.34, 1_000, "im", None),           # +5.5%
    (0.19, 1_000, "it", 0.07),           # -5.5%
    (0.20, 1_000, "neutral", 0.08),      # -4.5%
    (10.0, 100_000, "neutral", 0.2),     # large gain by ratio, but the small-data fit predicts none at this size
    (10.0, 50_000, "im", None),
    (0.0, 10, "it", 0.01),               # no instruction tokens at all
    (1e-6, 10, "it", 0.01),
])
def test_decisions(ratio, n, decision, weight):
    rec = recommend(ratio, n)
    assert rec.decision == decision
    assert rec.suggested_prompt_weight == weight
    assert rec.reason.endswith(".") and "\n" not in rec.reason
    assert rec.num_examples == n


def test_prompt_weight_scales_with_ratio_and_is_clipped():
    ws = [suggested_prompt_weight(r) for r in (0.001, 0.05, 0.1, 0.2, 0.254, 0.3, 1.0, 100.0)]
    assert ws == sorted(ws)
    assert ws[0] == 0.01 and ws[-1] == 0.2
    assert suggested_prompt_weight(BREAK_EVEN_RATIO) == 0.1


def test_to_dict_is_json_and_cites_the_paper():
    d = recommend(0.643, 2996).to_dict()
    text = json.dumps(d, allow_nan=False)
    assert d["decision"] == "im"
    assert d["predicted_gain_pct"] == pytest.approx(18.85 * math.log(0.643) + 25.83, abs=1e-3)
    assert "18.85*ln(ratio) + 25.83" in d["curves"]["ratio_gain_pct"]
    assert "-39.37*ln(n) + 431.74" in d["curves"]["small_data_effect_pct"]
    assert "Llama-2-7B" in d["caveat"] and "guide, not a promise" in d["caveat"]
    assert "Instruction Tuning With Loss Over Instructions" in d["citation"]
    assert "NaN" not in text and "Infinity" not in text
    zero = recommend(0.0, 5).to_dict()
    assert zero["predicted_gain_pct"] is None
    json.dumps(zero, allow_nan=False)


def test_frozen_and_validated():
    rec = recommend(0.5, 100)
    with pytest.raises(Exception):
        rec.decision = "it"  # type: ignore[misc]
    with pytest.raises(ValueError):
        recommend(0.5, 0)
    with pytest.raises(ValueError):
        recommend(float("nan"), 10)
    with pytest.raises(ValueError):
        recommend(-1.0, 10)
    with pytest.raises(ValueError):
        Recommendation(decision="maybe", dataset_ratio=1, num_examples=1, predicted_gain_pct=0,
                       small_data_effect_pct=0, reason="x.", suggested_prompt_weight=None)
