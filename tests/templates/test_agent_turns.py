"""Agent turns on real templates (issue 16): the labelling rules of docs/DESIGN.md, "Labelling rules", on the five
defects the issue reports, token by token.

Each expectation is the render cut into maximal runs of one token role (the concatenated token texts of each run),
from the user's question on (gpt-oss's system header carries today's date). ``it`` trains assistant, assistant_end,
reasoning and tool_call; ``im`` also system, user and tool: the weights are checked token by token for both.
The issue's record R: tools ``[add(a, b)]``; user "2+3?"; assistant with one call ``add {"a": 2, "b": 3}`` (id c1,
no content key); tool "5"; assistant "It is 5.".
"""

from __future__ import annotations

import copy

import pytest

from im_data import Encoder, FormatOptions, RecordError, WeightPolicy
from im_data.roles import ROLE_LABELS
from im_data.spans import RenderedConversation, Violation, check_invariants
from im_data.templates import ChatTemplate

import real_tokenizers
from oracle import ROLE_NAMES, TRAINED

pytestmark = pytest.mark.real_templates

T, U, X, A, E, R, C = "template", "user", "tool", "assistant", "assistant_end", "reasoning", "tool_call"
ADD = [{"type": "function", "function": {
    "name": "add", "description": "Add two numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                   "required": ["a", "b"]}}}]
RECORD_R = {"tools": ADD, "messages": [
    {"role": "user", "content": "2+3?"},
    {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                          "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
    {"role": "tool", "content": "5", "tool_call_id": "c1"},
    {"role": "assistant", "content": "It is 5."}]}
PLAIN = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
REASONED = {"messages": [{"role": "user", "content": "2+2?"},
                         {"role": "assistant", "content": "4", "reasoning_content": "Add."}]}
INLINE = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>Add.</think>4"}]}


def encode(family: str, record: dict, preset: str = "it", **kwargs):
    tok = real_tokenizers.family_tokenizer(family)
    enc = Encoder(tok, chat_template=ChatTemplate(family, real_tokenizers.template_source(family)),
                  policy=WeightPolicy.preset(preset), keep_text=True, **kwargs)
    return enc.encode_batch([copy.deepcopy(record)])[0]


def runs(family: str, record: dict, **kwargs) -> list[tuple[str, str]]:
    """Maximal runs of one role from the first user token on; weights checked token by token (it and im)."""
    out: list[list[str]] = []
    for preset in ("it", "im"):
        ex = encode(family, record, preset, **kwargs)
        assert not isinstance(ex, RecordError), ex
        trained = {ROLE_NAMES[r] for r in TRAINED[preset]}
        assert ex.loss_weights.tolist() == [1.0 if ROLE_LABELS[r] in trained else 0.0 for r in ex.roles.tolist()]
    out = []
    for (s, e), r in zip(ex.offsets.tolist(), ex.roles.tolist()):
        if out and out[-1][1] == ROLE_LABELS[r]:
            out[-1][0] += ex.text[s:e]
        else:
            out.append([ex.text[s:e], ROLE_LABELS[r]])
    assert "".join(t for t, _ in out) == ex.text
    first_user = next(k for k, (_, role) in enumerate(out) if role == U)
    return [tuple(x) for x in out[first_user:]]


# -- defect 1: gpt-oss (harmony) ---------------------------------------------------------------------------------
def test_gpt_oss_call_ends_at_call_and_the_tool_header_is_template():
    """The call runs from the recipient after the generation prompt (``<|start|>assistant``) to its arguments;
    ``<|call|>`` ends the turn; the tool message's header, which repeats the function name, is template; the
    final answer's channel header is output after a tool result as after a user message."""
    assert runs("gpt_oss", RECORD_R) == [
        ("2+3?", U), ("<|end|><|start|>assistant", T),
        (' to=functions.add<|channel|>commentary json<|message|>{"a": 2, "b": 3}', C), ("<|call|>", E),
        ('<|start|>functions.add to=assistant<|channel|>commentary<|message|>"', T), ("5", X),
        ('"<|end|><|start|>assistant', T), ("<|channel|>final<|message|>It is 5.", A), ("<|return|>", E)]
    assert runs("gpt_oss", PLAIN) == [
        ("2+2?", U), ("<|end|><|start|>assistant", T), ("<|channel|>final<|message|>4", A), ("<|return|>", E)]


def test_gpt_oss_reasoning_is_its_analysis_message():
    assert runs("gpt_oss", REASONED) == [
        ("2+2?", U), ("<|end|><|start|>assistant", T), ("<|channel|>analysis<|message|>Add.", R),
        ("<|end|><|start|>assistant<|channel|>final<|message|>4", A), ("<|return|>", E)]


# -- defect 2: Hermes tool use -----------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["hermes2_pro_tool_use", "hermes3_tool_use"])
def test_hermes_call_is_opening_name_arguments_and_closing(family):
    assert runs(family, RECORD_R) == [
        ("2+3?", U), ("<|im_end|>\n<|im_start|>assistant\n", T),
        ('<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>', C), ("<|im_end|>", E),
        ("\n<|im_start|>tool\n<tool_response>\n", T), ("5", X),
        ("\n</tool_response>\n<|im_end|><|im_start|>assistant\n", T), ("It is 5.", A), ("<|im_end|>", E),
        ("\n", T)]


# -- defect 3: assistant_end after a call-only turn ----------------------------------------------------------------
def test_seed_oss_end_of_turn_is_eos_and_the_prompt_newline_is_template():
    assert runs("seed_oss", RECORD_R) == [
        ("2+3?", U), ("<seed:eos><seed:bos>assistant\n", T),
        ("<seed:tool_call>\n<function=add>\n<parameter=a>2</parameter>\n<parameter=b>3</parameter>\n</function>\n"
         "</seed:tool_call>", C), ("<seed:eos>", E), ("<seed:bos>tool\n", T), ("5", X),
        ("<seed:eos><seed:bos>assistant\n", T), ("It is 5.", A), ("<seed:eos>", E)]


def test_mistral_v0_3_end_of_turn_is_eos_not_the_next_messages_space():
    assert runs("mistral_v0_3", RECORD_R) == [
        ("2+3?", U), (" [/INST]", T), (" ", A),
        ('[TOOL_CALLS] [{"name": "add", "arguments": {"a": 2, "b": 3}, "id": "c1"}]', C), (" </s>", E),
        (' [TOOL_RESULTS] {"call_id": "c1", "content": ', T), ("5", X), ("} [/TOOL_RESULTS] ", T),
        (" It is 5.", A), (" </s>", E)]


# -- defect 4: an empty think block the template emits is reasoning on every family ------------------------------
@pytest.mark.parametrize("family, plain, reasoned", [
    pytest.param("glm4_6", [("<|assistant|>", T), ("\n", A), ("<think></think>", R), ("\n4", A)],
                 [("<|assistant|>", T), ("\n", A), ("<think>Add.</think>", R), ("\n4", A)], id="glm4_6"),
    pytest.param("glm4_5", [("<|assistant|>", T), ("\n", A), ("<think></think>", R), ("\n4", A)],
                 [("<|assistant|>", T), ("\n", A), ("<think>Add.</think>", R), ("\n4", A)], id="glm4_5"),
    pytest.param("kimi_k2_thinking", [("<|im_end|><|im_assistant|>assistant<|im_middle|>", T),
                                      ("<think></think>", R), ("4", A), ("<|im_end|>", E)], None,
                 id="kimi_k2_thinking"),
    pytest.param("qwen3", [("<|im_end|>\n<|im_start|>assistant\n", T), ("<think>\n\n</think>", R), ("\n\n4", A),
                           ("<|im_end|>", E), ("\n", T)],
                 [("<|im_end|>\n<|im_start|>assistant\n", T), ("<think>\nAdd.\n</think>", R), ("\n\n4", A),
                  ("<|im_end|>", E), ("\n", T)], id="qwen3"),
])
def test_an_empty_think_block_is_reasoning(family, plain, reasoned):
    """The tags are reasoning and the whitespace around them is labelled as it is around a non-empty block."""
    assert runs(family, PLAIN)[1:] == plain
    if reasoned is not None:
        assert runs(family, REASONED)[1:] == reasoned


def test_kimi_k2_thinking_drops_the_final_turns_reasoning():
    """The template keeps reasoning only after the last plain assistant turn: a final turn's reasoning is not
    rendered, so the record is rejected naming the field (never a silent drop)."""
    err = encode("kimi_k2_thinking", REASONED)
    assert isinstance(err, RecordError) and err.reason == "unrendered_field"
    assert "message 1 (assistant) field 'reasoning_content'" in err.message


# -- defect 5: inline reasoning in Qwen3 content ------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen3", "qwen3_5", "qwen3_next"])
def test_inline_reasoning_reject_names_the_assistant_and_the_flag(family):
    """Qwen3 / Qwen3.5 / Qwen3-Next render a ``<think>`` block in content differently: the reject blames the
    assistant's content (not message 0) and names the flag that encodes it, and the flag does encode it."""
    err = encode(family, INLINE)
    assert isinstance(err, RecordError) and err.reason == "template_error"
    assert "message 1 (assistant) field 'content'" in err.message and "message 0" not in err.message
    assert "--split-inline-reasoning" in err.message
    split = runs(family, INLINE, format_options=FormatOptions(split_inline_reasoning=True))
    if family == "qwen3":
        assert split[1:3] == [("<|im_end|>\n<|im_start|>assistant\n", T), ("<think>\nAdd.\n</think>", R)]
    else:  # their generation prompt opens the think block itself: it is template (docs/DESIGN.md)
        assert split[1:3] == [("<|im_end|>\n<|im_start|>assistant\n<think>\n", T), ("Add.\n</think>", R)]
    assert split[3:] == [("\n\n4", A), ("<|im_end|>", E), ("\n", T)]


def test_qwen3_inline_reasoning_split_token_by_token():
    assert runs("qwen3", INLINE, format_options=FormatOptions(split_inline_reasoning=True))[1:] == [
        ("<|im_end|>\n<|im_start|>assistant\n", T), ("<think>\nAdd.\n</think>", R), ("\n\n4", A),
        ("<|im_end|>", E), ("\n", T)]


# -- the public invariant check ----------------------------------------------------------------------------------
def test_check_invariants_names_message_field_and_rule():
    text = "<u>Hi</u><a>Yo</a>"
    ok = RenderedConversation(text, ((3, 5, 32 + 2 * 2 + 1), (12, 14, 32 + 2 * 4 + 1)), ((14, 18),), 12,
                              ((12, 14, 1),), ((0, 3, 0), (9, 12, 1)))
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    assert check_invariants(ok, messages) == []
    # the assistant's generation prompt labelled output, and an empty think block inside a turn left assistant
    bad = ok._replace(spans=ok.spans + ((9, 12, 32 + 2 * 4),))
    assert check_invariants(bad, messages) == [
        Violation(1, "assistant", "header", check_invariants.__globals__["RULE_HEADER"], "<a>")]
    think = RenderedConversation("<a><think></think>Yo", ((18, 20, 32 + 2 * 4 + 1), (3, 18, 32 + 2 * 4)), (), 3,
                                 ((3, 20, 1),), ((0, 3, 1),))
    found = check_invariants(think, messages)
    assert [(v.message, v.field, v.text) for v in found] == [(1, "turn", "<think></think>")]
    assert "message 1 (assistant) turn" in found[0].describe()
