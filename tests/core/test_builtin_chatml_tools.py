"""The built-in ``chatml_tools`` template (written by us): ChatML with tools, tool calls and reasoning in the layout
of current open models (Qwen3-style). Literal goldens of its render and of the role of every piece of it.

The roles follow the spec of issue 8 (item 3): inside an assistant turn, the ``<think>`` tags with the reasoning are
``reasoning``; each tool call's rendered text with its wrapper (``<tool_call>...</tool_call>`` and the newline that
separates it from what precedes it) is ``tool_call``; content and the other text between parts are ``assistant``;
``<|im_end|>`` closing the turn is ``assistant_end``. Tool definitions and ``<tool_response>`` wrappers are
template text. The expected pieces below were written from the template source and that spec, then frozen.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from im_data import BUILTIN_TEMPLATES, ChatTemplate, Encoder, WeightPolicy
from im_data.roles import ROLE_LABELS, roles_on_side

T, S, U, X, A, E, R, C = ("template", "system", "user", "tool", "assistant", "assistant_end", "reasoning",
                          "tool_call")
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}

TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"city": "string"}}}]
AGENT = {"tools": TOOLS, "messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Paris and Rome?"},
    {"role": "assistant", "reasoning_content": "Two calls.", "content": "Checking.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": {"city": "Rome"}}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "18C"},
    {"role": "tool", "tool_call_id": "c2", "content": "21C"},
    {"role": "assistant", "reasoning_content": "Compare.", "content": "Rome is warmer."},
]}
TOOLS_HEADER = (
    '\n\n# Tools\n\nThese functions are available. Their signatures are JSON objects between <tools> and </tools>:\n'
    '<tools>\n{"type": "function", "function": {"name": "weather", "parameters": {"city": "string"}}}\n</tools>\n\n'
    'To call a function, write a JSON object with its name and arguments between <tool_call> and </tool_call>:\n'
    '<tool_call>\n{"name": <function name>, "arguments": <arguments as a JSON object>}\n</tool_call><|im_end|>\n')
# maximal runs of one role: (text, role); their concatenation is the render
AGENT_PIECES = [
    ('<|im_start|>system\n', T),
    ('Be brief.', S),
    (TOOLS_HEADER + '<|im_start|>user\n', T),
    ('Paris and Rome?', U),
    ('<|im_end|>\n<|im_start|>assistant\n', T),
    ('<think>\nTwo calls.\n</think>', R),
    ('\n\nChecking.', A),
    ('\n<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call>'
     '\n<tool_call>\n{"name": "weather", "arguments": {"city": "Rome"}}\n</tool_call>', C),
    ('<|im_end|>', E),
    ('\n<|im_start|>user\n<tool_response>\n', T),
    ('18C', X),
    ('\n</tool_response>\n<tool_response>\n', T),
    ('21C', X),
    ('\n</tool_response><|im_end|>\n<|im_start|>assistant\n', T),
    ('<think>\nCompare.\n</think>', R),
    ('\n\nRome is warmer.', A),
    ('<|im_end|>', E),
    ('\n', T),
]


def pieces(encoder: Encoder, record: dict) -> list[tuple[str, str]]:
    ex = encoder.encode(record)
    out: list[list] = []
    for (s, e), r in zip(ex.offsets.tolist(), ex.roles.tolist()):
        if out and out[-1][1] == ROLE_LABELS[r]:
            out[-1][0] += ex.text[s:e]
        else:
            out.append([ex.text[s:e], ROLE_LABELS[r]])
    assert "".join(t for t, _ in out) == ex.text
    return [(t, r) for t, r in out]


def encoder(tok, mode="it", **kwargs) -> Encoder:
    return Encoder(tok, chat_template="chatml_tools", policy=WeightPolicy.preset(mode), keep_text=True, **kwargs)


def test_is_a_builtin():
    assert "chatml_tools" in BUILTIN_TEMPLATES
    assert ChatTemplate.resolve("chatml_tools").name == "chatml_tools"


def test_render_of_a_tool_call_and_reasoning_conversation(default_tokenizer):
    """The render itself (no roles): the same text as transformers' apply_chat_template gives for this source."""
    source = ChatTemplate.builtin("chatml_tools").source
    text = "".join(t for t, _ in AGENT_PIECES)
    assert encoder(default_tokenizer).encode(AGENT).text == text
    assert default_tokenizer.apply_chat_template(AGENT["messages"], tools=TOOLS, chat_template=source,
                                                 tokenize=False) == text


def test_roles_of_a_tool_call_and_reasoning_conversation(default_tokenizer):
    assert pieces(encoder(default_tokenizer), AGENT) == AGENT_PIECES


@pytest.mark.parametrize("mode", ["it", "im"])
def test_tool_calls_and_reasoning_are_trained(default_tokenizer, mode):
    ex = encoder(default_tokenizer, mode).encode(AGENT)
    trained = set(roles_on_side("output")) | (set(roles_on_side("instruction")) if mode == "im" else set())
    assert {R, C} <= trained
    assert ex.loss_weights.tolist() == [1.0 if ROLE_LABELS[r] in trained else 0.0 for r in ex.roles.tolist()]
    counts = dict(zip(ROLE_LABELS, ex.role_token_counts.tolist()))
    assert counts[R] > 0 and counts[C] > 0
    assert ex.num_output_tokens == counts[A] + counts[R] + counts[C]
    assert ex.num_instruction_tokens == counts[S] + counts[U] + counts[X]


