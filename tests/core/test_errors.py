"""Every reason code, raised from the input that should cause it, with an informative message."""

from __future__ import annotations

import pickle

import pytest

from im_data import normalize_record, REASONS, Encoder, FormatOptions, RecordError, TemplateError, WeightPolicy, parse_json_line


def m(role, content):
    return {"role": role, "content": content}


OK = [m("user", "Hi"), m("assistant", "Hello there")]

# --- invalid_json --------------------------------------------------------------------------------------------
BAD_LINES = [
    pytest.param(b"{not json}", "not valid JSON", id="garbage"),
    pytest.param(b'{"a": 1', "not valid JSON", id="truncated-object"),
    pytest.param(b"", "not valid JSON", id="empty-bytes"),
    pytest.param("   ", "not valid JSON", id="blank-str"),
    pytest.param(b'{"a": 1} {"b": 2}', "not valid JSON", id="two-objects"),
    pytest.param(b"{'a': 1}", "not valid JSON", id="single-quotes"),
    pytest.param(b"\xff\xfe{}", "not valid UTF-8", id="non-utf8-bom"),
    pytest.param(b'{"text": "caf\xe9"}', "not valid UTF-8", id="latin1-inside-string"),
    pytest.param(b'{"text": "\xc3\x28"}', "not valid UTF-8", id="invalid-continuation-byte"),
    pytest.param(b'{"text": "\xed\xa0\x80"}', "not valid UTF-8", id="utf8-encoded-surrogate"),
]


def test_deeply_nested_line_is_rejected_not_crashing():
    """100k nested arrays: the parser refuses it (invalid_json), never a RecursionError."""
    line = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(RecordError) as info:
        parse_json_line(line)
    assert info.value.reason == "invalid_json" and "depth" in info.value.message


@pytest.mark.parametrize("line, words", [
    pytest.param(b'{"t": "x\\ud800"}', "surrogate", id="escaped-lone-surrogate"),
    pytest.param(b'{"n": 1' + b"0" * 5000 + b"}", "infinity", id="5000-digit-integer"),
    pytest.param(b'{"n": NaN}', "not valid JSON", id="nan"),
    pytest.param(b'{"n": -Infinity}', "not valid JSON", id="infinity"),
    pytest.param("x\ud800", "not valid JSON", id="str-with-lone-surrogate"),
])
def test_strict_parser_refuses_what_later_stages_cannot_handle(line, words):
    with pytest.raises(RecordError) as info:
        parse_json_line(line)
    assert info.value.reason == "invalid_json" and words in info.value.message


@pytest.mark.parametrize("line, words", BAD_LINES)
def test_parse_json_line_invalid(line, words):
    with pytest.raises(RecordError) as info:
        parse_json_line(line)
    assert info.value.reason == "invalid_json"
    assert words in info.value.message
    assert str(info.value).startswith("[invalid_json] ")


@pytest.mark.parametrize("line, expected", [
    (b'{"a": "caf\xc3\xa9"}', {"a": "café"}),
    ('{"a": [1, 2]}', {"a": [1, 2]}),
    (bytearray(b'{"x": null}'), {"x": None}),
    (b'{"e": "\\ud83d\\ude00"}\n', {"e": "😀"}),
])
def test_parse_json_line_valid(line, expected):
    assert parse_json_line(line) == expected


