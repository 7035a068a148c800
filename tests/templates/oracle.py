"""An independent oracle for the token roles of a conversation rendered by a real chat template.

It shares nothing with ``im_data``'s span finder. It renders with ``transformers``' own
``apply_chat_template(..., tokenize=False)``, finds every part of every message by searching the render for a
string that occurs nowhere else (each test content carries a unique tag), tokenizes with the tokenizer's own
offsets, and derives each token's role from the spec in issue 8:

* content of a message -> its role (system 1, user 2, tool 3, assistant 4). Where the template trims the content,
  the span is the text the template actually emitted: how much edge whitespace it kept is measured by rendering the
  conversation again with that message's edge whitespace removed (the render gets shorter by exactly the kept part).
  Content that is not unique in the render (content ``"user"`` under a ``<|im_start|>user`` header) is found by
  rendering once more with a private-use marker appended to it: the marker's position ends the content, and the
  render without the marker must be identical.
* reasoning text with its ``<think>…</think>`` tags, and a think block the template emits empty -> reasoning (6); a tool call's rendered text with its wrapper
  (per family: ``CALL_WRAPPERS``) -> tool_call (7).
* inside an assistant turn, from the end of the generation prompt (the tail of the render of ``messages[:i]`` with
  ``add_generation_prompt=True`` after its last located part, when the full render continues with that tail) to the
  end of the turn's last part: every other character is assistant (4).
* after an assistant turn's last part: assistant_end (5), up to and including the first special token.
* everything else: template (0).

A token covering characters of several roles: a special token takes the role of its own first character (an
``rstrip`` special token that swallows content whitespace stays template); any other token takes the largest
content role among its characters, else assistant_end if it has such a character, else template.

Expected rejections: the template raises, or drops some message content -> ``template_error``; it drops the
reasoning, a tool call, or the record's tools -> ``unrendered_field`` naming that field.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

TEMPLATE, SYSTEM, USER, TOOL, ASSISTANT, ASSISTANT_END, REASONING, TOOL_CALL = range(8)
ROLE_NAMES = ("template", "system", "user", "tool", "assistant", "assistant_end", "reasoning", "tool_call")
MESSAGE_ROLE = {"system": SYSTEM, "user": USER, "tool": TOOL, "assistant": ASSISTANT}
CONTENT_ROLES = frozenset({SYSTEM, USER, TOOL, ASSISTANT, REASONING, TOOL_CALL})
#: roles each preset trains (weight 1); every other role weighs 0
TRAINED = {"it": frozenset({ASSISTANT, ASSISTANT_END, REASONING, TOOL_CALL}),
           "im": frozenset({SYSTEM, USER, TOOL, ASSISTANT, ASSISTANT_END, REASONING, TOOL_CALL})}
REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
THINK_TAGS = (("<think>", "</think>"), ("[THINK]", "[/THINK]"), ("<|START_THINKING|>", "<|END_THINKING|>"),
              ("<thought>", "</thought>"), ("<seed:think>", "</seed:think>"))
#: reasoning written as its own channel message (harmony): the text that opens it, which is reasoning too
REASONING_OPENERS = {"gpt_oss": "<|channel|>analysis<|message|>"}
MARKER = "\ue000"

#: how each family wraps one rendered tool call: (text that opens it, text that closes it); ``None`` as the closer:
#: the call runs up to the turn's first special token. Looked up only for families whose template renders calls.
CALL_WRAPPERS: dict[str, tuple[str, str | None]] = {
    "qwen2_5": ("<tool_call>", "</tool_call>"),
    "qwen3": ("<tool_call>", "</tool_call>"),
    "smollm3": ("<tool_call>", "</tool_call>"),
    "llama3_1": ('{"name": ', None),
    "llama3_2": ('{"name": ', None),
    "mistral_v0_3": ("[TOOL_CALLS]", "]"),
    "mistral_nemo": ("[TOOL_CALLS]", "]"),
    "mistral_small3_2": ("[TOOL_CALLS]", None),
    "deepseek_v3": ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"),
    "deepseek_r1": ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"),
    "deepseek_r1_distill_qwen": ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"),
    "deepseek_v3_1": ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"),
    "granite3_3": ("<|tool_call|>", None),
    "command_r_plus_tool_use": ("\nAction:", None),  # the newline after the generation prompt opens the call
    "llama4": ("<|python_start|>", None),  # the call turn opens with <|python_start|>[content]<|python_end|>
    "qwen3_coder": ("<tool_call>", "</tool_call>"),
    "qwen3_next": ("<tool_call>", "</tool_call>"),
    "qwen3_5": ("<tool_call>", "</tool_call>"),
    "qwq": ("<tool_call>", "</tool_call>"),
    "nemotron_nano_v2": ("<TOOLCALL>", "</TOOLCALL>"),
    "command_r7b": ("<|START_ACTION|>", "<|END_ACTION|>"),
    "granite4": ("<tool_call>", "</tool_call>"),
    "devstral": ("[TOOL_CALLS]", None),
    "hermes2_pro_tool_use": ("<tool_call>", "</tool_call>"),
    "hermes3_tool_use": ("<tool_call>", "</tool_call>"),
    "seed_oss": ("\n<seed:tool_call>", "</seed:tool_call>"),  # each call is written as "\n<seed:tool_call>…"
    "glm4_5": ("\n<tool_call>", "</tool_call>"),  # each call is written as "\n<tool_call>NAME…"
    "glm4_6": ("\n<tool_call>", "</tool_call>"),
    "kimi_k2": ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"),
    "kimi_k2_thinking": ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"),
    # harmony: the recipient after the generation prompt opens the call; ``<|call|>`` ends the turn (not the call)
    "gpt_oss": (" to=functions.", "<|call|>"),
}
#: families whose closer ends the turn: the call stops before it
CLOSER_EXCLUDED = frozenset({"gpt_oss"})


class OracleError(AssertionError):
    """The oracle cannot decide (a test corpus problem, never a pass)."""


@dataclasses.dataclass
class Expected:
    """What encoding a record must give: ``reasons`` (acceptable rejection reasons; empty: it must be encoded),
    ``fields`` (for ``unrendered_field``: the fields the template dropped), and for encoded records the render,
    token ids, token strings and roles."""

    reasons: frozenset[str]
    why: str = ""
    fields: tuple[str, ...] = ()
    text: str = ""
    ids: list[int] = dataclasses.field(default_factory=list)
    tokens: list[str] = dataclasses.field(default_factory=list)
    roles: list[int] = dataclasses.field(default_factory=list)

    def weights(self, preset: str) -> list[float]:
        return [1.0 if r in TRAINED[preset] else 0.0 for r in self.roles]


def canonical_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as ``apply_chat_template`` gets them: reasoning under ``reasoning_content`` (the aliases
    ``reasoning`` / ``thinking`` renamed)."""
    out = []
    for m in messages:
        m = dict(m)
        for alias in REASONING_KEYS[1:]:
            if alias in m:
                m["reasoning_content"] = m.pop(alias)
        if "reasoning_content" in m:  # harmony templates read ``thinking``: the input contract passes both names
            m["thinking"] = m["reasoning_content"]
        out.append(m)
    return out


