"""The message model (reasoning, tool calls, tools, ShareGPT function calls, inline reasoning) and span finding on
the full render (issue 8, items 1 and 2), on small inline templates written for these tests.

Every expectation is derived from the template source and the spec, never from the span finder: the content runs of
the encoded example must be the message contents, and the template's own text around them must keep its role.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core_helpers import content_runs
from im_data import Encoder, FormatOptions, RecordError, WeightPolicy, normalize_record
from im_data.formats import read_conversation
from im_data.roles import ROLE_LABELS, Role


def m(role, content, **extra):
    return {"role": role, "content": content, **extra}


def encoder(tok, source, tmp_path, name="t.jinja", **kwargs):
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    return Encoder(tok, chat_template=str(path), keep_text=True, **kwargs)


def pieces(ex):
    """Maximal runs of one role as (text, role label)."""
    out = []
    for (s, e), r in zip(ex.offsets.tolist(), ex.roles.tolist()):
        label = ROLE_LABELS[r]
        if out and out[-1][1] == label:
            out[-1] = (out[-1][0] + ex.text[s:e], label)
        else:
            out.append((ex.text[s:e], label))
    return out


# --- templates that defeat prefix renders ------------------------------------------------------------------------
PHI_LIKE = ("{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}")
INTERNLM_LIKE = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                 "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                 "{% elif messages[-1]['role'] == 'assistant' %}{{ eos_token }}{% endif %}")
DEFAULT_SYSTEM = ("{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
                  "{% set rest = messages[1:] %}{% else %}{% set sys = 'You are helpful.' %}{% set rest = messages %}"
                  "{% endif %}{{ '<|im_start|>system\\n' + sys + '<|im_end|>\\n' }}{% for m in rest %}"
                  "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
                  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LAST_TURN_THINKS = ("{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
                    "{% if m.reasoning_content %}{{ '<think>\\n' + m.reasoning_content + '\\n</think>\\n\\n' }}"
                    "{% elif loop.last %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}{{ m['content'] + '<|im_end|>\\n' }}"
                    "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}"
                    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LSTRIP_NEWLINES = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'].lstrip('\\n') "
                   "+ '<|im_end|>\\n' }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
MULTI = [m("system", "Be brief."), m("user", "Q1"), m("assistant", "A1"), m("user", "Q2"), m("assistant", "A2")]


@pytest.mark.parametrize("source, messages, expected", [
    pytest.param(PHI_LIKE, MULTI, [(Role.SYSTEM, "Be brief."), (Role.USER, "Q1"), (Role.ASSISTANT, "A1"),
                                   (Role.USER, "Q2"), (Role.ASSISTANT, "A2")], id="eos-closes-every-render"),
    pytest.param(INTERNLM_LIKE, MULTI, [(Role.SYSTEM, "Be brief."), (Role.USER, "Q1"), (Role.ASSISTANT, "A1"),
                                        (Role.USER, "Q2"), (Role.ASSISTANT, "A2")], id="eos-after-final-turn-only"),
    pytest.param(DEFAULT_SYSTEM, MULTI, [(Role.SYSTEM, "Be brief."), (Role.USER, "Q1"), (Role.ASSISTANT, "A1"),
                                         (Role.USER, "Q2"), (Role.ASSISTANT, "A2")], id="user-system-replaces-default"),
    pytest.param(LAST_TURN_THINKS, MULTI[1:], [(Role.USER, "Q1"), (Role.ASSISTANT, "A1"), (Role.USER, "Q2"),
                                               (Role.REASONING, "<think>\n\n</think>"), (Role.ASSISTANT, "\n\nA2")],
                 id="last-turn-renders-differently"),
    pytest.param(LSTRIP_NEWLINES, [m("user", "\n\nQ  "), m("assistant", "\n A\n")],
                 [(Role.USER, "Q  "), (Role.ASSISTANT, " A\n")], id="template-strips-leading-newlines-only"),
])
def test_templates_without_prefix_stable_renders(default_tokenizer, tmp_path, source, messages, expected):
    ex = encoder(default_tokenizer, source, tmp_path).encode({"messages": messages})
    runs = [(Role(r), "".join(ex.text[ex.offsets[i][0]:ex.offsets[i][1]] for i in idx))
            for r, idx in content_runs(ex.roles.tolist())]
    assert runs == expected
    # every assistant turn ends with exactly one assistant_end token, <|im_end|>
    ends = [ex.text[s:e] for (s, e), r in zip(ex.offsets.tolist(), ex.roles.tolist()) if r == Role.ASSISTANT_END]
    assert ends == ["<|im_end|>"] * sum(x["role"] == "assistant" for x in messages)
    # the closing eos of these templates is template text
    if "eos_token" in source:
        assert ex.text.endswith("</s>") and ex.roles[-1] == Role.TEMPLATE


# --- rejections name the message and the field ----------------------------------------------------------------
@pytest.mark.parametrize("source, words", [
    pytest.param("{% for m in messages %}{{ m['role'] }}: {{ m['content'] | replace('e', 'E') }}\n{% endfor %}",
                 ["message 0 (user) field 'content'", "differs"], id="template-changes-content"),
    pytest.param("{% for m in messages %}{{ m['role'] }}: {{ m['content'][:2] }}\n{% endfor %}",
                 ["message 0 (user) field 'content'", "did not survive"], id="template-cuts-content"),
    pytest.param("{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}",
                 ["message 1 (assistant)", "not found"], id="template-drops-content"),
])
def test_template_error_names_the_field(default_tokenizer, tmp_path, source, words):
    enc = encoder(default_tokenizer, source, tmp_path)
    with pytest.raises(RecordError) as info:
        enc.encode({"messages": [m("user", "Hello there"), m("assistant", "Yes here")]})
    assert info.value.reason == "template_error"
    for w in words:
        assert w in info.value.message, (w, info.value.message)


# --- the message model ----------------------------------------------------------------------------------------
CALL = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}


def test_openai_tool_call_record_is_passed_as_apply_chat_template_passes_it():
    conv = read_conversation({"messages": [m("user", "Weather?"),
                                           {"role": "assistant", "content": None, "tool_calls": [CALL]},
                                           m("tool", "18C", tool_call_id="c1"), m("assistant", "Mild.")],
                              "tools": json.dumps([{"type": "function", "function": {"name": "weather"}}])})
    assert "content" not in conv.messages[1]  # None values are dropped, as transformers does
    assert conv.messages[1]["tool_calls"] == [CALL]  # arguments as given (a JSON string here)
    assert conv.messages[2]["tool_call_id"] == "c1"
    assert conv.tools == [{"type": "function", "function": {"name": "weather"}}]  # JSON string tools parsed


@pytest.mark.parametrize("alias", ["reasoning_content", "reasoning", "thinking"])
def test_reasoning_aliases(alias):
    msg = normalize_record({"messages": [m("user", "Q"), m("assistant", "A", **{alias: "think"})]})[1]
    assert msg["reasoning_content"] == msg["thinking"] == msg[alias] == "think"


def test_conflicting_reasoning_fields_are_rejected():
    with pytest.raises(RecordError) as info:
        normalize_record({"messages": [m("user", "Q"), m("assistant", "A", reasoning="x", thinking="y")]})
    assert info.value.reason == "unknown_format"


def test_legacy_and_flat_tool_calls():
    msgs = normalize_record({"messages": [m("user", "Q"), {"role": "assistant", "content": "",
                                                           "function_call": {"name": "f", "arguments": "{}"}},
                                          m("tool", "r"), {"role": "assistant", "content": "",
                                                           "tool_calls": [{"name": "g", "arguments": {"a": 1}}]}]})
    assert msgs[1]["tool_calls"] == [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert msgs[3]["tool_calls"] == [{"type": "function", "function": {"name": "g", "arguments": {"a": 1}}}]


def test_sharegpt_function_call_and_observation():
    record = {"conversations": [{"from": "human", "value": "Weather?"},
                                {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "P"}}'},
                                {"from": "observation", "value": "18C"}, {"from": "gpt", "value": "Mild."}],
              "tools": '[{"name": "weather"}]', "system": "Be brief."}
    conv = read_conversation(record)
    assert [x["role"] for x in conv.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert conv.messages[2]["tool_calls"] == [{"type": "function",
                                               "function": {"name": "weather", "arguments": {"city": "P"}}}]
    assert conv.tools == [{"name": "weather"}]


def test_split_inline_reasoning():
    record = {"messages": [m("user", "Q"), m("assistant", "<think>\nstep 1\n</think>\n\nThe answer.")]}
    assert normalize_record(record)[1] == m("assistant", "<think>\nstep 1\n</think>\n\nThe answer.")
    split = normalize_record(record, FormatOptions(split_inline_reasoning=True))[1]
    assert split["content"] == "The answer." and split["reasoning_content"] == "step 1"


def test_split_inline_reasoning_trains_it_as_reasoning(default_tokenizer):
    enc = Encoder(default_tokenizer, chat_template="chatml_tools", keep_text=True, policy=WeightPolicy.preset("it"),
                  format_options=FormatOptions(split_inline_reasoning=True))
    ex = enc.encode({"messages": [m("user", "Q"), m("assistant", "<think>step 1</think>The answer.")]})
    assert ("<think>\nstep 1\n</think>", "reasoning") in pieces(ex)
    assert ex.loss_weights[ex.roles == Role.REASONING].min() == 1.0


def test_chat_template_kwargs_reach_the_template_and_the_metadata(default_tokenizer):
    rec = {"messages": [m("user", "Q"), m("assistant", "A")]}
    on = Encoder(default_tokenizer, chat_template="chatml_tools", keep_text=True)
    off = Encoder(default_tokenizer, chat_template="chatml_tools", keep_text=True,
                  chat_template_kwargs={"enable_thinking": False})
    assert "<think>" not in on.encode(rec).text
    assert "<think>\n\n</think>\n\n" in off.encode(rec).text
    assert off.metadata()["chat_template"]["kwargs"] == {"enable_thinking": False}
    assert on.metadata()["chat_template"]["kwargs"] == {}
    assert off.metadata()["chat_template"]["fingerprint"] != on.metadata()["chat_template"]["fingerprint"]
    # a record's own chat_template_kwargs win over the encoder's
    assert "<think>" in on.encode({**rec, "chat_template_kwargs": {"enable_thinking": False}}).text


# --- nothing is dropped silently: random extra fields ------------------------------------------------------------
RENDER_ALL = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% for k, v in m.items() if k not in ('role', "
              "'content') %}{{ k }}={{ v }}\n{% endfor %}{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
BASE = [m("system", "Be brief."), m("user", "Hi there"), m("assistant", "Hello!")]
names = st.from_regex(r"x[a-z]{1,8}", fullmatch=True)
words = st.text(alphabet="abcdefghij", min_size=2, max_size=8)
values = st.one_of(words, st.integers(1, 99), st.lists(words, min_size=1, max_size=2),
                   st.dictionaries(words, words, min_size=1, max_size=2))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(name=names, value=values, index=st.integers(0, len(BASE) - 1), template=st.sampled_from(
    ["chatml", "tulu", "llama3", "chatml_tools", "render_all"]))
def test_no_field_is_dropped_silently(default_tokenizer, tmp_path_factory, name, value, index, template):
    """An extra message field is rendered (and its text keeps the message's role) or the record is rejected
    with unrendered_field naming it; allowed, the record encodes exactly as without it."""
    if template == "render_all":
        path = tmp_path_factory.mktemp("t") / "render_all.jinja"
        path.write_text(RENDER_ALL, encoding="utf-8")
        template = str(path)
    messages = [dict(x) for x in BASE]
    messages[index][name] = value
    result = Encoder(default_tokenizer, chat_template=template, keep_text=True).encode_batch(
        [{"messages": messages}])[0]
    rendered = isinstance(value, str) and template.endswith("render_all.jinja")
    if rendered:
        assert not isinstance(result, RecordError), result
        role = Role.ASSISTANT if messages[index]["role"] == "assistant" else Role[messages[index]["role"].upper()]
        texts = ["".join(result.text[result.offsets[i][0]:result.offsets[i][1]] for i in idx)
                 for r, idx in content_runs(result.roles.tolist()) if r == role]
        assert any(value in t for t in texts)
        return
    assert isinstance(result, RecordError) and result.reason == "unrendered_field", result
    assert f"message {index}" in result.message and repr(name) in result.message
    if template.endswith("render_all.jinja"):
        return  # rendered but not text: rejected (it cannot be traced); allowed, the render holds it
    allowed = Encoder(default_tokenizer, chat_template=template, allow_unrendered=[name]).encode(
        {"messages": messages})
    plain = Encoder(default_tokenizer, chat_template=template).encode({"messages": BASE})
    assert allowed.input_ids.tolist() == plain.input_ids.tolist()
    assert allowed.roles.tolist() == plain.roles.tolist()


# --- a long conversation (linear span finding; timed by benchmarks/long_conversation.py) ------------------------
def test_twenty_thousand_messages(default_tokenizer):
    n = 20_000
    messages = [m("user" if k % 2 == 0 else "assistant", f"m{k}") for k in range(n)]
    ex = Encoder(default_tokenizer, chat_template="chatml", keep_text=True).encode({"messages": messages})
    runs = content_runs(ex.roles.tolist())
    assert len(runs) == n
    for k, (r, idx) in enumerate(runs):
        assert r == (Role.USER if k % 2 == 0 else Role.ASSISTANT)
        assert "".join(ex.text[ex.offsets[i][0]:ex.offsets[i][1]] for i in idx) == f"m{k}"
    assert int((ex.roles == Role.ASSISTANT_END).sum()) == n // 2