# --- record-level reasons ------------------------------------------------------------------------------------
RECORD_CASES = [
    # unknown_format
    pytest.param({"foo": 1, "bar": 2}, "unknown_format", ["bar", "foo"], id="no-known-keys"),
    pytest.param({}, "unknown_format", ["keys: none"], id="empty-object"),
    pytest.param(["not", "an", "object"], "unknown_format", ["JSON object", "list"], id="record-is-list"),
    pytest.param("just a string", "unknown_format", ["JSON object", "str"], id="record-is-string"),
    pytest.param({"messages": {"role": "user"}}, "unknown_format", ["list of messages", "dict"],
                 id="messages-is-object"),
    pytest.param({"messages": ["hi"]}, "unknown_format", ["messages[0]", "object"], id="message-is-string"),
    # missing_field
    pytest.param({"messages": None}, "missing_field", ["'messages'"], id="messages-null"),
    pytest.param({"messages": [{"content": "x"}]}, "missing_field", ["messages[0]", "'role'"], id="no-role"),
    pytest.param({"messages": [{"role": "user"}]}, "missing_field", ["messages[0]", "'content'"], id="no-content"),
    pytest.param({"instruction": "Say hi"}, "missing_field", ["'output'"], id="alpaca-no-output"),
    pytest.param({"output": "hi"}, "missing_field", ["'instruction'"], id="alpaca-no-instruction"),
    pytest.param({"prompt": "Say hi"}, "missing_field", ["'completion'"], id="pc-no-completion"),
    pytest.param({"completion": "hi"}, "missing_field", ["'prompt'"], id="pc-no-prompt"),
    pytest.param({"conversations": [{"from": "human"}]}, "missing_field", ["conversations[0]", "'value'"],
                 id="sharegpt-no-value"),
    pytest.param({"conversations": [{"value": "x"}]}, "missing_field", ["conversations[0]", "'from'"],
                 id="sharegpt-no-from"),
    # not_a_string
    pytest.param({"messages": [m("user", 5), m("assistant", "x")]}, "not_a_string", ["messages[0].content", "int"],
                 id="content-int"),
    pytest.param({"messages": [m("user", None), m("assistant", "x")]}, "not_a_string",
                 ["messages[0].content", "NoneType"], id="content-null"),
    pytest.param({"messages": [m("user", "x"), m("assistant", ["a", "b"])]}, "not_a_string",
                 ["messages[1].content", "list"], id="content-list"),
    pytest.param({"instruction": "x", "output": 3}, "not_a_string", ["output must be a string", "int"], id="alpaca-output-int"),
    pytest.param({"instruction": "x", "input": {"a": 1}, "output": "y"}, "not_a_string", ["input must be a string", "dict"],
                 id="alpaca-input-dict"),
    pytest.param({"prompt": 1, "completion": "y"}, "not_a_string", ["prompt must be a string", "int"], id="pc-prompt-int"),
    pytest.param({"prompt": "x", "completion": "y", "system": 7}, "not_a_string", ["system must be a string", "int"],
                 id="pc-system-int"),
    pytest.param({"conversations": [{"from": "human", "value": 1.5}, {"from": "gpt", "value": "x"}]},
                 "not_a_string", ["conversations[0].value", "float"], id="sharegpt-value-float"),
    # bad_role
    pytest.param({"messages": [m("bot", "x"), m("assistant", "y")]}, "bad_role", ["'bot'", "messages[0]"],
                 id="role-bot"),
    pytest.param({"messages": [m("User", "x"), m("assistant", "y")]}, "bad_role", ["'User'"], id="role-case"),
    pytest.param({"messages": [m("user", "x"), m("assistant_end", "y")]}, "bad_role", ["'assistant_end'"],
                 id="role-assistant_end"),
    pytest.param({"messages": [m("template", "x"), m("assistant", "y")]}, "bad_role", ["'template'"],
                 id="role-template"),
    pytest.param({"messages": [{"role": 2, "content": "x"}, m("assistant", "y")]}, "bad_role", ["int"],
                 id="role-int"),
    pytest.param({"conversations": [{"from": "robot", "value": "x"}, {"from": "gpt", "value": "y"}]}, "bad_role",
                 ["'robot'", "human"], id="sharegpt-from-robot"),
    pytest.param({"conversations": [{"from": "assistant_end", "value": "x"}]}, "bad_role", ["'assistant_end'"],
                 id="sharegpt-from-token-role"),
    pytest.param({"prompt": [m("narrator", "x")], "completion": [m("assistant", "y")]}, "bad_role",
                 ["'narrator'", "prompt[0]"], id="pc-list-bad-role"),
    # empty_conversation
    pytest.param({"messages": []}, "empty_conversation", ["no messages"], id="messages-empty"),
    pytest.param({"conversations": []}, "empty_conversation", ["no messages"], id="sharegpt-empty"),
    pytest.param({"prompt": [], "completion": []}, "empty_conversation", ["no messages"], id="pc-lists-empty"),
    # no_assistant_turn
    pytest.param({"messages": [m("user", "x")]}, "no_assistant_turn", ["no assistant"], id="only-user"),
    pytest.param({"messages": [m("system", "s"), m("user", "x"), m("tool", "t")]}, "no_assistant_turn",
                 ["no assistant"], id="system-user-tool"),
    pytest.param({"conversations": [{"from": "human", "value": "x"}]}, "no_assistant_turn", ["no assistant"],
                 id="sharegpt-only-human"),
    pytest.param({"prompt": [m("user", "x")], "completion": [m("user", "y")]}, "no_assistant_turn",
                 ["no assistant"], id="pc-completion-user"),
    # empty_output
    pytest.param({"messages": [m("user", "x"), m("assistant", "")]}, "empty_output", ["empty"], id="assistant-empty"),
    pytest.param({"messages": [m("user", "x"), m("assistant", " \n\t ")]}, "empty_output", ["empty"],
                 id="assistant-whitespace"),
    pytest.param({"messages": [m("user", "x"), m("assistant", ""), m("user", "y"), m("assistant", "  ")]},
                 "empty_output", ["every assistant"], id="all-assistants-empty"),
    pytest.param({"instruction": "x", "input": "", "output": ""}, "empty_output", ["empty"], id="alpaca-output-empty"),
    pytest.param({"prompt": "x", "completion": "\n"}, "empty_output", ["empty"], id="pc-completion-newline"),
]


