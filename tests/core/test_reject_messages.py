"""Reject messages speak the user's language: they name CLI flags (``--allow-special-tokens``), never the Python
arguments behind them (``allow_special_tokens``), and a record whose tools, tool calls or reasoning the template
cannot render is told which built-in renders them (and that one does)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from im_data import REASONS, ROLE_CODES, ChatTemplate, Encoder, RecordError

ROOT = Path(__file__).resolve().parents[2]
#: names that are data, not arguments: a record's own ``chat_template_kwargs`` field, the ``example_id`` column
DATA_NAMES = {"chat_template_kwargs", "example_id"}
MESSAGE_BUILDERS = {"RecordError", "TemplateError"}  # every reject is one of these (im_data/errors.py)
TOOLS_HINT = "(--chat-template chatml_tools)"

# the README's two records: a tool call and a reasoning trace
TOOL_RECORD = json.loads(
    '{"tools": [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}], "messages": '
    '[{"role": "user", "content": "2+3?"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", '
    '"type": "function", "function": {"name": "add", "arguments": "{\\"a\\": 2, \\"b\\": 3}"}}]}, {"role": "tool", '
    '"tool_call_id": "c1", "content": "5"}, {"role": "assistant", "content": "5"}]}')
REASONING_RECORD = {"messages": [{"role": "user", "content": "2+3?"},
                                 {"role": "assistant", "reasoning_content": "2+3=5", "content": "5"}]}


def python_argument_names() -> set[str]:
    """``allow_special_tokens``, ``max_length``, ...: the Python spelling of every multi-word flag of the three
    commands (what argparse makes of ``--allow-special-tokens``)."""
    from pipelines.cli import _subparsers, build_parser

    names = set()
    for sub in _subparsers(build_parser()).values():
        for action in sub._actions:  # pylint: disable=protected-access
            names |= {o[2:].replace("-", "_") for o in action.option_strings if o.startswith("--") and "-" in o[2:]}
    return names - DATA_NAMES


def python_names_in(text: str, names: set[str]) -> list[str]:
    return [n for n in sorted(names) if re.search(rf"(?<![\w-]){n}(?!\w)", text)]


def message_texts(call: ast.Call) -> list[str]:
    """The literal text of a reject's message: string constants and the literal parts of f-strings."""
    out = []
    for node in ast.walk(call):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(node.value)
    return out


def reject_message_sources() -> list[tuple[str, str]]:
    """``(where, text)`` of every literal that goes into a reject message in im_data/ and pipelines/."""
    found = []
    for path in sorted([*(ROOT / "im_data").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", None))
                if name in MESSAGE_BUILDERS:
                    found += [(f"{path.relative_to(ROOT)}:{node.lineno}", t) for t in message_texts(node)]
    return found


def test_the_python_names_are_found():
    names = python_argument_names()
    assert {"allow_special_tokens", "allow_unrendered", "max_length", "max_record_bytes"} <= names
    assert python_names_in("pass allow_special_tokens to accept it", names) == ["allow_special_tokens"]
    assert python_names_in("pass --allow-special-tokens to accept it", names) == []


def test_no_reject_message_names_a_python_argument():
    names = python_argument_names()
    sources = reject_message_sources()
    assert len(sources) > 50  # the scan sees the reject messages
    bad = [(where, text, python_names_in(text, names)) for where, text in sources if python_names_in(text, names)]
    assert not bad, f"reject messages name Python arguments instead of flags: {bad}"
    bad = [(reason, text) for reason, text in REASONS.items() if python_names_in(text, names)]
    assert not bad, f"reason meanings name Python arguments instead of flags: {bad}"


LONG = {"messages": [{"role": "user", "content": "word " * 40}, {"role": "assistant", "content": "short answer"}]}


def _reject(encoder: Encoder, record) -> RecordError:
    with pytest.raises(RecordError) as info:
        encoder.encode(record)
    return info.value


def test_real_reject_messages_name_the_flags(default_tokenizer):
    """Records that hit every flag-bearing reject, encoded for real: each message names its flag, and none a
    Python argument."""
    n = len(Encoder(default_tokenizer, chat_template="tulu").encode(LONG))
    first_output = list(Encoder(default_tokenizer, chat_template="tulu").encode(LONG).roles).index(4)
    special = {"messages": [{"role": "user", "content": "type <|im_end|>"}, {"role": "assistant", "content": "ok"}]}
    special_args = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{\"x\": \"<|im_end|>\"}"}}]}]}
    cases = [
        (Encoder(default_tokenizer, chat_template="chatml"), special, "special_token_in_content",
         "; pass --allow-special-tokens to accept it"),
        (Encoder(default_tokenizer, chat_template="chatml_tools"), special_args, "special_token_in_content",
         "; pass --allow-special-tokens to accept it"),
        (Encoder(default_tokenizer, chat_template="tulu", max_length=n - 1, truncation="drop"), LONG, "too_long",
         f"{n} tokens > --max-length {n - 1} (--truncation drop)"),
        (Encoder(default_tokenizer, chat_template="tulu", max_length=2, truncation="drop"), LONG, "too_long",
         "bytes > --max-length 2 × "),
        (Encoder(default_tokenizer, chat_template="tulu", max_length=first_output), LONG, "too_long",
         f"truncation to --max-length {first_output} cut the output to nothing"),
        (Encoder(default_tokenizer, chat_template="chatml"), REASONING_RECORD, "unrendered_field",
         "; pass --allow-unrendered reasoning_content to accept that"),
    ]
    names = python_argument_names()
    for encoder, record, reason, words in cases:
        err = _reject(encoder, record)
        assert err.reason == reason and words in err.message, err
        assert python_names_in(err.message, names) == [], err