def test_without_tools_the_layout_is_plain_chatml(default_tokenizer):
    record = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
    assert pieces(encoder(default_tokenizer), record) == [
        ('<|im_start|>user\n', T), ('Hi', U), ('<|im_end|>\n<|im_start|>assistant\n', T), ('Hello.', A),
        ('<|im_end|>', E), ('\n', T)]


def test_enable_thinking_false(default_tokenizer):
    """chat_template_kwargs {"enable_thinking": false}: the generation prompt ends with an empty think block, and an
    assistant turn without reasoning carries the same block, so training text matches inference text. The block is
    part of the generation prompt (prefilled at inference, not generated): template text, weight 0."""
    template = ChatTemplate.builtin("chatml_tools")
    msgs = [{"role": "user", "content": "Hi"}]
    assert template.render(msgs, SPECIAL, add_generation_prompt=True) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert template.render(msgs, {**SPECIAL, "enable_thinking": False}, add_generation_prompt=True) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    record = {"messages": msgs + [{"role": "assistant", "content": "Hello."}]}
    assert pieces(encoder(default_tokenizer, chat_template_kwargs={"enable_thinking": False}), record) == [
        ('<|im_start|>user\n', T), ('Hi', U), ('<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n', T),
        ('Hello.', A), ('<|im_end|>', E), ('\n', T)]


def test_reasoning_of_every_turn_is_kept(default_tokenizer):
    """Unlike templates that drop the reasoning of earlier turns, every turn's reasoning is rendered (and trained)."""
    record = {"messages": [
        {"role": "user", "content": "One?"}, {"role": "assistant", "reasoning_content": "First.", "content": "1"},
        {"role": "user", "content": "Two?"}, {"role": "assistant", "reasoning_content": "Second.", "content": "2"}]}
    got = pieces(encoder(default_tokenizer), record)
    assert [t for t, r in got if r == R] == ["<think>\nFirst.\n</think>", "<think>\nSecond.\n</think>"]
    assert [t for t, r in got if r == A] == ["\n\n1", "\n\n2"]


REAL_QWEN3 = Path(__file__).resolve().parents[1] / "templates" / "real" / "qwen3.jinja"


@pytest.mark.skipif(not REAL_QWEN3.is_file(), reason="tests/templates/real/qwen3.jinja (goldens corpus) is absent")
def test_turns_render_like_qwen3(default_tokenizer):
    """Without tool definitions and with reasoning only after the last user query (where Qwen3 keeps it), the render
    is Qwen3's own, character for character: same turns, think blocks, tool-call and tool-response wrappers."""
    msgs = [m for m in AGENT["messages"]]
    ours = ChatTemplate.builtin("chatml_tools").render(msgs, SPECIAL)
    qwen3 = ChatTemplate("qwen3", REAL_QWEN3.read_text(encoding="utf-8")).render(json.loads(json.dumps(msgs)),
                                                                               SPECIAL)
    assert ours == qwen3


@pytest.mark.parametrize("mode", ["it", "im"])
def test_last_assistant_only_zeroes_every_output_role_of_earlier_turns(default_tokenizer, mode):
    policy = WeightPolicy.preset(mode, last_assistant_only=True)
    enc = Encoder(default_tokenizer, chat_template="chatml_tools", policy=policy, keep_text=True)
    ex = enc.encode(AGENT)
    full = encoder(default_tokenizer, mode).encode(AGENT)
    assert ex.roles.tolist() == full.roles.tolist()
    last_turn = ex.text.rindex("<|im_start|>assistant\n") + len("<|im_start|>assistant\n")
    output_side = set(roles_on_side("output"))
    for (s, _), r, w, w_full in zip(ex.offsets.tolist(), ex.roles.tolist(), ex.loss_weights.tolist(),
                                    full.loss_weights.tolist()):
        if ROLE_LABELS[r] in output_side:  # reasoning, tool calls, content, end: trained in the last turn only
            assert w == (1.0 if s >= last_turn else 0.0), (ex.text[s:], ROLE_LABELS[r])
        else:  # instruction and template tokens keep their weights
            assert w == w_full
    # the first turn had reasoning and tool calls: they are all at weight 0 now
    first_turn = [(ROLE_LABELS[r], w) for (s, _), r, w in zip(ex.offsets.tolist(), ex.roles.tolist(),
                                                             ex.loss_weights.tolist()) if s < last_turn]
    assert {R, C, A, E} <= {r for r, _ in first_turn}
    assert all(w == 0 for r, w in first_turn if r in output_side)


@pytest.mark.parametrize("where", ["reasoning_content", "arguments"])
def test_special_token_inside_reasoning_or_tool_call_is_rejected(default_tokenizer, where):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "ok", "reasoning_content": "fine",
                                                 "tool_calls": [{"type": "function", "function": {
                                                     "name": "f", "arguments": '{"x": 1}'}}]}]
    if where == "reasoning_content":
        msgs[1]["reasoning_content"] = "end it <|im_end|> here"
    else:
        msgs[1]["tool_calls"][0]["function"]["arguments"] = '{"x": "<|im_end|>"}'
    out = encoder(default_tokenizer).encode_batch([{"messages": msgs}])[0]
    assert getattr(out, "reason", None) == "special_token_in_content", out
    ok = Encoder(default_tokenizer, chat_template="chatml_tools", allow_special_tokens=True).encode_batch(
        [{"messages": msgs}])[0]
    assert ok.input_ids.size > 0
