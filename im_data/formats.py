"""Input formats: every supported record shape becomes one list of ``{"role", "content"}`` messages.

Formats (auto-detected per record, or forced with :class:`FormatOptions`):

* ``messages`` — chat messages ``[{"role": "system"|"user"|"assistant"|"tool", "content": str}, ...]``
* ``prompt_completion`` — TRL's ``prompt``/``completion``: plain strings, or conversational lists of messages
* ``alpaca`` — ``instruction``/``input``/``output``; the user turn is ``instruction`` followed by a blank
  line and ``input`` when ``input`` is non-empty (as open-instruct converts Alpaca data)
* ``sharegpt`` — ``conversations`` of ``{"from": "human"|"gpt"|"system"|"tool", "value": str}``

>>> normalize_record({"instruction": "Add", "input": "2 and 3", "output": "5"})
[{'role': 'user', 'content': 'Add\\n\\n2 and 3'}, {'role': 'assistant', 'content': '5'}]
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from .errors import RecordError
from .messages import REASONING_KEY, Conversation, build_conversation, function_call_message

import orjson

FORMATS = ("auto", "messages", "prompt_completion", "alpaca", "sharegpt")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "tool": "tool", "function_response": "tool", "observation": "tool"}
# plus "function_call": an assistant turn whose value is a JSON tool call (see _sharegpt_messages)

Message = dict  # {"role": str, "content": str}


@dataclasses.dataclass(frozen=True)
class FormatOptions:
    """Which format to read and which columns hold what (for datasets with non-standard names)."""

    format: str = "auto"
    messages_field: str = "messages"
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    instruction_field: str = "instruction"
    input_field: str = "input"
    output_field: str = "output"
    system_field: str | None = "system"  # optional system prompt column for alpaca/prompt_completion
    conversations_field: str = "conversations"
    split_inline_reasoning: bool = False  # assistant content "<think>R</think>C" -> reasoning R, content C

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown input format {self.format!r}; expected one of {FORMATS}")

    @classmethod
    def from_cli(cls, input_format: str = "auto", columns: list[str] | None = None) -> "FormatOptions":
        """``--input-format`` and ``--columns KEY=NAME ...`` (KEY: messages, prompt, completion, instruction,
        input, output, system, conversations).

        >>> FormatOptions.from_cli("alpaca", ["instruction=question", "output=answer"]).instruction_field
        'question'
        """
        fields: dict[str, str] = {}
        for item in columns or []:
            key, sep, name = item.partition("=")
            if not sep or f"{key}_field" not in {f.name for f in dataclasses.fields(cls)} or not name:
                keys = ", ".join(f.name[:-6] for f in dataclasses.fields(cls) if f.name.endswith("_field"))
                raise ValueError(f"--columns expects KEY=NAME with KEY one of {keys}; got {item!r}")
            fields[f"{key}_field"] = name
        return cls(format=input_format, **fields)


def parse_json_line(line: bytes | str) -> Any:
    """Decode one JSON record strictly; raise ``invalid_json`` for anything else (never another exception).

    orjson is strict: invalid UTF-8, lone surrogates (also as ``\\ud800`` escapes), ``NaN``/``Infinity``, numbers
    that overflow a double (e.g. integer literals of thousands of digits) and nesting deeper than 1024 are all
    refused, so nothing the reader accepts can later fail in the tokenizer or the reject writer.
    """
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if isinstance(line, (bytes, bytearray, memoryview)):
            try:
                bytes(line).decode("utf-8")
            except UnicodeDecodeError as bad:
                raise RecordError("invalid_json", f"not valid UTF-8: {bad}") from None
        raise RecordError("invalid_json", f"not valid JSON: {exc}") from None
    except TypeError as exc:
        raise RecordError("invalid_json", f"not valid JSON: {type(exc).__name__}: {exc}") from None


def detect_format(record: Any, options: FormatOptions = FormatOptions()) -> str:
    if not isinstance(record, Mapping):
        raise RecordError("unknown_format", f"a record must be a JSON object, got {type(record).__name__}")
    if options.format != "auto":
        return options.format
    if options.messages_field in record:
        return "messages"
    if options.conversations_field in record:
        return "sharegpt"
    if options.prompt_field in record or options.completion_field in record:
        return "prompt_completion"
    if options.instruction_field in record or options.output_field in record:
        return "alpaca"
    keys = ", ".join(sorted(map(str, record))[:8]) or "none"
    raise RecordError("unknown_format", f"no messages/conversations/prompt+completion/instruction+output fields "
                                        f"(keys: {keys})")


def _require(record: Mapping, field: str) -> Any:
    if field not in record or record[field] is None:
        raise RecordError("missing_field", f"field {field!r} is missing")
    return record[field]


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RecordError("not_a_string", f"{where} must be a string, got {type(value).__name__}")
    return value


def _raw_messages(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise RecordError("not_a_string" if isinstance(value, (int, float, bool)) else "unknown_format",
                          f"{where} must be a list of messages, got {type(value).__name__}")
    return value


def _sharegpt_messages(value: Any, where: str) -> list:
    """ShareGPT turns ``{"from", "value"}`` as chat messages; ``function_call`` turns become assistant tool calls,
    ``observation`` turns tool results. Other keys of a turn are kept (they are checked like message fields)."""
    out = []
    for i, turn in enumerate(_raw_messages(value, where)):
        if not isinstance(turn, Mapping):
            raise RecordError("unknown_format", f"{where}[{i}] must be an object, got {type(turn).__name__}")
        for key in ("from", "value"):
            if key not in turn:
                raise RecordError("missing_field", f"{where}[{i}] has no {key!r}")
        speaker = turn["from"]
        if not isinstance(speaker, str):
            raise RecordError("bad_role", f"{where}[{i}].from must be a string, got {type(speaker).__name__}")
        rest = {k: v for k, v in turn.items() if k not in ("from", "value")}
        if speaker == "function_call":
            out.append({**rest, **function_call_message(_string(turn["value"], f"{where}[{i}].value"),
                                                        f"{where}[{i}].value")})
            continue
        if speaker not in SHAREGPT_ROLES:
            raise RecordError("bad_role", f"{where}[{i}] has role {speaker!r}; expected one of "
                                          f"{sorted([*SHAREGPT_ROLES, 'function_call'])}")
        out.append({**rest, "role": SHAREGPT_ROLES[speaker], "content": _string(turn["value"],
                                                                              f"{where}[{i}].value")})
    return out


def read_conversation(record: Any, options: FormatOptions = FormatOptions()) -> Conversation:
    """Turn one record in any supported format into a validated :class:`~im_data.messages.Conversation`.

    Raises :class:`RecordError` with ``unknown_format``, ``missing_field``, ``not_a_string``, ``bad_role``,
    ``empty_conversation``, ``no_assistant_turn`` or ``empty_output``.
    """
    fmt = detect_format(record, options)
    tools, documents = record.get("tools"), record.get("documents")
    where = fmt
    if fmt == "messages":
        raw = _raw_messages(_require(record, options.messages_field), options.messages_field)
        where = options.messages_field
    elif fmt == "sharegpt":
        raw = _with_system(record, options, _sharegpt_messages(_require(record, options.conversations_field),
                                                               options.conversations_field))
        where = options.conversations_field
    elif fmt == "prompt_completion":
        prompt = _require(record, options.prompt_field)
        completion = _require(record, options.completion_field)
        where = options.prompt_field
        if isinstance(prompt, list) or isinstance(completion, list):
            conv = [build_conversation(_raw_messages(v, f), where=f,
                                       split_inline_reasoning=options.split_inline_reasoning).messages
                    for v, f in ((prompt, options.prompt_field), (completion, options.completion_field))]
            raw = conv[0] + conv[1]
        else:
            raw = _with_system(record, options, [{"role": "user", "content": _string(prompt, options.prompt_field)},
                               {"role": "assistant", "content": _string(completion, options.completion_field)}])
    else:  # alpaca
        instruction = _string(_require(record, options.instruction_field), options.instruction_field)
        output = _string(_require(record, options.output_field), options.output_field)
        extra = record.get(options.input_field)
        extra = "" if extra is None else _string(extra, options.input_field)
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        raw = _with_system(record, options,
                           [{"role": "user", "content": user}, {"role": "assistant", "content": output}])
    conversation = build_conversation(raw, tools, documents, where=where,
                                      split_inline_reasoning=options.split_inline_reasoning,
                                      template_kwargs=record.get("chat_template_kwargs"))
    validate_messages(conversation.messages)
    used = _format_fields(fmt, options)
    if len(record) > 1:
        conversation.extra_fields = tuple(k for k, v in record.items() if k not in used and v not in _EMPTY)
    return conversation


_EMPTY = (None, "", [], {})
#: Record fields that identify a record rather than carry conversation data: never rendered, never rejected.
#: Any other record field outside the input format is data the template does not see: ``unrendered_field``
#: unless allowed (``allow_unrendered`` / ``--allow-unrendered NAME``).
RECORD_METADATA_KEYS = frozenset({"id", "uuid", "idx", "index", "dataset", "source", "split", "category",
                                  "language", "lang", "meta", "metadata"})
_RECORD_TEMPLATE_FIELDS = ("tools", "documents", "chat_template_kwargs")


@functools.lru_cache(maxsize=64)
def _format_fields(fmt: str, options: FormatOptions) -> frozenset[str]:
    """The record fields an input format reads."""
    fields = {"messages": [options.messages_field],
              "sharegpt": [options.conversations_field, options.system_field],
              "prompt_completion": [options.prompt_field, options.completion_field, options.system_field],
              "alpaca": [options.instruction_field, options.input_field, options.output_field,
                         options.system_field]}[fmt]
    return frozenset({f for f in fields if f} | set(_RECORD_TEMPLATE_FIELDS) | RECORD_METADATA_KEYS)


def normalize_record(record: Any, options: FormatOptions = FormatOptions()) -> list[Message]:
    """The validated chat messages of one record (see :func:`read_conversation`)."""
    return read_conversation(record, options).messages


def _with_system(record: Mapping, options: FormatOptions, messages: list[Message]) -> list[Message]:
    field = options.system_field
    if field and record.get(field) is not None:
        messages.insert(0, {"role": "system", "content": _string(record[field], field)})
    return messages


def validate_messages(messages: list[Message]) -> None:
    if not messages:
        raise RecordError("empty_conversation", "the conversation has no messages")
    seen = False
    for m in messages:
        if m["role"] != "assistant":
            continue
        seen = True
        if (m.get("content") or "").strip() or m.get("tool_calls") or (m.get(REASONING_KEY) or "").strip():
            return
    if not seen:
        raise RecordError("no_assistant_turn", "the conversation has no assistant message")
    raise RecordError("empty_output", "every assistant message is empty")
