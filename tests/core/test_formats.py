"""Input formats: auto-detection per record, FormatOptions column mapping, and the sample files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from im_data import Encoder, FormatOptions, RecordError, normalize_record
from im_data.formats import detect_format

DATA = Path(__file__).resolve().parents[1] / "data"


def m(role, content):
    return {"role": role, "content": content}


@pytest.mark.parametrize("record, fmt, messages", [
    pytest.param({"messages": [m("system", "S"), m("user", "U"), m("assistant", "A"), m("tool", "T"),
                               m("assistant", "B")]}, "messages",
                 [m("system", "S"), m("user", "U"), m("assistant", "A"), m("tool", "T"), m("assistant", "B")],
                 id="messages-all-roles"),
    pytest.param({"messages": [{"role": "user", "content": "U", "name": "bob", "extra": 1}, m("assistant", "A")]},
                 "messages", [{"role": "user", "content": "U", "name": "bob", "extra": 1}, m("assistant", "A")],
                 id="messages-extra-keys-kept"),  # kept for the template; unrendered data is rejected at encode
    pytest.param({"prompt": "Q?", "completion": " A."}, "prompt_completion",
                 [m("user", "Q?"), m("assistant", " A.")], id="pc-strings-verbatim"),
    pytest.param({"prompt": "Q?", "completion": "A.", "system": "Be nice."}, "prompt_completion",
                 [m("system", "Be nice."), m("user", "Q?"), m("assistant", "A.")], id="pc-strings-system"),
    pytest.param({"prompt": [m("system", "S"), m("user", "U")], "completion": [m("assistant", "A")]},
                 "prompt_completion", [m("system", "S"), m("user", "U"), m("assistant", "A")],
                 id="pc-conversational"),
    pytest.param({"prompt": [m("user", "U1"), m("assistant", "A1"), m("user", "U2")],
                  "completion": [m("assistant", "A2")]}, "prompt_completion",
                 [m("user", "U1"), m("assistant", "A1"), m("user", "U2"), m("assistant", "A2")],
                 id="pc-conversational-multi-turn"),
    pytest.param({"instruction": "Add", "input": "2 and 3", "output": "5"}, "alpaca",
                 [m("user", "Add\n\n2 and 3"), m("assistant", "5")], id="alpaca-with-input"),
    pytest.param({"instruction": "Add", "input": "", "output": "5"}, "alpaca",
                 [m("user", "Add"), m("assistant", "5")], id="alpaca-empty-input"),
    pytest.param({"instruction": "Add", "input": "  \n", "output": "5"}, "alpaca",
                 [m("user", "Add"), m("assistant", "5")], id="alpaca-blank-input"),
    pytest.param({"instruction": "Add", "output": "5"}, "alpaca", [m("user", "Add"), m("assistant", "5")],
                 id="alpaca-no-input-key"),
    pytest.param({"instruction": "Add", "input": None, "output": "5"}, "alpaca",
                 [m("user", "Add"), m("assistant", "5")], id="alpaca-null-input"),
    pytest.param({"instruction": "Add", "input": "x", "output": "5", "system": "Be exact."}, "alpaca",
                 [m("system", "Be exact."), m("user", "Add\n\nx"), m("assistant", "5")], id="alpaca-system"),
    pytest.param({"instruction": "Add", "output": "5", "system": None}, "alpaca",
                 [m("user", "Add"), m("assistant", "5")], id="alpaca-null-system"),
    pytest.param({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "H"},
                                    {"from": "gpt", "value": "G"}, {"from": "user", "value": "U"},
                                    {"from": "function_response", "value": "F"}, {"from": "assistant", "value": "A"},
                                    {"from": "observation", "value": "O"}, {"from": "tool", "value": "T"},
                                    {"from": "gpt", "value": "G2"}]}, "sharegpt",
                 [m("system", "S"), m("user", "H"), m("assistant", "G"), m("user", "U"), m("tool", "F"),
                  m("assistant", "A"), m("tool", "O"), m("tool", "T"), m("assistant", "G2")],
                 id="sharegpt-role-mapping"),
])
def test_auto_detected_formats(record, fmt, messages):
    assert detect_format(record) == fmt
    assert normalize_record(record) == messages
    assert normalize_record(record, FormatOptions(format=fmt)) == messages


def test_detection_precedence():
    """messages > conversations > prompt/completion > instruction/output, per record."""
    both = {"messages": [m("user", "a"), m("assistant", "b")], "conversations": [], "instruction": "x", "output": "y"}
    assert detect_format(both) == "messages"
    assert detect_format({"conversations": [], "prompt": "p", "completion": "c"}) == "sharegpt"
    assert detect_format({"prompt": "p", "completion": "c", "instruction": "i", "output": "o"}) == "prompt_completion"
    # a forced format reads only its own fields
    assert normalize_record(both, FormatOptions(format="alpaca")) == [m("user", "x"), m("assistant", "y")]


def test_mixed_formats_in_one_batch(default_tokenizer):
    recs = [{"instruction": "Add", "input": "2 and 3", "output": "5"},
            {"prompt": "Add\n\n2 and 3", "completion": "5"},
            {"conversations": [{"from": "human", "value": "Add\n\n2 and 3"}, {"from": "gpt", "value": "5"}]},
            {"messages": [m("user", "Add\n\n2 and 3"), m("assistant", "5")]}]
    out = Encoder(default_tokenizer, chat_template="tulu").encode_batch(recs)
    ids = [ex.input_ids.tolist() for ex in out]
    assert ids[0] == ids[1] == ids[2] == ids[3]


@pytest.mark.parametrize("options, record, messages", [
    pytest.param(FormatOptions(messages_field="dialog"),
                 {"dialog": [m("user", "U"), m("assistant", "A")], "messages": "ignored?"},
                 [m("user", "U"), m("assistant", "A")], id="messages_field"),
    pytest.param(FormatOptions(prompt_field="question", completion_field="answer"),
                 {"question": "Q", "answer": "A"}, [m("user", "Q"), m("assistant", "A")], id="prompt-completion-fields"),
    pytest.param(FormatOptions(instruction_field="task", input_field="context", output_field="response"),
                 {"task": "Sum", "context": "1 2", "response": "3"}, [m("user", "Sum\n\n1 2"), m("assistant", "3")],
                 id="alpaca-fields"),
    pytest.param(FormatOptions(system_field="persona"),
                 {"instruction": "Hi", "output": "Yo", "persona": "pirate", "system": "not me"},
                 [m("system", "pirate"), m("user", "Hi"), m("assistant", "Yo")], id="system_field"),
    pytest.param(FormatOptions(system_field=None),
                 {"instruction": "Hi", "output": "Yo", "system": "ignored"},
                 [m("user", "Hi"), m("assistant", "Yo")], id="system_field-off"),
    pytest.param(FormatOptions(conversations_field="turns"),
                 {"turns": [{"from": "human", "value": "H"}, {"from": "gpt", "value": "G"}]},
                 [m("user", "H"), m("assistant", "G")], id="conversations_field"),
    pytest.param(FormatOptions(format="prompt_completion", prompt_field="src", completion_field="tgt"),
                 {"src": [m("user", "U")], "tgt": [m("assistant", "A")], "messages": [m("user", "x")]},
                 [m("user", "U"), m("assistant", "A")], id="forced-format-wins-over-messages"),
])
def test_column_mapping(options, record, messages, default_tokenizer):
    assert normalize_record(record, options) == messages
    # the encoder honours the options too; a record field the mapped format does not read is data the template
    # never sees: rejected unless allowed (nothing is dropped silently)
    unread = [k for k in record if k in ("messages", "system")]
    enc = Encoder(default_tokenizer, chat_template="tulu", format_options=options, keep_text=True)
    if unread:
        with pytest.raises(RecordError) as info:
            enc.encode(record)
        assert info.value.reason == "unrendered_field" and repr(unread[0]) in info.value.message
        enc = Encoder(default_tokenizer, chat_template="tulu", format_options=options, keep_text=True,
                      allow_unrendered=unread)
    ex = enc.encode(record)
    expected = Encoder(default_tokenizer, chat_template="tulu", keep_text=True).encode({"messages": messages})
    assert ex.text == expected.text and ex.input_ids.tolist() == expected.input_ids.tolist()


def test_mapped_field_absent_is_missing_or_unknown():
    with pytest.raises(RecordError) as info:
        normalize_record({"question": "Q"}, FormatOptions(prompt_field="question", completion_field="answer"))
    assert info.value.reason == "missing_field" and "'answer'" in info.value.message
    with pytest.raises(RecordError) as info:
        normalize_record({"messages": []}, FormatOptions(messages_field="dialog"))
    assert info.value.reason == "unknown_format"


def _read(name):
    with open(DATA / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_sample_alpaca_file():
    recs = _read("sample_alpaca.jsonl")
    assert len(recs) == 8
    msgs = [normalize_record(r) for r in recs]
    assert all(detect_format(r) == "alpaca" for r in recs)
    assert msgs[0] == [m("user", "Name three primary colours."), m("assistant", "Red, yellow and blue.")]
    assert msgs[2] == [m("user", "Convert the temperature from Celsius to Fahrenheit.\n\n25 °C"),
                       m("assistant", "25 °C is 77 °F (25 × 9/5 + 32).")]
    for r, ms in zip(recs, msgs):
        want_user = r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")
        assert ms == [m("user", want_user), m("assistant", r["output"])]


def test_sample_prompt_completion_file():
    recs = _read("sample_prompt_completion.jsonl")
    msgs = [normalize_record(r) for r in recs]
    assert msgs[0] == [m("user", "The opposite of 'ancient' is"), m("assistant", " 'modern'.")]
    assert msgs[1] == [m("user", "Q: What is 12 times 12?\nA:"), m("assistant", " 144")]
    assert msgs[3] == [m("user", "Give me a synonym for 'happy'."), m("assistant", "Cheerful.")]
    assert msgs[4] == [m("system", "You are a helpful assistant."), m("user", "How many days are in a leap year?"),
                       m("assistant", "366 days.")]
    assert msgs[5] == [m("user", "Say hello in Chinese."), m("assistant", "你好 (nǐ hǎo).")]


def test_sample_sharegpt_file():
    recs = _read("sample_sharegpt.jsonl")
    msgs = [normalize_record(r) for r in recs]
    assert msgs[1] == [m("system", "You are a terse assistant."), m("user", "How many legs does a spider have?"),
                       m("assistant", "Eight.")]
    assert msgs[5] == [m("user", "Is 17 a prime number?"),
                       m("assistant", "Yes. 17 has no divisors other than 1 and itself."),
                       m("user", "And 21?"), m("assistant", "No, 21 = 3 × 7.")]
    assert [[x["role"] for x in ms] for ms in msgs] == [
        ["user", "assistant"], ["system", "user", "assistant"], ["user", "assistant", "user", "assistant"],
        ["user", "assistant"], ["system", "user", "assistant"], ["user", "assistant", "user", "assistant"]]


@pytest.mark.parametrize("name", ["sample_alpaca.jsonl", "sample_prompt_completion.jsonl", "sample_sharegpt.jsonl"])
def test_sample_files_encode_and_content_round_trips(default_tokenizer, name):
    """Every record encodes; the decoded content tokens of each role contain each message's content."""
    recs = _read(name)
    enc = Encoder(default_tokenizer, chat_template="tulu", keep_text=True)
    out = enc.encode_batch(recs)
    for rec, ex in zip(recs, out):
        assert not isinstance(ex, RecordError), ex
        msgs = normalize_record(rec)
        for role_code, role in ((1, "system"), (2, "user"), (4, "assistant")):
            text = default_tokenizer.decode(ex.input_ids[ex.roles == role_code].tolist())
            want = [x["content"] for x in msgs if x["role"] == role]
            pos = 0
            for w in want:  # in order, each content is inside the role's token text
                found = text.find(w, pos)
                assert found != -1, (role, w, text)
                pos = found + len(w)
