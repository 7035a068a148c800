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
from typing import Any, Mapping

from .errors import RecordError
from .roles import MESSAGE_ROLES

import orjson

FORMATS = ("auto", "messages", "prompt_completion", "alpaca", "sharegpt")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "tool": "tool", "function_response": "tool", "observation": "tool"}

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


def _messages(value: Any, where: str, *, role_key: str = "role", content_key: str = "content",
              role_map: Mapping[str, str] | None = None) -> list[Message]:
    if not isinstance(value, list):
        raise RecordError("not_a_string" if isinstance(value, (int, float, bool)) else "unknown_format",
                          f"{where} must be a list of messages, got {type(value).__name__}")
    out: list[Message] = []
    for i, msg in enumerate(value):
        if not isinstance(msg, Mapping):
            raise RecordError("unknown_format", f"{where}[{i}] must be an object, got {type(msg).__name__}")
        if role_key not in msg:
            raise RecordError("missing_field", f"{where}[{i}] has no {role_key!r}")
        if content_key not in msg:
            raise RecordError("missing_field", f"{where}[{i}] has no {content_key!r}")
        role = msg[role_key]
        if not isinstance(role, str):
            raise RecordError("bad_role", f"{where}[{i}].{role_key} must be a string, got {type(role).__name__}")
        mapped = role_map.get(role) if role_map is not None else (role if role in MESSAGE_ROLES else None)
        if mapped is None:
            allowed = sorted(role_map) if role_map is not None else list(MESSAGE_ROLES)
            raise RecordError("bad_role", f"{where}[{i}] has role {role!r}; expected one of {allowed}")
        content = _string(msg[content_key], f"{where}[{i}].{content_key}")
        out.append({"role": mapped, "content": content})
    return out


def normalize_record(record: Any, options: FormatOptions = FormatOptions()) -> list[Message]:
    """Turn one record in any supported format into validated chat messages.

    Raises :class:`RecordError` with ``unknown_format``, ``missing_field``, ``not_a_string``, ``bad_role``,
    ``empty_conversation``, ``no_assistant_turn`` or ``empty_output``.
    """
    fmt = detect_format(record, options)
    if fmt == "messages":
        messages = _messages(_require(record, options.messages_field), options.messages_field)
    elif fmt == "sharegpt":
        messages = _messages(_require(record, options.conversations_field), options.conversations_field,
                             role_key="from", content_key="value", role_map=SHAREGPT_ROLES)
    elif fmt == "prompt_completion":
        prompt = _require(record, options.prompt_field)
        completion = _require(record, options.completion_field)
        if isinstance(prompt, list) or isinstance(completion, list):
            messages = (_messages(prompt, options.prompt_field)
                        + _messages(completion, options.completion_field))
        else:
            messages = [{"role": "user", "content": _string(prompt, options.prompt_field)},
                        {"role": "assistant", "content": _string(completion, options.completion_field)}]
            messages = _with_system(record, options, messages)
    else:  # alpaca
        instruction = _string(_require(record, options.instruction_field), options.instruction_field)
        output = _string(_require(record, options.output_field), options.output_field)
        extra = record.get(options.input_field)
        extra = "" if extra is None else _string(extra, options.input_field)
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        messages = _with_system(record, options,
                                [{"role": "user", "content": user}, {"role": "assistant", "content": output}])
    validate_messages(messages)
    return messages


def _with_system(record: Mapping, options: FormatOptions, messages: list[Message]) -> list[Message]:
    field = options.system_field
    if field and record.get(field) is not None:
        messages.insert(0, {"role": "system", "content": _string(record[field], field)})
    return messages


def validate_messages(messages: list[Message]) -> None:
    if not messages:
        raise RecordError("empty_conversation", "the conversation has no messages")
    assistant = [m["content"] for m in messages if m["role"] == "assistant"]
    if not assistant:
        raise RecordError("no_assistant_turn", "the conversation has no assistant message")
    if not any(c.strip() for c in assistant):
        raise RecordError("empty_output", "every assistant message is empty")