@pytest.mark.parametrize("record, reason, words", RECORD_CASES)
def test_record_errors(default_tokenizer, record, reason, words):
    enc = Encoder(default_tokenizer, chat_template="tulu")
    with pytest.raises(RecordError) as info:
        enc.encode(record)
    assert info.value.reason == reason
    for w in words:
        assert w in info.value.message, f"{w!r} not in {info.value.message!r}"
    # the batch path returns the same error in place, between good records
    out = enc.encode_batch([{"messages": OK}, record, {"messages": OK}])
    assert not isinstance(out[0], RecordError) and not isinstance(out[2], RecordError)
    assert isinstance(out[1], RecordError) and out[1].reason == reason and out[1].message == info.value.message


def test_empty_output_is_not_raised_when_one_assistant_turn_has_text(default_tokenizer):
    enc = Encoder(default_tokenizer, chat_template="chatml")
    ex = enc.encode({"messages": [m("user", "x"), m("assistant", ""), m("user", "y"), m("assistant", "fine")]})
    assert ex.num_output_tokens > 0


# --- template_error ------------------------------------------------------------------------------------------
COUNT_PREFIX = ("{{ messages | length }} messages\n{% for message in messages %}"
                "{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}")
DROPS_ASSISTANT = ("{% for message in messages %}{% if message['role'] == 'assistant' %}[answer]{{ eos_token }}"
                   "{% else %}{{ message['role'] }}: {{ message['content'] }}\n{% endif %}{% endfor %}")
DROPS_USER = ("{% for message in messages %}{% if message['role'] == 'user' %}<q>{% else %}"
              "{{ message['content'] }}{% endif %}{% endfor %}")
MULTI_FLAG = ("{% if messages | length > 1 %}[multi-turn]\n{% endif %}"
              "{% for message in messages %}{{ message['content'] }}\n{% endfor %}")
REORDERS = ("{% for message in messages | reverse %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}")
BAD_SYNTAX = "{% for message in messages %}{{ message['content'] }"
RAISES = "{{ raise_exception('this template refuses everything') }}"


