"""The message model: a conversation as a chat template receives it, and the text fields spans are found for.

A :class:`Conversation` holds ``messages`` (dicts passed to the template unchanged, as ``transformers``'
``apply_chat_template`` passes them), and the record-level ``tools`` and ``documents`` (``None`` when absent, as in
``transformers``). Every message is checked and brought into the shape templates expect:

* ``role`` (system, user, tool, assistant) and ``content`` (a string; ``None`` or absent only for an assistant
  that makes tool calls);
* keys whose value is ``None`` are dropped, as ``apply_chat_template`` drops them;
* reasoning: ``reasoning_content``, or its aliases ``reasoning`` / ``thinking``: passed to the template as
  ``reasoning_content`` and ``thinking`` (and under the alias the record used), as ``apply_chat_template`` does;
* assistant ``tool_calls`` in OpenAI shape ``{"id", "type": "function", "function": {"name", "arguments"}}``
  (a flat ``{"name", "arguments"}`` is accepted too); ``arguments`` (a JSON string or an object) is passed as
  given, as ``apply_chat_template`` passes it; OpenAI's legacy ``function_call`` on an assistant message becomes
  one tool call;
* ``tool_call_id`` and ``name`` on any message, ``id``/``type`` of a tool call: *metadata*. They are passed to the
  template, rendered text of theirs is template text (weight 0), and a template that ignores them drops no data;
* any other message field is passed to the template as it is, and is *data*: it must appear in the render.

**Nothing is dropped silently.** The data fields of every message (content, reasoning, each tool call's name and
arguments, unknown extra fields) and the record's ``tools``/``documents`` must be rendered by the template; where a
non-empty one is not, the record is rejected with ``unrendered_field`` naming the message and the field, unless the
field is listed in ``allow_unrendered`` (e.g. a template that deliberately omits the reasoning of earlier turns).
Extra fields that are not text (numbers, objects) cannot be traced through the template: they are rejected as
``unrendered_field`` unless allowed. Record-level fields outside the input format (``id``, ``dataset``, ...) are
record metadata, not conversation data: they never reach the template.

With ``split_inline_reasoning``, an assistant content that starts with ``<think>…</think>`` is split: the text
between the tags (without newlines at its edges) becomes ``reasoning_content``, the text after ``</think>``
(without leading newlines) the content.

>>> conv = build_conversation([{"role": "user", "content": "Hi"},
...     {"role": "assistant", "content": None, "tool_calls": [{"type": "function",
...      "function": {"name": "f", "arguments": "{\\"x\\": 1}"}}]}])
>>> conv.messages[1]["tool_calls"][0]["function"]
{'name': 'f', 'arguments': '{"x": 1}'}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from .errors import RecordError
from .roles import MESSAGE_ROLES

REASONING_KEY = "reasoning_content"
REASONING_ALIASES = ("reasoning_content", "reasoning", "thinking")
#: Message fields that identify rather than carry data: passed to the template, never required in the render.
METADATA_KEYS = frozenset({"role", "tool_call_id", "name"})
#: Record-level fields passed to the template (``tools=None``/``documents=None`` when absent).
RECORD_TEMPLATE_FIELDS = ("tools", "documents")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class TextField(NamedTuple):
    """One text field of a conversation: where it is (``path`` into the message), what it holds, and the token
    role its rendered text takes."""

    message: int
    path: tuple  # e.g. ("content",), ("reasoning_content",), ("tool_calls", 0, "function", "name")
    value: str
    role: str  # token role label: the message role, "reasoning" or "tool_call"

    @property
    def name(self) -> str:
        """``content``, ``reasoning_content``, ``tool_calls[0].function.name``, ..."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out


@dataclasses.dataclass
class Conversation:
    """Messages (as the template gets them) and the record-level ``tools`` / ``documents``."""

    messages: list[dict]
    tools: list | None = None
    documents: list | None = None
    template_kwargs: dict | None = None  # the record's own chat_template_kwargs (over the Encoder's)
    extra_fields: tuple[str, ...] = ()  # record fields outside the input format (see formats.RECORD_METADATA_KEYS)


