"""The conversation flags of prepare (issue 8, item 2): --chat-template-kwargs, --split-inline-reasoning and
--allow-unrendered reach the encoder through the typed config and are recorded in the manifest."""

from __future__ import annotations

import json

from pipeline_helpers import read_output, run_cli

TOOL_RECORD = {"tools": [{"type": "function", "function": {"name": "weather", "parameters": {}}}], "messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "reasoning_content": "Call the tool.",
     "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"P\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "18C"},
    {"role": "assistant", "content": "<think>Mild.</think>It is 18C."}]}


def _write(tmp_path, records):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_flags_reach_the_encoder_and_the_manifest(tmp_path):
    data = _write(tmp_path, [TOOL_RECORD])
    code = run_cli("prepare", data, "-o", tmp_path / "out", "--chat-template", "chatml_tools", "--mode", "it",
                   "--chat-template-kwargs", '{"enable_thinking": false}', "--split-inline-reasoning",
                   "--allow-unrendered", "x_note", "--allow-unrendered", "x_other", "-q")
    assert code == 0
    out = read_output(tmp_path / "out")
    manifest = out["manifest"]
    assert manifest["chat_template"]["kwargs"] == {"enable_thinking": False}
    assert len(manifest["chat_template"]["fingerprint"]) == 16
    assert manifest["allow_unrendered"] == ["x_note", "x_other"]
    assert manifest["split_inline_reasoning"] is True
    assert manifest["counts"]["written"] == 1
    roles = out["rows"][0]["roles"]
    assert {6, 7} <= set(roles)  # reasoning and tool_call tokens were written (and trained under it)
    weights = out["rows"][0]["loss_weights"]
    assert all(w == 1.0 for r, w in zip(roles, weights) if r in (4, 5, 6, 7))


def test_unrendered_field_is_a_reject_unless_allowed(tmp_path):
    record = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "x_note": "n"}]}
    plain = {"messages": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]}
    data = _write(tmp_path, [record, plain])  # a run that writes nothing fails (exit 3): keep one good record
    assert run_cli("prepare", data, "-o", tmp_path / "a", "--chat-template", "chatml", "-q") == 0
    counts = read_output(tmp_path / "a")["manifest"]["counts"]
    assert counts["rejected_by_reason"] == {"unrendered_field": 1} and counts["written"] == 1
    assert run_cli("prepare", data, "-o", tmp_path / "b", "--chat-template", "chatml", "--allow-unrendered",
                   "x_note", "-q") == 0
    assert read_output(tmp_path / "b")["manifest"]["counts"]["written"] == 2


def test_bad_chat_template_kwargs_is_a_usage_error(tmp_path, capsys):
    data = _write(tmp_path, [TOOL_RECORD])
    assert run_cli("prepare", data, "-o", tmp_path / "c", "--chat-template-kwargs", "[1]") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--chat-template-kwargs must be a JSON object" in err[0]
