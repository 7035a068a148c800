"""The conversations every real template is tried on.

Every content, reasoning text, tool-call argument and tool description carries a tag (``zq<n>x``) that occurs
nowhere else, so the oracle can find it in the render by plain string search. Contents equal to role names
(``"user"``, ``"assistant"``, ``"system"``) are the exception: the oracle places them with a marker render.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any, Callable


@dataclasses.dataclass
class Case:
    record: dict[str, Any]
    call_tags: dict[int, list[str]] = dataclasses.field(default_factory=dict)  # message -> tag in each call's args
    tools_tag: str | None = None  # occurs only in the record's tool definitions


class _Tags:
    def __init__(self):
        self._n = itertools.count(1)

    def __call__(self) -> str:
        return f"zq{next(self._n)}x"


def m(role: str, content: Any, **extra) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


def _plain(n_turns: int, system: bool) -> Case:
    t = _Tags()
    msgs = [m("system", f"You are terse {t()}.")] if system else []
    for k in range(n_turns):
        msgs += [m("user", f"Question {t()} number {k}?"), m("assistant", f"Answer {t()} number {k}.")]
    return Case({"messages": msgs})


def _edges(system: bool) -> Case:
    t = _Tags()
    msgs = [m("system", f"  Sys {t()} edge\n")] if system else []
    msgs += [m("user", f"  Hi {t()} there\n"), m("assistant", f"\n\nHello {t()} back  "),
             m("user", f"\n\nAgain {t()} please  "), m("assistant", f"  Sure {t()} thing\n")]
    return Case({"messages": msgs})


def _unicode() -> Case:
    t = _Tags()
    return Case({"messages": [
        m("system", f"系统提示 {t()} — soyez bref"),
        m("user", f"Grüße 世界 你好 😀 {t()} e\u0301 naïve?"),
        m("assistant", f"こんにちは 👩\u200d💻 {t()} ça va — ñ"),
        m("user", f"🎉 {t()} 한국어 Ελληνικά"),
        m("assistant", f"🇫🇷 {t()} e\u0301\u0301 ﬁ"),
    ]})


def _role_names(system: bool) -> Case:
    msgs = [m("system", "system")] if system else []
    msgs += [m("user", "user"), m("assistant", "assistant"), m("user", "assistant"), m("assistant", "user")]
    if system:
        msgs += [m("user", "system"), m("assistant", "system")]
    return Case({"messages": msgs})


def _weather_tool(tag: str) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": "get_weather", "description": f"Current weather for a city {tag}",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                       "required": ["city"]}}}


def _tool_conversation(arguments_as: str, reasoning: bool, content: Any, system: bool) -> Case:
    """[system,] user, assistant(tool call [+ reasoning]), tool, assistant(answer [+ reasoning]). The tool result
    is JSON text with a system message (templates that ``tojson`` it change it), plain text without."""
    t = _Tags()
    tools_tag, arg_tag, call_id = t(), t(), "zq9call01"
    args: Any = {"city": f"Paris {arg_tag}"}
    if arguments_as == "string":
        args = json.dumps(args)
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": args}}
    first = m("assistant", content, tool_calls=[call])
    last = m("assistant", f"It is sunny {t()} in Paris.")
    if reasoning:
        first["reasoning_content"] = f"The user wants weather {t()}; call the tool."
        last["reasoning_content"] = f"The tool said sunny {t()}."
    result = json.dumps({"forecast": f"sunny {t()}"}) if system else f"Sunny, 21 C {t()}"
    msgs = [m("system", f"Use tools {t()}.")] if system else []
    msgs += [m("user", f"Weather in Paris {t()}?"), first,
             m("tool", result, tool_call_id=call_id, name="get_weather"), last]
    return Case({"messages": msgs, "tools": [_weather_tool(tools_tag)]}, {len(msgs) - 3: [arg_tag]}, tools_tag)


def _add_tool(tag: str) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": "add", "description": f"Add two numbers {tag}",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                       "required": ["a", "b"]}}}


def _named_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _issue_record() -> Case:
    """Issue 16's record R: one call-only assistant turn (no content key), a tool result, the answer."""
    t = _Tags()
    tools_tag, arg_tag = t(), t()
    first = {"role": "assistant", "tool_calls": [_named_call("c1", "add", {"a": 2, "b": 3, "note": arg_tag})]}
    msgs = [m("user", f"2+3 {t()}?"), first, m("tool", f"5 {t()}", tool_call_id="c1", name="add"),
            m("assistant", f"It is 5 {t()}.")]
    return Case({"messages": msgs, "tools": [_add_tool(tools_tag)]}, {1: [arg_tag]}, tools_tag)