def reasoning_of(message: dict[str, Any]) -> str | None:
    for key in REASONING_KEYS:
        if isinstance(message.get(key), str) and message[key]:
            return message[key]
    return None


def _occurrences(text: str, needle: str) -> list[int]:
    found, pos = [], text.find(needle)
    while pos != -1:
        found.append(pos)
        pos = text.find(needle, pos + 1)
    return found


class _Renderer:
    def __init__(self, tokenizer, source: str, tools, kwargs: dict[str, Any]):
        self.tokenizer, self.source, self.tools, self.kwargs = tokenizer, source, tools, dict(kwargs)

    def __call__(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(list(messages), tools=self.tools, chat_template=self.source,
                                                  tokenize=False, add_generation_prompt=add_generation_prompt,
                                                  **self.kwargs)


def _with_content(messages, i, content):
    out = [dict(m) for m in messages]
    out[i]["content"] = content
    return out


def _locate_content(render: Callable, messages, i: int, text: str) -> tuple[int, int] | None:
    """Span of message i's content in ``text`` (None: the template dropped it)."""
    content = messages[i]["content"]
    core = content.strip()
    hits = _occurrences(text, core)
    if not hits:
        return None
    if len(hits) > 1:
        return _locate_by_marker(render, messages, i, text)
    start, end = hits[0], hits[0] + len(core)
    lead, trail = content[: len(content) - len(content.lstrip())], content[len(content.rstrip()):]
    if lead or trail:
        no_lead = len(render(_with_content(messages, i, core + trail)))
        bare = len(render(_with_content(messages, i, core)))
        kept_lead, kept_trail = len(text) - no_lead, no_lead - bare
        if not (0 <= kept_lead <= len(lead) and 0 <= kept_trail <= len(trail)
                and text[start - kept_lead:start] == lead[len(lead) - kept_lead:]
                and text[end:end + kept_trail] == trail[:kept_trail]):
            raise OracleError(f"message {i}: cannot tell which edge whitespace the template kept")
        start, end = start - kept_lead, end + kept_trail
    return start, end


def _locate_by_marker(render: Callable, messages, i: int, text: str) -> tuple[int, int] | None:
    content = messages[i]["content"]
    if content != content.strip():
        raise OracleError(f"message {i}: non-unique content with edge whitespace")
    marked = render(_with_content(messages, i, content + MARKER))
    if MARKER not in marked:
        return None
    if marked.count(MARKER) != 1 or marked.replace(MARKER, "") != text:
        raise OracleError(f"message {i}: content {content!r} is not unique and a marker does not place it")
    end = marked.index(MARKER)
    if text[end - len(content):end] != content:
        raise OracleError(f"message {i}: marker does not follow the content")
    return end - len(content), end


def _locate_reasoning(text: str, reasoning: str, family: str = "") -> tuple[int, int] | None:
    core = reasoning.strip()
    hits = _occurrences(text, core)
    if not hits:
        return None
    if len(hits) > 1:
        raise OracleError(f"reasoning {core[:20]!r} occurs {len(hits)} times")
    start, end = hits[0], hits[0] + len(core)
    opener = REASONING_OPENERS.get(family)
    if opener and text[:start].endswith(opener):
        return start - len(opener), end
    for open_tag, close_tag in THINK_TAGS:
        before, after = text[:start].rstrip(), text[end:]
        after_ws = len(after) - len(after.lstrip())
        if before.endswith(open_tag) and after[after_ws:].startswith(close_tag):
            return len(before) - len(open_tag), end + after_ws + len(close_tag)
    return start, end


@dataclasses.dataclass
class _Parts:
    content: dict[int, tuple[int, int]]
    reasoning: dict[int, tuple[int, int]]
    calls: dict[int, list[tuple[int, int]]]
    dropped: list[tuple[int, str]]  # (message index, field)


def _locate_parts(family: str, render: Callable, messages, text: str, specials: Sequence[str],
                  call_tags: dict[int, list[str]]) -> _Parts:
    parts = _Parts({}, {}, {}, [])
    for i, m in enumerate(messages):
        if isinstance(m.get("content"), str) and m["content"].strip():
            span = _locate_content(render, messages, i, text)
            if span is None:
                parts.dropped.append((i, "content"))
            else:
                parts.content[i] = span
        reasoning = m.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning.strip():
            span = _locate_reasoning(text, reasoning, family)
            if span is None:
                parts.dropped.append((i, "reasoning_content"))
            else:
                parts.reasoning[i] = span
    for i, m in enumerate(messages):
        for k, call in enumerate(m.get("tool_calls") or []):
            span = _locate_call(family, text, call, call_tags[i][k], _bound_before(parts, i), specials)
            if span is None:
                parts.dropped.append((i, "tool_calls"))
            else:
                parts.calls.setdefault(i, []).append(span)
    return parts


def _bound_before(parts: _Parts, i: int) -> int:
    """End of the last located part of a message before i, or of message i's reasoning/content before its calls."""
    ends = [e for j, (_, e) in parts.content.items() if j < i] + [e for j, (_, e) in parts.reasoning.items() if j <= i]
    ends += [e for j, spans in parts.calls.items() if j < i for _, e in spans]
    if i in parts.content:
        ends.append(parts.content[i][0])  # calls usually follow content; never search before it
    return max(ends, default=0)


def _locate_call(family: str, text: str, call: dict[str, Any], tag: str, lower: int,
                 specials: Sequence[str]) -> tuple[int, int] | None:
    hits = _occurrences(text, tag)
    name = call["function"]["name"]
    if not hits:
        return None
    if len(hits) > 1:
        raise OracleError(f"tool call tag {tag!r} occurs {len(hits)} times")
    if family not in CALL_WRAPPERS:
        raise OracleError(f"{family}: the template renders tool calls; add its wrapper to CALL_WRAPPERS")
    open_text, close_text = CALL_WRAPPERS[family]
    at = hits[0]
    start = text.rfind(open_text, lower, at)
    if start == -1:
        raise OracleError(f"{family}: no {open_text!r} before the tool call")
    if name not in text[start:at]:
        return None  # arguments rendered, function name left out
    tag_end = at + len(tag)
    if close_text is None:
        end = min((p for p in (text.find(s, tag_end) for s in specials) if p != -1), default=len(text))
    else:
        end = text.find(close_text, tag_end)
        if end == -1:
            raise OracleError(f"{family}: no {close_text!r} after the tool call")
        end += 0 if family in CLOSER_EXCLUDED else len(close_text)
    return start, end


def expected_encoding(family: str, tokenizer, source: str, record: dict[str, Any],
                      call_tags: dict[int, list[str]] | None = None, tools_tag: str | None = None) -> Expected:
    """The oracle's answer for ``record`` (``messages``, optional ``tools`` and ``chat_template_kwargs``).

    ``call_tags[i][k]``: a string that occurs only in the arguments of message i's k-th tool call;
    ``tools_tag``: a string that occurs only in the record's tool definitions."""
    messages = canonical_messages(record["messages"])
    render = _Renderer(tokenizer, source, record.get("tools"), record.get("chat_template_kwargs") or {})
    try:
        text = render(messages)
    except Exception as exc:  # the template itself raises
        return Expected(frozenset({"template_error"}), f"template raises {type(exc).__name__}: {exc}")
    specials = _special_strings(tokenizer)
    call_tags = call_tags or {}
    parts = _locate_parts(family, render, messages, text, specials, call_tags)
    fields = [f for _, f in parts.dropped if f != "content"]
    if tools_tag is not None and tools_tag not in text:
        fields.append("tools")
    reasons = set()
    if any(f == "content" for _, f in parts.dropped):
        reasons.add("template_error")
    if fields:
        reasons.add("unrendered_field")
    if reasons:
        return Expected(frozenset(reasons), f"template drops {parts.dropped} {fields}", tuple(fields), text)
    char_roles = _char_roles(render, messages, text, parts, family, specials, call_tags)
    return _token_roles(tokenizer, text, char_roles, parts, messages)


def _special_strings(tokenizer) -> list[str]:
    specials = set(tokenizer.all_special_tokens)
    specials.update(str(t) for t in tokenizer.added_tokens_decoder.values() if t.special)
    specials.discard("")
    return sorted(specials, key=len, reverse=True)


def _char_roles(render, messages, text, parts: _Parts, family, specials, call_tags) -> list[int]:
    roles = [TEMPLATE] * len(text)

    def paint(span, role):
        for c in range(span[0], span[1]):
            roles[c] = role

    for i, span in parts.content.items():
        paint(span, MESSAGE_ROLE[messages[i]["role"]])
    for span in parts.reasoning.values():
        paint(span, REASONING)
    for spans in parts.calls.values():  # the calls of one message, and the text between them, are one block
        paint((min(s for s, _ in spans), max(e for _, e in spans)), TOOL_CALL)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        own = _own_spans(parts, i)
        if not own:
            continue
        start = _output_start(render, messages, i, text, parts, family, specials, call_tags, own[0][0],
                              _first_core(text, m, own[0][0]))
        for c in range(own[0][0], start):  # the generation prompt is template, even where it opens a think block
            roles[c] = TEMPLATE
        for c in range(start, own[-1][1]):
            if roles[c] == TEMPLATE:
                roles[c] = ASSISTANT
        _paint_empty_think_blocks(text, roles, start, own[-1][1])
    return roles


def _paint_empty_think_blocks(text: str, roles: list[int], start: int, end: int) -> None:
    """``<think>…</think>`` the template emits in the output region without reasoning text: the tags are reasoning.
    A block the generation prompt opens (it ends with ``<think>``) and the output closes with nothing but whitespace
    in between: the output's part of it (whitespace and the closing tag) is reasoning."""
    for open_tag, close_tag in THINK_TAGS:
        if text[:start].rstrip().endswith(open_tag):
            body = len(text[start:end]) - len(text[start:end].lstrip())
            if text.startswith(close_tag, start + body) and all(
                    r == ASSISTANT for r in roles[start:start + body + len(close_tag)]):
                roles[start:start + body + len(close_tag)] = [REASONING] * (body + len(close_tag))
        at = text.find(open_tag, start, end)
        while at != -1:
            close = text.find(close_tag, at, end)
            if close == -1:
                break
            close += len(close_tag)
            if all(r == ASSISTANT for r in roles[at:close]):
                roles[at:close] = [REASONING] * (close - at)
            at = text.find(open_tag, close, end)


def _own_spans(parts: _Parts, i: int) -> list[tuple[int, int]]:
    spans = [parts.content[i]] if i in parts.content else []
    spans += [parts.reasoning[i]] if i in parts.reasoning else []
    spans += parts.calls.get(i, [])
    return sorted(spans)


def _first_core(text: str, message: dict[str, Any], first_part: int) -> int:
    """Where the first part's own text starts: past the opening think tag a reasoning span includes (a generation
    prompt may end with that tag)."""
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning.strip():
        at = text.find(reasoning.strip(), first_part)
        if at != -1:
            return at
    return first_part


def _output_start(render, messages, i, text, parts, family, specials, call_tags, first_part: int,
                  first_core: int) -> int:
    """Where the model starts generating assistant turn i: after the generation prompt, when the full render
    continues the prompt's tail (which may reach into the first part up to its own text, e.g. ``<think>\n``);
    else at the turn's first part."""
    before = [e for j in range(i) for _, e in _own_spans(parts, j)]
    if not before:
        return first_part
    try:
        prompt = render(messages[:i], add_generation_prompt=True)
        with_prompt = lambda msgs: render(msgs, add_generation_prompt=True)  # noqa: E731
        prompt_parts = _locate_parts(family, with_prompt, messages[:i], prompt, specials, call_tags)
    except Exception:  # the prefix cannot be rendered or located: fall back to the first part
        return first_part
    prompt_before = [e for j in range(i) for _, e in _own_spans(prompt_parts, j)]
    if not prompt_before:
        return first_part
    tail = prompt[max(prompt_before):]
    prev_end = max(before)
    rest = text[first_core:]
    first_text = first_core + len(rest) - len(rest.lstrip())  # a wrapper's leading newline may be the prompt's
    if text.startswith(tail, prev_end) and prev_end + len(tail) <= first_text:
        return prev_end + len(tail)
    return first_part


def _token_roles(tokenizer, text: str, char_roles: list[int], parts: _Parts, messages) -> Expected:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    # offsets cover the render in order (tokens holding part of one character share that character)
    if any(s > pe or s < ps for (s, _), (ps, pe) in zip(offsets[1:], offsets)) or (
            offsets and (offsets[0][0] != 0 or offsets[-1][1] != len(text))):
        raise OracleError("token offsets do not cover the render in order")
    special_ids = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    roles = []
    for tid, (s, e) in zip(ids, offsets):
        chars = char_roles[s:e] or [TEMPLATE]
        if tid in special_ids:
            roles.append(chars[0])
        else:
            content = [r for r in chars if r in CONTENT_ROLES]
            roles.append(max(content) if content else TEMPLATE)
    ends = [spans[-1][1] for i in range(len(messages)) if messages[i]["role"] == "assistant"
            for spans in [_own_spans(parts, i)] if spans]
    for end in ends:
        t = next((k for k, (s, _) in enumerate(offsets) if s >= end), len(ids))
        while t < len(ids) and roles[t] == TEMPLATE:  # without a special token: all of it up to the next part
            roles[t] = ASSISTANT_END
            if ids[t] in special_ids:
                break
            t += 1
    tokens = [tokenizer.decode([i], skip_special_tokens=False) for i in ids]
    return Expected(frozenset(), "", (), text, ids, tokens, roles)


def describe(exp: Expected) -> list[tuple[str, str]]:
    """(token, role name) pairs: for reading failures and writing literal goldens."""
    return [(t, ROLE_NAMES[r]) for t, r in zip(exp.tokens, exp.roles)]