@pytest.mark.parametrize("source, messages, words", [
    pytest.param(DROPS_ASSISTANT, OK, ["message 1", "(assistant)", "not found"], id="drops-assistant-content"),
    pytest.param(DROPS_USER, [m("system", "S"), m("user", "question"), m("assistant", "A")],
                 ["message 1", "(user)", "not found"], id="drops-user-content"),
    pytest.param(BAD_SYNTAX, OK, ["failed to render", "TemplateSyntaxError"], id="syntax-error"),
    pytest.param(RAISES, OK, ["failed to render", "refuses everything"], id="raise_exception"),
])
def test_custom_template_errors(default_tokenizer, tmp_path, source, messages, words):
    path = tmp_path / "my_custom_template.jinja"
    path.write_text(source, encoding="utf-8")
    enc = Encoder(default_tokenizer, chat_template=str(path))
    assert enc.template.name == "my_custom_template.jinja"
    with pytest.raises(RecordError) as info:
        enc.encode({"messages": messages})
    err = info.value
    assert err.reason == "template_error" and isinstance(err, TemplateError)
    assert "'my_custom_template.jinja'" in err.message, "the message names the template"
    for w in words:
        assert w in err.message, f"{w!r} not in {err.message!r}"


@pytest.mark.parametrize("source, contents", [
    pytest.param(COUNT_PREFIX, ["Hi", "Hello there"], id="count-prefix"),
    pytest.param(MULTI_FLAG, ["Hi", "Hello there"], id="flag-at-second"),
    pytest.param(REORDERS, ["Hello there", "Hi"], id="reverse-order"),
])
def test_templates_that_are_not_prefix_stable_are_encoded(default_tokenizer, tmp_path, source, contents):
    """No prefix renders: a template whose render of fewer messages is not a prefix still encodes exactly."""
    path = tmp_path / "t.jinja"
    path.write_text(source, encoding="utf-8")
    ex = Encoder(default_tokenizer, chat_template=str(path), keep_text=True).encode({"messages": OK})
    def text_of(role):
        return "".join(ex.text[s:e] for (s, e), r in zip(ex.offsets.tolist(), ex.roles.tolist()) if r == role)

    # tokens may share a space with the template (content wins at a boundary); these templates have no
    # generation prompt, so the "assistant: " they emit inside the turn is output too (spec)
    assert text_of(2).strip() == "Hi"
    assert text_of(4).strip().endswith("Hello there")


# --- invariant_violation -------------------------------------------------------------------------------------
#: the tool message's header repeats the arguments of the last call, and no end-of-turn text closes a call turn
ECHO_ARGS = ("{% set ns = namespace(args='') %}{% for m in messages %}{% if m.role == 'user' %}<|user|>{{ m.content }}\n"
             "{% elif m.role == 'assistant' %}<|assistant|>{{ m.content }}{% for c in m.tool_calls or [] %}<call>"
             "{{ c.function.name }} {{ c.function.arguments | tojson }}</call>"
             "{% set ns.args = c.function.arguments | tojson %}{% endfor %}\n"
             "{% else %}<|tool|>result for {{ ns.args }}: {{ m.content }}\n{% endif %}{% endfor %}")