def _call(call_id: str, city: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}


def _parallel_calls(system: bool) -> Case:
    """[system,] user, assistant with two calls in one turn, two tool results, assistant answer."""
    t = _Tags()
    tools_tag, paris, rome = t(), t(), t()
    msgs = [m("system", f"Use tools {t()}.")] if system else []
    msgs += [m("user", f"Weather in Paris and Rome {t()}?"),
             m("assistant", "", tool_calls=[_call("zq9call01", f"Paris {paris}"), _call("zq9call02", f"Rome {rome}")]),
             m("tool", f"Sunny {t()}", tool_call_id="zq9call01", name="get_weather"),
             m("tool", f"Rainy {t()}", tool_call_id="zq9call02", name="get_weather"),
             m("assistant", f"Paris sunny, Rome rainy {t()}.")]
    return Case({"messages": msgs, "tools": [_weather_tool(tools_tag)]}, {len(msgs) - 4: [paris, rome]}, tools_tag)


def _multi_turn_calls() -> Case:
    """user, call, result, call, result, answer: two tool rounds in one conversation."""
    t = _Tags()
    tools_tag, paris, rome = t(), t(), t()
    msgs = [m("user", f"Weather in Paris, then Rome {t()}?"),
            m("assistant", "", tool_calls=[_call("zq9call01", f"Paris {paris}")]),
            m("tool", f"Sunny {t()}", tool_call_id="zq9call01", name="get_weather"),
            m("assistant", "", tool_calls=[_call("zq9call02", f"Rome {rome}")]),
            m("tool", f"Rainy {t()}", tool_call_id="zq9call02", name="get_weather"),
            m("assistant", f"Paris sunny, Rome rainy {t()}.")]
    return Case({"messages": msgs, "tools": [_weather_tool(tools_tag)]}, {1: [paris], 3: [rome]}, tools_tag)


def _reasoning(key: str, turns: int, kwargs: dict[str, Any] | None = None) -> Case:
    t = _Tags()
    msgs = []
    for k in range(turns):
        msgs += [m("user", f"Puzzle {t()} {k}?"),
                 m("assistant", f"Solution {t()} {k}.", **{key: f"Let me think {t()} step {k}."})]
    record: dict[str, Any] = {"messages": msgs}
    if kwargs is not None:
        record["chat_template_kwargs"] = kwargs
    return Case(record)


CASES: dict[str, Callable[[], Case]] = {
    "single": lambda: _plain(1, False),
    "system_single": lambda: _plain(1, True),
    "multi3": lambda: _plain(3, False),
    "system_multi3": lambda: _plain(3, True),
    "edges": lambda: _edges(False),
    "system_edges": lambda: _edges(True),
    "unicode": _unicode,
    "role_names": lambda: _role_names(False),
    "system_role_names": lambda: _role_names(True),
    "tool_call_args_string": lambda: _tool_conversation("string", False, None, True),
    "tool_call_args_object": lambda: _tool_conversation("object", False, "", False),
    "tool_call_args_string_no_system": lambda: _tool_conversation("string", False, "", False),
    "tool_call_reasoning": lambda: _tool_conversation("object", True, "", False),
    "tool_issue_record": _issue_record,
    "tool_parallel": lambda: _parallel_calls(False),
    "system_tool_parallel": lambda: _parallel_calls(True),
    "tool_multi_turn": _multi_turn_calls,
    "reasoning": lambda: _reasoning("reasoning_content", 1),
    "reasoning_alias_reasoning": lambda: _reasoning("reasoning", 1),
    "reasoning_alias_thinking": lambda: _reasoning("thinking", 1),
    "reasoning_multi": lambda: _reasoning("reasoning_content", 2),
    "reasoning_thinking_off": lambda: _reasoning("reasoning_content", 1, {"enable_thinking": False}),
}