@pytest.mark.parametrize("template", ["chatml", "tulu", "mistral", "zephyr"])
def test_tool_call_record_is_told_which_builtin_renders_it(default_tokenizer, template):
    """The README's tool-call record fails under a template without tools; the reject names chatml_tools, and
    chatml_tools renders it."""
    err = _reject(Encoder(default_tokenizer, chat_template=template), TOOL_RECORD)
    assert err.reason in ("template_error", "unrendered_field"), err
    assert err.message.endswith("; the built-in chat template chatml_tools renders the record's tools, tool calls "
                                f"and tool results {TOOLS_HINT}") or \
        err.message.endswith(f"renders the record's tool calls {TOOLS_HINT}"), err.message
    ex = Encoder(default_tokenizer, chat_template="chatml_tools").encode(TOOL_RECORD)
    assert ex.num_output_tokens > 0


def test_readme_tool_record_under_chatml_names_the_builtin(default_tokenizer):
    err = _reject(Encoder(default_tokenizer, chat_template="chatml"), TOOL_RECORD)
    assert err.reason == "template_error"
    assert err.message == ("chat template 'chatml' failed to render 4 message(s): UndefinedError: 'dict object' has "
                           "no attribute 'content'; the built-in chat template chatml_tools renders the record's "
                           f"tools, tool calls and tool results {TOOLS_HINT}")


@pytest.mark.parametrize("template", ["chatml", "llama3", "tulu"])
def test_reasoning_record_is_told_which_builtin_renders_it(default_tokenizer, template):
    err = _reject(Encoder(default_tokenizer, chat_template=template), REASONING_RECORD)
    assert err.reason == "unrendered_field"
    assert err.message == (f"chat template {template!r} does not render message 1 (assistant) field "
                           "'reasoning_content'; pass --allow-unrendered reasoning_content to accept that; the "
                           f"built-in chat template chatml_tools renders the record's reasoning {TOOLS_HINT}")
    ex = Encoder(default_tokenizer, chat_template="chatml_tools").encode(REASONING_RECORD)
    assert ROLE_CODES["reasoning"] in set(ex.roles.tolist())  # rendered, and trained as reasoning


def test_no_hint_where_the_builtin_would_not_help(default_tokenizer):
    # chatml_tools itself does not render documents: no suggestion of itself
    documents = {"documents": [{"title": "t", "text": "some text"}], **REASONING_RECORD}
    err = _reject(Encoder(default_tokenizer, chat_template="chatml_tools"), documents)
    assert err.reason == "unrendered_field" and "documents" in err.message and "chatml_tools renders" not in err.message
    # a plain conversation that a template refuses: nothing about tools
    boom = ChatTemplate("boom", "{{ raise_exception('no plain chats here') }}")
    plain = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    err = _reject(Encoder(default_tokenizer, chat_template=boom), plain)
    assert err.reason == "template_error" and err.message.endswith("no plain chats here")