CALL_TURN = [m("user", "2+3?"), {"role": "assistant", "content": "", "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
    {"role": "tool", "content": "5", "tool_call_id": "c1"}, m("assistant", "It is 5.")]


def test_an_output_role_in_a_header_is_an_invariant_violation(default_tokenizer, tmp_path):
    """The call's text (what the render gains over the render without calls) runs into the tool message's header:
    labelling it would train the header as a tool call, so the record is rejected naming message, field and rule."""
    path = tmp_path / "echo.jinja"
    path.write_text(ECHO_ARGS, encoding="utf-8")
    with pytest.raises(RecordError) as info:
        Encoder(default_tokenizer, chat_template=str(path)).encode({"messages": CALL_TURN})
    err = info.value
    assert err.reason == "invariant_violation"
    assert "message 2 (tool) header" in err.message and "carries an output role" in err.message
    assert "'<|tool|>result for {\"a\": 2, \"b\": 3}'" in err.message


def test_find_without_check_returns_the_labels_and_their_violations(default_tokenizer, tmp_path):
    """For reports (check-template): the labels of a violating conversation, and the violations they break."""
    from im_data import check_invariants
    from im_data.formats import read_conversation

    path = tmp_path / "echo.jinja"
    path.write_text(ECHO_ARGS, encoding="utf-8")
    enc = Encoder(default_tokenizer, chat_template=str(path))
    conversation = read_conversation({"messages": CALL_TURN}, FormatOptions())
    rendered = enc._spans.find(conversation, check=False)
    found = check_invariants(rendered, conversation)
    assert [(v.message, v.role, v.field) for v in found] == [(2, "tool", "header")]
    assert found[0].text == '<|tool|>result for {"a": 2, "b": 3}'


def test_a_preview_in_a_header_is_the_templates_text(default_tokenizer, tmp_path):
    """A template that previews the answer in the user's header: the answer's occurrence in its own turn is the
    field, the preview is template text (never trained)."""
    path = tmp_path / "preview.jinja"
    path.write_text("{% for m in messages %}{% if m.role == 'user' %}<|user|>{% if not loop.last %}(next: "
                    "{{ messages[loop.index0 + 1].content }}) {% endif %}{{ m.content }}\n{% else %}<|assistant|>"
                    "{{ m.content }}</s>\n{% endif %}{% endfor %}", encoding="utf-8")
    ex = Encoder(default_tokenizer, chat_template=str(path), keep_text=True).encode({"messages": OK})
    roles = {}
    for (s, e), r in zip(ex.offsets.tolist(), ex.roles.tolist()):
        roles[r] = roles.get(r, "") + ex.text[s:e]
    assert ex.text.startswith("<|user|>(next: Hello there) Hi\n")
    assert "(next: Hello there)" in roles[0] and roles[2].strip() == "Hi" and roles[4].endswith("Hello there")


# --- unrendered_field ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("message, words", [
    pytest.param({"role": "assistant", "content": "A", "reasoning_content": "because"},
                 ["message 1 (assistant)", "'reasoning_content'", "--allow-unrendered reasoning_content"],
                 id="reasoning"),
    pytest.param({"role": "assistant", "content": "A", "thinking": "because"},
                 ["message 1 (assistant)", "'reasoning_content'"], id="reasoning-alias"),
    pytest.param({"role": "assistant", "content": "",
                  "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                 ["message 1 (assistant)", "tool_calls[0].function.name"], id="tool-call"),
    pytest.param({"role": "assistant", "content": "A", "note": "kept?"}, ["message 1 (assistant)", "'note'"],
                 id="extra-text-field"),
    pytest.param({"role": "assistant", "content": "A", "score": 3}, ["message 1 (assistant)", "'score'", "not text"],
                 id="extra-number-field"),
])
def test_unrendered_field(default_tokenizer, message, words):
    """chatml renders role and content only: every other data field would vanish, so the record is rejected."""
    enc = Encoder(default_tokenizer, chat_template="chatml")
    with pytest.raises(RecordError) as info:
        enc.encode({"messages": [m("user", "Hi"), message]})
    assert info.value.reason == "unrendered_field"
    for w in words:
        assert w in info.value.message, f"{w!r} not in {info.value.message!r}"
    field = [k for k in message if k not in ("role", "content")][0]
    field = {"thinking": "reasoning_content"}.get(field, field)
    ex = Encoder(default_tokenizer, chat_template="chatml", allow_unrendered=[field]).encode(
        {"messages": [m("user", "Hi"), message]})
    assert ex.num_output_tokens >= 0


def test_unrendered_tools(default_tokenizer):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    with pytest.raises(RecordError) as info:
        Encoder(default_tokenizer, chat_template="chatml").encode({"messages": OK, "tools": tools})
    assert info.value.reason == "unrendered_field" and "the record's tools" in info.value.message


def test_metadata_fields_need_not_be_rendered(default_tokenizer):
    """tool_call_id and name identify a message; a template that ignores them drops no data."""
    ex = Encoder(default_tokenizer, chat_template="chatml").encode({"messages": [
        {"role": "user", "content": "Hi", "name": "bob"}, m("assistant", "A"),
        {"role": "tool", "content": "42", "tool_call_id": "call_1", "name": "f"}, m("assistant", "B")]})
    assert ex.num_output_tokens > 0


@pytest.mark.parametrize("template, messages, words", [
    pytest.param("gemma", [m("user", "x"), m("tool", "t"), m("assistant", "y")], ["gemma", "tool"],
                 id="gemma-tool"),
    pytest.param("llama2", [m("user", "x"), m("tool", "t"), m("assistant", "y")], ["llama2", "tool"],
                 id="llama2-tool"),
    pytest.param("mistral", [m("user", "x"), m("assistant", "y"), m("system", "late")], ["mistral", "system"],
                 id="mistral-late-system"),
])
def test_builtin_template_rejects_unsupported_roles(default_tokenizer, template, messages, words):
    with pytest.raises(RecordError) as info:
        Encoder(default_tokenizer, chat_template=template).encode({"messages": messages})
    assert info.value.reason == "template_error"
    assert f"'{template}'" in info.value.message
    for w in words:
        assert w in info.value.message


def test_unknown_template_name_is_a_configuration_error(default_tokenizer):
    with pytest.raises(ValueError, match="neither a built-in"):
        Encoder(default_tokenizer, chat_template="no-such-template")


# --- special_token_in_content --------------------------------------------------------------------------------
def test_special_token_in_content(default_tokenizer):
    rec = {"messages": [m("user", "please type <|im_end|> now"), m("assistant", "ok")]}
    with pytest.raises(RecordError) as info:
        Encoder(default_tokenizer, chat_template="chatml").encode(rec)
    assert info.value.reason == "special_token_in_content"
    assert "'<|im_end|>'" in info.value.message and "user" in info.value.message
    ex = Encoder(default_tokenizer, chat_template="chatml", allow_special_tokens=True).encode(rec)
    assert ex.num_instruction_tokens > 0


# --- too_long / truncation -----------------------------------------------------------------------------------
LONG_USER = {"messages": [m("user", "word " * 40), m("assistant", "short answer here")]}


def test_too_long_under_drop(default_tokenizer):
    n = len(Encoder(default_tokenizer, chat_template="tulu").encode(LONG_USER))
    enc = Encoder(default_tokenizer, chat_template="tulu", max_length=n - 1, truncation="drop")
    with pytest.raises(RecordError) as info:
        enc.encode(LONG_USER)
    assert info.value.reason == "too_long"
    assert str(n) in info.value.message and f"--max-length {n - 1} (--truncation drop)" in info.value.message
    ex = Encoder(default_tokenizer, chat_template="tulu", max_length=n, truncation="drop").encode(LONG_USER)
    assert len(ex) == n and ex.truncated is False


def test_keep_start_cutting_the_output_to_nothing_is_too_long(default_tokenizer):
    full = Encoder(default_tokenizer, chat_template="tulu").encode(LONG_USER)
    first_out = int(list(full.roles).index(4))
    enc = Encoder(default_tokenizer, chat_template="tulu", max_length=first_out, truncation="keep_start")
    with pytest.raises(RecordError) as info:
        enc.encode(LONG_USER)
    assert info.value.reason == "too_long"
    assert "cut the output to nothing" in info.value.message
    # one more token keeps one output token: accepted, truncated, counts before/after truncation recorded
    ex = Encoder(default_tokenizer, chat_template="tulu", max_length=first_out + 1).encode(LONG_USER)
    assert ex.truncated is True and len(ex) == first_out + 1
    assert ex.num_output_tokens_kept == 1 and ex.num_output_tokens == full.num_output_tokens > 1
    assert ex.num_instruction_tokens == full.num_instruction_tokens
    assert ex.input_ids.tolist() == full.input_ids[: first_out + 1].tolist()
    assert ex.role_token_counts.sum() == first_out + 1


def test_not_truncated_at_exact_length(default_tokenizer):
    full = Encoder(default_tokenizer, chat_template="tulu").encode(LONG_USER)
    ex = Encoder(default_tokenizer, chat_template="tulu", max_length=len(full)).encode(LONG_USER)
    assert ex.truncated is False and ex.num_output_tokens_kept == full.num_output_tokens


def test_keep_start_truncation_in_second_turn_keeps_first_output(default_tokenizer):
    rec = {"messages": [m("user", "a"), m("assistant", "first answer"), m("user", "b " * 30),
                        m("assistant", "second answer")]}
    full = Encoder(default_tokenizer, chat_template="tulu").encode(rec)
    roles = full.roles.tolist()
    cut = len(roles) - 1 - roles[::-1].index(2)  # last user token: the second output is cut entirely
    ex = Encoder(default_tokenizer, chat_template="tulu", max_length=cut).encode(rec)
    assert ex.truncated and 0 < ex.num_output_tokens_kept < ex.num_output_tokens


def test_invalid_encoder_settings(default_tokenizer):
    with pytest.raises(ValueError, match="truncation"):
        Encoder(default_tokenizer, truncation="keep_end")
    with pytest.raises(ValueError, match="max_length"):
        Encoder(default_tokenizer, max_length=1)


# --- no_trainable_tokens -------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy, record", [
    pytest.param(WeightPolicy(system=1.0, assistant=0.0, assistant_end=0.0), {"messages": OK},
                 id="system-only-policy-no-system"),
    pytest.param(WeightPolicy(tool=0.5, assistant=0.0, assistant_end=0.0),
                 {"messages": [m("system", "s"), m("user", "u"), m("assistant", "a")]}, id="tool-only-policy-no-tool"),
])
def test_no_trainable_tokens(default_tokenizer, policy, record):
    with pytest.raises(RecordError) as info:
        Encoder(default_tokenizer, chat_template="tulu", policy=policy).encode(record)
    assert info.value.reason == "no_trainable_tokens"
    assert "positive weight" in info.value.message and "'custom'" in info.value.message


