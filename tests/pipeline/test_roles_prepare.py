"""`im-data prepare` on tool-call and reasoning conversations: the new roles end to end (weights, --weights for
them, tokens and weight mass per role in stats.json and the manifest)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from im_data import ROLE_CODES
from pipeline_helpers import read_output, run_cli

RECORDS = [
    {"tools": [{"type": "function", "function": {"name": "weather", "parameters": {"city": "string"}}}],
     "messages": [
         {"role": "user", "content": "Weather in Paris?"},
         {"role": "assistant", "reasoning_content": "Use the tool.", "tool_calls": [
             {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
         {"role": "tool", "tool_call_id": "c1", "content": "18C"},
         {"role": "assistant", "reasoning_content": "Report.", "content": "It is 18C."}]},
    {"messages": [{"role": "system", "content": "Think first."}, {"role": "user", "content": "2+2?"},
                  {"role": "assistant", "reasoning": "Two and two.", "content": "4"}]},
]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("agentic") / "agentic.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


def test_weights_for_reasoning_and_tool_calls(source, tmp_path):
    out = tmp_path / "out"
    assert run_cli("prepare", source, "-o", out, "--chat-template", "chatml_tools", "--mode", "im", "--weights",
                   "reasoning=0.5", "-q") == 0
    res = read_output(out)
    m, stats = res["manifest"], res["stats"]
    assert m["counts"] == {**m["counts"], "read": 2, "written": 2, "rejected": 0}
    assert m["policy"]["reasoning"] == 0.5 and m["policy"]["tool_call"] == 1.0 and m["policy"]["version"] == 2
    expected = {"template": 0.0, "system": 1.0, "user": 1.0, "tool": 1.0, "assistant": 1.0, "assistant_end": 1.0,
                "reasoning": 0.5, "tool_call": 1.0}
    tokens = {label: 0 for label in ROLE_CODES}
    for row in res["rows"]:
        w, roles = np.array(row["loss_weights"]), np.array(row["roles"])
        for label, code in ROLE_CODES.items():
            assert (w[roles == code] == expected[label]).all(), label
            tokens[label] += int((roles == code).sum())
    assert tokens["reasoning"] > 0 and tokens["tool_call"] > 0
    assert m["tokens_per_role"] == stats["tokens_per_role"] == tokens
    assert m["weight_mass_per_role"] == {label: expected[label] * n for label, n in tokens.items()}
    # output length = assistant + reasoning + tool_call content (before truncation, nothing truncated here)
    assert stats["output_tokens"]["sum"] == tokens["assistant"] + tokens["reasoning"] + tokens["tool_call"]
    assert stats["instruction_tokens"]["sum"] == tokens["system"] + tokens["user"] + tokens["tool"]
    assert sum(r["num_output_tokens"] for r in res["rows"]) == stats["output_tokens"]["sum"]


def test_unknown_role_in_weights_is_a_usage_error(source, tmp_path, capsys):
    assert run_cli("prepare", source, "-o", tmp_path / "bad", "--weights", "thinking=0.5") == 2
    err = capsys.readouterr().err
    assert "unknown role 'thinking'" in err and "reasoning" in err and "tool_call" in err
