"""The role table (im_data.roles.ROLE_TABLE) and what reads it: presets by side, length statistics by content,
per-role tokens and weight mass for every role, data written before reasoning/tool_call existed."""

from __future__ import annotations

import numpy as np
import pytest

from im_data import LengthStats, WeightPolicy, parse_weight_overrides
from im_data.render import HTML_BG, TERMINAL_BG
from im_data.roles import (CONTENT_MASK, INSTRUCTION_MASK, NUM_ROLES, OUTPUT_MASK, OUTPUT_SIDE_MASK, ROLE_CODES,
                           ROLE_LABELS, ROLE_TABLE, TEMPLATE_COUNT_MASK, Role, roles_on_side)


def test_the_spec_roles_and_codes():
    # codes 0-5 keep their numbers; reasoning (6) and tool_call (7) are output-side roles
    assert ROLE_CODES == {"template": 0, "system": 1, "user": 2, "tool": 3, "assistant": 4, "assistant_end": 5,
                          "reasoning": 6, "tool_call": 7}
    assert (Role.REASONING, Role.TOOL_CALL) == (6, 7) and Role.TOOL_CALL.label == "tool_call"
    assert Role.from_label("reasoning") is Role.REASONING
    assert roles_on_side("template") == ("template",)
    assert roles_on_side("instruction") == ("system", "user", "tool")
    assert roles_on_side("output") == ("assistant", "assistant_end", "reasoning", "tool_call")
    with pytest.raises(ValueError, match="unknown side"):
        roles_on_side("prompt")


def test_masks():
    def names(mask):
        return {ROLE_LABELS[i] for i in np.flatnonzero(mask)}

    assert names(INSTRUCTION_MASK) == {"system", "user", "tool"}
    assert names(OUTPUT_MASK) == {"assistant", "reasoning", "tool_call"}
    assert names(OUTPUT_SIDE_MASK) == {"assistant", "assistant_end", "reasoning", "tool_call"}
    assert names(TEMPLATE_COUNT_MASK) == {"template", "assistant_end"}
    assert names(CONTENT_MASK) == set(ROLE_LABELS) - {"template", "assistant_end"}
    assert len(INSTRUCTION_MASK) == len(OUTPUT_MASK) == NUM_ROLES == len(ROLE_TABLE) == 8


def test_every_role_has_distinct_colours_and_labels():
    assert set(TERMINAL_BG) == set(HTML_BG) == set(ROLE_LABELS)
    assert len(set(TERMINAL_BG.values())) == len(set(HTML_BG.values())) == NUM_ROLES
    assert len({r.short for r in ROLE_TABLE}) == NUM_ROLES


@pytest.mark.parametrize("mode, instruction, output", [("it", 0.0, 1.0), ("im", 1.0, 1.0)])
def test_presets_weigh_the_new_roles_by_side(mode, instruction, output):
    p = WeightPolicy.preset(mode)
    assert (p.reasoning, p.tool_call, p.assistant, p.assistant_end) == (output,) * 4
    assert (p.system, p.user, p.tool) == (instruction,) * 3 and p.template == 0.0


def test_wit_puts_p_on_instruction_and_r_on_output():
    p = WeightPolicy.wit(0.2, 0.7)
    assert {r: p.weight(r) for r in ROLE_LABELS} == {
        "template": 0.0, "system": 0.2, "user": 0.2, "tool": 0.2,
        "assistant": 0.7, "assistant_end": 0.7, "reasoning": 0.7, "tool_call": 0.7}


def test_weights_override_for_reasoning():
    p = WeightPolicy.preset("im").with_weights(parse_weight_overrides(["reasoning=0.5"]))
    assert p.reasoning == 0.5 and p.tool_call == 1.0 and p.name == "custom"
    assert p.weights_array()[Role.REASONING] == np.float32(0.5)


def counts(**values):
    return [values.get(label, 0) for label in ROLE_LABELS]


def test_stats_per_role_for_every_role():
    s = LengthStats()
    # one example: user 6, assistant 4, reasoning 10, tool_call 5, template 7, assistant_end 1 (all weight 1 but
    # reasoning 0.5)
    s.add({"num_instruction_tokens": 6, "num_output_tokens": 19, "num_template_tokens": 8, "truncated": False,
           "role_token_counts": counts(template=7, user=6, assistant=4, assistant_end=1, reasoning=10, tool_call=5),
           "weight_mass": counts(user=6.0, assistant=4.0, assistant_end=1.0, reasoning=5.0, tool_call=5.0)})
    d = s.to_dict()
    assert d["tokens_per_role"] == {"template": 7, "system": 0, "user": 6, "tool": 0, "assistant": 4,
                                    "assistant_end": 1, "reasoning": 10, "tool_call": 5}
    assert d["weight_mass_per_role"] == {"template": 0.0, "system": 0.0, "user": 6.0, "tool": 0.0,
                                         "assistant": 4.0, "assistant_end": 1.0, "reasoning": 5.0, "tool_call": 5.0}
    # IT trains assistant + assistant_end + reasoning + tool_call = 20 tokens; IM also user: 26 tokens
    assert d["weight_mass_share"]["it"] == {"template": 0.0, "system": 0.0, "user": 0.0, "tool": 0.0,
                                            "assistant": 4 / 20, "assistant_end": 1 / 20, "reasoning": 10 / 20,
                                            "tool_call": 5 / 20}
    assert d["weight_mass_share"]["im"] == {"template": 0.0, "system": 0.0, "user": 6 / 26, "tool": 0.0,
                                            "assistant": 4 / 26, "assistant_end": 1 / 26, "reasoning": 10 / 26,
                                            "tool_call": 5 / 26}
    assert d["dataset_ratio"] == 6 / 19


def test_stats_written_before_the_new_roles_stay_readable():
    """A 6-role summary or stats.json (policy v1 era) reads as 0 tokens / 0 mass for reasoning and tool_call."""
    old = {"num_instruction_tokens": 5, "num_output_tokens": 3, "num_template_tokens": 4, "truncated": False,
           "role_token_counts": [3, 0, 5, 0, 3, 1], "weight_mass": [0.0, 0.0, 5.0, 0.0, 3.0, 1.0]}
    s = LengthStats()
    s.add(old)
    d = s.to_dict()
    assert d["tokens_per_role"]["reasoning"] == d["tokens_per_role"]["tool_call"] == 0
    assert d["tokens_per_role"]["user"] == 5
    # a stats.json of that era: 6 roles in tokens_per_role and in the accumulator
    d_old = {**d, "tokens_per_role": dict(list(d["tokens_per_role"].items())[:6]),
             "accumulator": {**d["accumulator"], "weight_mass_units": d["accumulator"]["weight_mass_units"][:6]}}
    assert LengthStats.from_dict(d_old) == s
    with pytest.raises(ValueError, match="role columns"):
        s.add({**old, "role_token_counts": [0] * (NUM_ROLES + 1)})