def test_no_trainable_tokens_after_truncation(default_tokenizer):
    """IT weights nothing in the instruction; keep_start that keeps only some output still trains."""
    pol = WeightPolicy(user=0.0, assistant=0.0, assistant_end=1.0)  # only assistant_end weighs
    rec = {"messages": [m("user", "x"), m("assistant", "a fairly long answer with words")]}
    full = Encoder(default_tokenizer, chat_template="tulu", policy=pol).encode(rec)
    assert full.loss_weights.sum() == 1.0
    with pytest.raises(RecordError) as info:
        Encoder(default_tokenizer, chat_template="tulu", policy=pol, max_length=len(full) - 2).encode(rec)
    assert info.value.reason == "no_trainable_tokens"


# --- the error type itself -----------------------------------------------------------------------------------
def test_reason_codes_are_the_documented_set():
    assert set(REASONS) == {
        "invalid_json", "unknown_format", "missing_field", "not_a_string", "bad_role", "empty_conversation",
        "no_assistant_turn", "empty_output", "template_error", "special_token_in_content", "too_long",
        "no_trainable_tokens", "read_error", "too_large", "internal_error", "unrendered_field",
        "reserved_template_variable", "template_timeout", "invariant_violation", "duplicate", "contaminated"}
    with pytest.raises(ValueError, match="unknown reason"):
        RecordError("oops", "x")


def test_every_record_reason_is_covered_by_this_module():
    covered = {p.values[1] for p in RECORD_CASES} | {"invalid_json", "template_error", "special_token_in_content",
                                                      "too_long", "no_trainable_tokens", "unrendered_field",
                                                      "invariant_violation"}
    # tests/pipeline/hostile; duplicate and contaminated: tests/pipeline/test_dedup.py, test_decontam.py
    assert covered == set(REASONS) - {"read_error", "too_large", "internal_error", "reserved_template_variable",
                                      "template_timeout", "duplicate", "contaminated"}


def test_errors_pickle():
    for err in (RecordError("too_long", "x y"), TemplateError("tpl 'a' broke")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and back.reason == err.reason and back.message == err.message
        assert str(back) == str(err)


def test_format_option_errors():
    with pytest.raises(ValueError, match="unknown input format"):
        FormatOptions(format="csv")
