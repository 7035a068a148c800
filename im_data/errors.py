"""One typed error for every way a record can be rejected.

Each :class:`RecordError` carries a stable ``reason`` code. Pipelines route the error to a dead-letter
output keyed by that code; nothing is swallowed and nothing else is fatal.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

#: Stable reason codes, with a one-line meaning each (documented in docs/OUTPUT.md; tests/test_docs.py keeps the table complete).
REASONS: dict[str, str] = {
    "invalid_json": "the line or file is not valid JSON (or not valid UTF-8)",
    "unknown_format": "the record matches no known input format",
    "missing_field": "a required field is absent",
    "not_a_string": "a field that must be a string (e.g. message content) is not",
    "bad_role": "a message has a role outside system/user/tool/assistant",
    "empty_conversation": "the record holds no messages",
    "no_assistant_turn": "the conversation has no assistant message",
    "empty_output": "every assistant message is empty",
    "template_error": "the chat template failed to render, dropped a message's content, or rendered a value "
                      "differently from the value (the message names the message and field)",
    "unrendered_field": "the chat template does not render a data field of the record (reasoning, tool calls, tools, "
                        "an extra message field); allow it with --allow-unrendered FIELD",
    "invariant_violation": "the labels would break a labelling rule of docs/DESIGN.md (an output role in a "
                           "message's header or generation prompt, template text inside an assistant turn, an "
                           "empty think block not labelled reasoning); the message names the message and field",
    "special_token_in_content": "a message (or the record's chat_template_kwargs) contains a special-token string of "
                                "the tokenizer",
    "reserved_template_variable": "the record's chat_template_kwargs set a variable the renderer sets itself (a "
                                  "special token such as eos_token, or messages, tools, documents, "
                                  "add_generation_prompt)",
    "too_long": "the record exceeds --max-length (--truncation drop), or truncation cut its output to nothing",
    "no_trainable_tokens": "no token has a positive loss weight",
    "read_error": "the input could not be read (missing, unreadable or corrupt file)",
    "too_large": "the raw record is larger than --max-record-bytes (checked while reading, before parsing), or the "
                 "chat template rendered or built more text than its size limit for the record",
    "template_timeout": "the chat template ran longer than its time limit on this record (IM_DATA_TEMPLATE_TIMEOUT_S, "
                        "default 10 s)",
    "duplicate": "with --dedup exact: the same conversation (after format conversion, whitespace normalised) as an "
                 "earlier record in input order, whose example_id the message names",
    "contaminated": "with --decontaminate: the instruction or output side shares a word n-gram with a benchmark "
                    "record (the message names the side, the n-gram, the benchmark and the record)",
    "internal_error": "an unexpected exception while processing this record (its type and message are given)",
}


#: The built-in chat template that renders tools, tool calls, tool results and reasoning
#: (``im_data/templates/chatml_tools.jinja``): what a reject suggests when another template cannot render them.
TOOLS_TEMPLATE = "chatml_tools"
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


def structured_parts(messages: Any = (), tools: Any = None, fields: Iterable[str] = ()) -> list[str]:
    """What a record holds that only some templates render, in words and in this order: ``tools``, ``tool
    calls``, ``tool results``, ``reasoning``; from its messages and ``tools`` list, or from field names."""
    names = set(fields)
    for m in messages or ():
        if isinstance(m, Mapping):
            names |= {k for k, v in m.items() if v not in (None, "", [])}
            if m.get("role") == "tool":
                names.add("tool")
    if tools:
        names.add("tools")
    words = {"tools": "tools", "tool_calls": "tool calls", "function_call": "tool calls", "tool": "tool results",
             **{k: "reasoning" for k in _REASONING_KEYS}}
    found = {words[n] for n in names if n in words}
    return [w for w in ("tools", "tool calls", "tool results", "reasoning") if w in found]


def template_hint(template_name: str, parts: list[str]) -> str:
    """``; the built-in chat template chatml_tools renders the record's tool calls (--chat-template
    chatml_tools)``, for a reject of a record holding ``parts`` (:func:`structured_parts`) under another
    template; else ``""``."""
    if not parts or template_name == TOOLS_TEMPLATE:
        return ""
    what = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    return (f"; the built-in chat template {TOOLS_TEMPLATE} renders the record's {what} "
            f"(--chat-template {TOOLS_TEMPLATE})")


class RecordError(ValueError):
    """A record cannot be encoded. ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}")
        super().__init__(f"[{reason}] {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self):  # picklable across Beam/Dask workers
        return (RecordError, (self.reason, self.message))


def internal_error(exc: BaseException) -> RecordError:
    """An unexpected exception on one record, as a reject naming the exception (never a dead job)."""
    text = str(exc).splitlines()[0][:500] if str(exc) else ""
    kind = type(exc).__qualname__ if type(exc).__module__ == "builtins" else f"{type(exc).__module__}.{type(exc).__qualname__}"
    return RecordError("internal_error", f"{kind}: {text}".strip())


class TemplateError(RecordError):
    """The chat template cannot be used to find spans reliably for this conversation."""

    def __init__(self, message: str):
        super().__init__("template_error", message)

    def __reduce__(self):
        return (TemplateError, (self.message,))