def message_fields(index: int, message: Mapping[str, Any]) -> Iterator[TextField]:
    """The non-empty text fields of one message, in a fixed order (content, reasoning, tool calls, extras)."""
    role = message["role"]
    content = message.get("content")
    if content:
        yield TextField(index, ("content",), content, role)
    if len(message) == 2 and content is not None:  # {"role", "content"}: the common case
        return
    reasoning = message.get(REASONING_KEY)
    if reasoning:
        yield TextField(index, (REASONING_KEY,), reasoning, "reasoning" if role == "assistant" else role)
    for k, call in enumerate(message.get("tool_calls") or ()):
        name = call["function"]["name"]
        if name:
            yield TextField(index, ("tool_calls", k, "function", "name"), name, "tool_call")
    for key, value in message.items():
        if key in _KNOWN_KEYS or key in REASONING_ALIASES:
            continue
        if isinstance(value, str) and value:
            yield TextField(index, (key,), value, "assistant" if role == "assistant" else role)


def opaque_fields(message: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Non-empty data fields of a message that are not text (tool-call arguments objects, extra non-strings)."""
    for k, call in enumerate(message.get("tool_calls") or ()):
        args = call["function"].get("arguments")
        if args not in (None, "", {}):
            yield f"tool_calls[{k}].function.arguments", args
    for key, value in message.items():
        if key in _KNOWN_KEYS or key in REASONING_ALIASES:
            continue
        if not isinstance(value, str) and value not in (None, [], {}) and value is not False:
            yield key, value


_KNOWN_KEYS = frozenset({"role", "content", "tool_calls", *METADATA_KEYS})


# -- building a conversation from raw records ---------------------------------------------------------------------
def build_conversation(raw_messages: Sequence[Any], tools: Any = None, documents: Any = None, *,
                       where: str = "messages", split_inline_reasoning: bool = False,
                       template_kwargs: Any = None) -> Conversation:
    """Validate raw chat messages and bring them into the template's shape (see the module doc)."""
    plain_roles = _PLAIN_ROLES_SPLIT if split_inline_reasoning else _PLAIN_ROLES
    messages = [raw if (type(raw) is dict and len(raw) == 2 and type(raw.get("content")) is str
                        and type(raw.get("role")) is str and raw["role"] in plain_roles)  # the template's shape
                else _message(raw, f"{where}[{i}]", split_inline_reasoning) for i, raw in enumerate(raw_messages)]
    if template_kwargs is not None and not isinstance(template_kwargs, Mapping):
        raise RecordError("unknown_format", "chat_template_kwargs must be an object, got "
                                            f"{type(template_kwargs).__name__}")
    return Conversation(messages, _record_list(tools, "tools"), _record_list(documents, "documents"),
                        dict(template_kwargs) if template_kwargs else None)


_PLAIN_ROLES = frozenset(MESSAGE_ROLES)
_PLAIN_ROLES_SPLIT = _PLAIN_ROLES - {"assistant"}  # assistant content may hold <think> to split


def _record_list(value: Any, field: str) -> list | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):  # ShareGPT/LLaMA-Factory datasets store tools as a JSON string
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RecordError("unknown_format", f"{field} is a string but not JSON: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        raise RecordError("unknown_format", f"{field} must be a list of objects, got {type(value).__name__}")
    return [dict(t) for t in value] or None


def _message(raw: Any, where: str, split_inline_reasoning: bool) -> dict:
    if not isinstance(raw, Mapping):
        raise RecordError("unknown_format", f"{where} must be an object, got {type(raw).__name__}")
    if "role" not in raw:
        raise RecordError("missing_field", f"{where} has no 'role'")
    role = raw["role"]
    if not isinstance(role, str):
        raise RecordError("bad_role", f"{where}.role must be a string, got {type(role).__name__}")
    if role not in MESSAGE_ROLES:
        raise RecordError("bad_role", f"{where} has role {role!r}; expected one of {list(MESSAGE_ROLES)}")
    # as apply_chat_template: keys whose value is None are dropped (OpenAI's content=None on a tool-call turn)
    message = {k: v for k, v in raw.items() if v is not None}
    if role == "assistant":
        _tool_calls(message, where)
    elif "tool_calls" in message:
        raise RecordError("unknown_format", f"{where}: only assistant messages make tool calls (role {role!r})")
    if "content" not in message:
        if not message.get("tool_calls"):
            if "content" not in raw:
                raise RecordError("missing_field", f"{where} has no 'content'")
            raise RecordError("not_a_string", f"{where}.content must be a string, got NoneType")
    else:
        _string(message["content"], f"{where}.content")
    message = _reasoning(message, where, split_inline_reasoning and role == "assistant")
    for key in METADATA_KEYS - {"role"}:
        if key in message and not isinstance(message[key], str):
            raise RecordError("not_a_string", f"{where}.{key} must be a string, got {type(message[key]).__name__}")
    return message


def _reasoning(message: dict, where: str, split_inline: bool) -> dict:
    """Reasoning under every name templates read, as apply_chat_template aliases it (``thinking`` and
    ``reasoning_content`` filled from the first of ``reasoning_content`` / ``thinking`` / ``reasoning``)."""
    reasoning = None
    for alias in REASONING_ALIASES:
        if alias not in message:
            continue
        value = _string(message[alias], f"{where}.{alias}")
        if reasoning is not None and value != reasoning:
            raise RecordError("unknown_format", f"{where} has two different reasoning fields ({alias!r} and one of "
                                                f"{[a for a in REASONING_ALIASES if a != alias]})")
        reasoning = value
    if split_inline and reasoning is None and isinstance(message.get("content"), str):
        reasoning, message["content"] = _split_inline(message["content"])
    if reasoning is None:
        return message
    return {"thinking": reasoning, **message, REASONING_KEY: reasoning}


def _tool_calls(message: dict, where: str) -> None:
    calls = message.get("tool_calls", [])
    if not isinstance(calls, list):
        raise RecordError("unknown_format", f"{where}.tool_calls must be a list")
    calls = list(calls)
    if "function_call" in message:  # OpenAI's legacy single call
        calls.append(message.pop("function_call"))
    if calls:
        message["tool_calls"] = [_tool_call(c, f"{where}.tool_calls[{k}]") for k, c in enumerate(calls)]
    else:
        message.pop("tool_calls", None)


def _split_inline(content: str) -> tuple[str | None, str]:
    head = content.lstrip()
    if not head.startswith(THINK_OPEN) or THINK_CLOSE not in head:
        return None, content
    inner, _, rest = head[len(THINK_OPEN):].partition(THINK_CLOSE)
    return inner.strip("\n"), rest.lstrip("\n")


def _tool_call(raw: Any, where: str) -> dict:
    if isinstance(raw, str):
        raw = _json_object(raw, where)
    if not isinstance(raw, Mapping):
        raise RecordError("unknown_format", f"{where} must be an object, got {type(raw).__name__}")
    call = dict(raw)
    function = call.pop("function", None)
    if function is None:  # flat {"name", "arguments"}
        function = {k: call.pop(k) for k in ("name", "arguments") if k in call}
    if not isinstance(function, Mapping):
        raise RecordError("unknown_format", f"{where}.function must be an object")
    function = dict(function)
    if "name" not in function:
        raise RecordError("missing_field", f"{where}.function has no 'name'")
    function["name"] = _string(function["name"], f"{where}.function.name")
    args = function.get("arguments")
    if args is not None and not isinstance(args, (str, Mapping)):
        raise RecordError("unknown_format", f"{where}.function.arguments must be an object or a JSON string")
    for key in ("id", "type"):
        if key in call and not isinstance(call[key], str):
            raise RecordError("not_a_string", f"{where}.{key} must be a string")
    call.setdefault("type", "function")
    call["function"] = function
    return call


def _json_object(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError("unknown_format", f"{where} is not valid JSON: {exc}") from None


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RecordError("not_a_string", f"{where} must be a string, got {type(value).__name__}")
    return value


def function_call_message(value: str, where: str) -> dict:
    """A ShareGPT/LLaMA-Factory ``function_call`` turn (its value: a JSON call or list of calls) as an assistant
    message with tool calls."""
    calls = _json_object(value, where)
    calls = calls if isinstance(calls, list) else [calls]
    return {"role": "assistant", "content": "", "tool_calls": calls}
