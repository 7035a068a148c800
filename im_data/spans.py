"""Exact span finding on the full render: align it against one render with sentinel fields.

For a conversation, :class:`SpanFinder` renders the conversation once (the text that is tokenized) and aligns it
against a *skeleton*: the render of the same conversation with every text field (content, reasoning, tool-call
names, extra text fields) replaced by a unique sentinel (``\\ue000N\\ue001``). The template's own text between
sentinels fixes every span; no marker string is ever searched for in the data, and no prefix of the conversation
is rendered. Skeletons are cached per *shape* (roles, which fields are non-empty, and the values that are not text:
tool-call arguments, tools, documents, metadata), so a record of a known shape costs one render.

Fields the template transforms at their edges (``| trim``, ``.strip()``, ``.lstrip('\\n')``) are handled by a second
sentinel render with whitespace around every sentinel: what is left of it tells, for each edge of each field,
whether the template keeps it, strips newlines or strips all whitespace. The rendered field must then equal that
one variant of the value exactly; where the second render does not tell (the template's text around the field
changes with the padding), only values without edge whitespace are accepted. Alignment is one pass of
``startswith`` checks: linear in the conversation length.

Rejections: ``template_error`` when the template raises, drops a message's content, renders a value differently from
the value (the reject names the message and field), or renders a sentinel mangled; ``unrendered_field`` when a data
field other than content (reasoning, tool calls, tools, documents, extra fields) is not rendered and not allowed.

Roles inside an assistant turn (spec): the turn starts after the generation prompt (what
``add_generation_prompt=True`` appends, learned once per template) and ends with its last part; the template text
after it, up to the end-of-turn text (learned once per template from a final and a followed assistant turn), is
``assistant_end``. Inside the turn: reasoning text and the template text touching it (``<think>`` tags) are
``reasoning``; each tool call's rendered text with its wrapper (what the render gains over the render without the
tool calls) is ``tool_call``; content and other text are ``assistant``.

>>> from im_data.templates import ChatTemplate
>>> t = ChatTemplate.builtin("tulu")
>>> msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
>>> r = find_spans(t, msgs, {"eos_token": "</s>", "bos_token": "<s>"})
>>> r.text
'<|user|>\\nHi\\n<|assistant|>\\nYo</s>\\n'
>>> [(r.text[s:e], role) for s, e, role in r.content_spans]
[('Hi', 'user'), ('Yo', 'assistant')]
>>> [r.text[s:e] for s, e in r.after_assistant]
['</s>\\n']
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .errors import RecordError, TemplateError, structured_parts, template_hint
from .messages import REASONING_ALIASES, REASONING_KEY, Conversation, TextField, message_fields, opaque_fields
from .roles import ROLE_CODES, Role
from .templates import ChatTemplate

_SENTINEL = "\ue000{}\ue001"
_CONTENT = ("content",)
_SENTINEL_RE = re.compile("\ue000(\\d+)\ue001")
PAD_LEFT, PAD_RIGHT = "\n \n", "\n\t\n"
#: Edge transforms a template may apply to a field: keep the edge, strip newlines, strip all whitespace.
KEEP, NEWLINES, WHITESPACE, UNKNOWN = 0, 1, 2, 3
_LEFT_REST = {PAD_LEFT: KEEP, PAD_LEFT.lstrip("\n"): NEWLINES, "": WHITESPACE}
_RIGHT_REST = {PAD_RIGHT: KEEP, PAD_RIGHT.rstrip("\n"): NEWLINES, "": WHITESPACE}

#: Character keys. A token takes the highest key among its characters (a special token: its first character's):
#: any content role (the largest code wins), then assistant_end, then template. Content keys carry whether the
#: character is a field's value (data: checked for special tokens) or the template's text inside a turn.
AFTER = 16
CONTENT = 32


def content_key(role: int, data: bool) -> int:
    return CONTENT + 2 * int(role) + int(data)


def role_of_key(key):
    """Role code of a character key (works on numpy arrays)."""
    return (key >= CONTENT) * ((key - CONTENT) // 2) + ((key >= AFTER) & (key < CONTENT)) * int(Role.ASSISTANT_END)
SKELETON_CACHE_SIZE = 4096


def _strip(value: str, left: int, right: int) -> str:
    if left == NEWLINES:
        value = value.lstrip("\n")
    elif left == WHITESPACE:
        value = value.lstrip()
    if right == NEWLINES:
        value = value.rstrip("\n")
    elif right == WHITESPACE:
        value = value.rstrip()
    return value


class RenderedConversation(NamedTuple):
    """The rendered text and its labelled character spans.

    ``spans``: (start, end, key) with key = band + role code, in writing order (lower bands first);
    ``after_assistant``: the after-turn region of each assistant turn (``assistant_end`` up to and including its
    first special token); ``last_assistant_start``: where the last assistant turn starts."""

    text: str
    spans: tuple[tuple[int, int, int], ...]
    after_assistant: tuple[tuple[int, int], ...]
    last_assistant_start: int

    @property
    def content_spans(self) -> tuple[tuple[int, int, str], ...]:
        """The data spans: (start, end, role label) of every rendered field value, in text order."""
        return tuple(sorted((s, e, Role(role_of_key(k)).label) for s, e, k in self.spans if k >= CONTENT and k % 2))


@dataclasses.dataclass(frozen=True)
class _Skeleton:
    """The template's text around the fields for one conversation shape.

    ``literals[k]`` precedes occurrence k, ``literals[-1]`` ends the render; ``occurrences[k]`` = (field number,
    left transform, right transform). Labelled regions are in literal coordinates (literal index, offset)."""

    literals: tuple[str, ...]
    occurrences: tuple[tuple[int, int, int], ...]
    occurrence_keys: tuple[int, ...]
    regions: tuple[tuple[int, int, int, int, int], ...]  # (lit a, off a, lit b, off b, key), writing order
    after: tuple[tuple[int, int, int, int], ...]
    last_start: tuple[int, int]


class SpanFinder:
    """Span finding for one template and one set of template variables (special tokens, chat template kwargs)."""

    def __init__(self, template: ChatTemplate, special_tokens: Mapping[str, Any], *,
                 template_kwargs: Mapping[str, Any] | None = None, allow_unrendered: Sequence[str] = ()):
        self.template = template
        self.special_tokens = dict(special_tokens)
        self.variables = {**self.special_tokens, **(template_kwargs or {})}
        self.allow_unrendered = frozenset(REASONING_KEY if a in REASONING_ALIASES else a for a in allow_unrendered)
        self._skeletons: dict = {}
        self._profiles: dict[str, _Profile] = {}

    # -- public -------------------------------------------------------------------------------------------------
    def find(self, conversation: Conversation) -> RenderedConversation:
        """Render ``conversation`` and label every character (see the module doc)."""
        for name in conversation.extra_fields:
            if name not in self.allow_unrendered:
                raise _unrendered(self.template, f"the record's field {name!r} (not part of the input format)", name)
        text = self._render(conversation)
        fields = [TextField(j, _CONTENT, m["content"], m["role"]) if len(m) == 2 and "content" in m else None
                  for j, m in enumerate(conversation.messages)]
        if None in fields or not all(f.value for f in fields):  # not all plain and non-empty: the general way
            fields = [f for j, m in enumerate(conversation.messages) for f in message_fields(j, m)]
        key = self._shape(conversation)
        skeleton = self._skeletons.get(key)
        if skeleton is None:
            if len(self._skeletons) >= SKELETON_CACHE_SIZE:
                self._skeletons.clear()
            skeleton = self._skeletons[key] = self._build(conversation, fields)
        return self._align(skeleton, text, fields, conversation)

    # -- rendering ----------------------------------------------------------------------------------------------
    def _render(self, conversation: Conversation, add_generation_prompt: bool = False) -> str:
        variables = {**self.variables, **conversation.template_kwargs} if conversation.template_kwargs \
            else self.variables
        return self.template.render(conversation.messages, variables, add_generation_prompt,
                                    tools=conversation.tools, documents=conversation.documents)

    @staticmethod
    def _shape(conversation: Conversation) -> tuple:
        """What the skeleton depends on: roles, which text fields are non-empty, and every value that is not a
        text field (metadata, tool-call arguments, tools, documents), by value."""
        parts = []
        for m in conversation.messages:
            if len(m) == 2 and "content" in m:  # {"role", "content"}: the common case, kept cheap
                parts.append((m["role"], m["content"] != ""))
            else:
                parts.append(json.dumps(_blank_text(m), sort_keys=True, default=str))
        extra = None
        if conversation.tools is not None or conversation.documents is not None or conversation.template_kwargs:
            extra = json.dumps([conversation.tools, conversation.documents, conversation.template_kwargs],
                               sort_keys=True, default=str)
        return tuple(parts), extra

    def _probe(self, conversation: Conversation, fields: Sequence[TextField], pad: bool = False,
               drop_tool_calls: bool = False) -> Conversation:
        messages = [dict(m) for m in conversation.messages]
        for number, f in enumerate(fields):
            value = _SENTINEL.format(number)
            if pad:
                value = PAD_LEFT + value + PAD_RIGHT
            _set(messages, f, value)
        if drop_tool_calls:
            for m in messages:
                m.pop("tool_calls", None)
        return dataclasses.replace(conversation, messages=messages)

    # -- building a skeleton ------------------------------------------------------------------------------------
    def _build(self, conversation: Conversation, fields: Sequence[TextField]) -> _Skeleton:
        skeleton_text = self._render(self._probe(conversation, fields))
        occ = self._occurrences(skeleton_text, fields, conversation)
        self._check_opaque(conversation, fields, skeleton_text)
        bounds = [0] + [x for s, e, _ in occ for x in (s, e)] + [len(skeleton_text)]
        literals = tuple(skeleton_text[bounds[2 * k]:bounds[2 * k + 1]] for k in range(len(occ) + 1))
        transforms = self._edge_transforms(conversation, fields, literals, [n for _, _, n in occ])
        labels = _TurnLabels(self, conversation, fields, skeleton_text, occ).compute()

        def lit(pos: int) -> tuple[int, int]:  # absolute skeleton position -> (literal index, offset)
            k = _bisect(bounds, pos)
            return k, pos - bounds[2 * k]

        regions = tuple((*lit(s), *lit(e), key) for s, e, key in labels.regions)
        after = tuple((*lit(s), *lit(e)) for s, e in labels.after)
        return _Skeleton(literals, tuple((n, *t) for (_, _, n), t in zip(occ, transforms)),
                         tuple(content_key(ROLE_CODES[fields[n].role], True) for _, _, n in occ), regions, after,
                         lit(labels.last_start))

    def _occurrences(self, text: str, fields: Sequence[TextField], conversation: Conversation
                     ) -> list[tuple[int, int, int]]:
        occ = [(m.start(), m.end(), int(m.group(1))) for m in _SENTINEL_RE.finditer(text)]
        if text.count("\ue000") != len(occ) or text.count("\ue001") != len(occ) or any(
                n >= len(fields) for _, _, n in occ):
            mangled = re.search("\ue000(\\d*)", text.replace("\ue001", ""))
            number = int(mangled.group(1)) if mangled and mangled.group(1) else None
            where = _describe(fields[number], conversation) if number is not None and number < len(fields) else \
                "a field"
            raise TemplateError(f"chat template {self.template.name!r} transforms the text of {where} beyond "
                                "trimming (its sentinel did not survive the render): spans cannot be exact")
        seen = {n for _, _, n in occ}
        for number, f in enumerate(fields):
            if number in seen:
                continue
            if f.path == ("content",):
                raise TemplateError(f"chat template {self.template.name!r}: content of message {f.message} "
                                    f"({conversation.messages[f.message]['role']}) was not found in the rendered "
                                    "conversation (the template drops it)")
            if f.path[0] not in self.allow_unrendered:
                raise _unrendered(self.template, _describe(f, conversation), f.path[0])
        return occ

    def _check_opaque(self, conversation: Conversation, fields: Sequence[TextField], skeleton_text: str) -> None:
        """Values that are not text (tools, documents, tool-call arguments, extra non-text fields) cannot carry a
        sentinel: the render without each of them must differ from the render with it."""
        if conversation.tools is None and conversation.documents is None and all(
                len(m) == 2 for m in conversation.messages):
            return
        base = self._probe(conversation, fields)
        for name in ("tools", "documents"):
            if getattr(conversation, name) is None or name in self.allow_unrendered:
                continue
            if self._renders_same(dataclasses.replace(base, **{name: None}), skeleton_text):
                raise _unrendered(self.template, f"the record's {name}", name)
        for j, message in enumerate(conversation.messages):
            for name, _ in opaque_fields(message):
                top = name.split("[")[0]
                if top in self.allow_unrendered:
                    continue
                if not name.startswith("tool_calls"):
                    raise _unrendered(self.template, f"message {j} ({message['role']}) field {name!r} (not text: "
                                                     "im-data cannot trace it through the template)", top)
                k = int(name.split("[")[1].split("]")[0])
                messages = [dict(m) for m in base.messages]
                calls = copy.deepcopy(messages[j]["tool_calls"])
                calls[k]["function"]["arguments"] = {}
                messages[j]["tool_calls"] = calls
                if self._renders_same(dataclasses.replace(base, messages=messages), skeleton_text):
                    raise _unrendered(self.template, f"message {j} ({message['role']}) field {name!r}", top)

    def _renders_same(self, conversation: Conversation, text: str) -> bool:
        """Whether ``conversation`` renders to ``text`` (a template that raises without a value uses it)."""
        try:
            return self._render(conversation) == text
        except RecordError:
            return False

    def _edge_transforms(self, conversation: Conversation, fields: Sequence[TextField],
                         literals: Sequence[str], numbers: Sequence[int]) -> list[tuple[int, int]]:
        """Per occurrence (left, right) edge transform, from the render with padded sentinels."""
        n = len(numbers)
        unknown = [(UNKNOWN, UNKNOWN)] * n
        if not n:
            return []
        try:
            padded = self._render(self._probe(conversation, fields, pad=True))
        except RecordError:
            return unknown
        occ = list(_SENTINEL_RE.finditer(padded))
        if [int(m.group(1)) for m in occ] != list(numbers):
            return unknown
        bounds = [0] + [x for m in occ for x in (m.start(), m.end())] + [len(padded)]
        left, right = [UNKNOWN] * n, [UNKNOWN] * n
        for g in range(n + 1):  # gap g lies between occurrence g-1 and occurrence g
            between = padded[bounds[2 * g]:bounds[2 * g + 1]]
            rights = _RIGHT_REST if g > 0 else {"": None}
            lefts = _LEFT_REST if g < n else {"": None}
            found = [(r, lt) for kr, r in rights.items() for kl, lt in lefts.items()
                     if between == kr + literals[g] + kl]
            if len(found) == 1:
                if g > 0:
                    right[g - 1] = found[0][0]
                if g < n:
                    left[g] = found[0][1]
        return list(zip(left, right))

    # -- the per-template profile: what the template emits around an assistant turn ---------------------------
    def profile(self, kwargs: Mapping[str, Any] | None = None) -> "_Profile":
        """What the template emits around assistant turns, learned once (per chat template kwargs) from small
        probe conversations."""
        key = json.dumps(kwargs or {}, sort_keys=True, default=str)
        if key not in self._profiles:
            self._profiles[key] = _Profile.learn(self.template, {**self.variables, **(kwargs or {})},
                                                 self.special_tokens)
        return self._profiles[key]

    # -- aligning a render to its skeleton ----------------------------------------------------------------------
    def _align(self, skeleton: _Skeleton, text: str, fields: Sequence[TextField],
               conversation: Conversation) -> RenderedConversation:
        literals = skeleton.literals
        if not text.startswith(literals[0]):
            self._mismatch(fields[skeleton.occurrences[0][0]] if skeleton.occurrences else None, conversation)
        pos = len(literals[0])
        lit_start = [0]
        data = []
        startswith = text.startswith
        for (number, left, right), following, key in zip(skeleton.occurrences, literals[1:],
                                                         skeleton.occurrence_keys):
            value = fields[number].value
            if left or right:  # the template transforms the field's edges (KEEP is 0)
                if UNKNOWN in (left, right) and value != value.strip():
                    raise TemplateError(f"chat template {self.template.name!r}: the whitespace at the edges of "
                                        f"{_describe(fields[number], conversation)} cannot be placed exactly (the "
                                        "template's text around it changes with it)")
                value = _strip(value, left, right)
            end = pos + len(value)
            if not (startswith(value, pos) and startswith(following, end)):
                self._mismatch(fields[number], conversation)
            data.append((pos, end, key))
            pos = end + len(following)
            lit_start.append(end)
        if pos != len(text):
            self._mismatch(None, conversation)
        spans = [(lit_start[a] + oa, lit_start[b] + ob, key) for a, oa, b, ob, key in skeleton.regions]
        after = tuple((lit_start[a] + oa, lit_start[b] + ob) for a, oa, b, ob in skeleton.after)
        last_lit, last_off = skeleton.last_start
        return RenderedConversation(text, tuple(spans + data), after, lit_start[last_lit] + last_off)

    def _mismatch(self, field: TextField | None, conversation: Conversation) -> None:
        where = _describe(field, conversation) if field is not None else "the conversation"
        raise TemplateError(f"chat template {self.template.name!r}: the render of {where} differs from the "
                            "template's render of the same conversation shape (the template changes the value, "
                            "or renders differently depending on it)")


@dataclasses.dataclass(frozen=True)
class _Profile:
    """What a template emits around assistant turns (``None``: the probes could not tell).

    ``prompt_tails[role]``: the text after a ``role`` message's content up to the end of the generation prompt
    (``<|im_end|>\n<|im_start|>assistant\n``); ``end_of_turn``: the text after an assistant's content that a
    final and a followed turn share (``<|im_end|>\n``); ``think``: the template's text before and after the
    reasoning (``<think>\n``, ``\n</think>\n\n``)."""

    prompt_tails: Mapping[str, str]
    end_of_turn: str | None
    think: tuple[str, str] | None

    @classmethod
    def learn(cls, template: ChatTemplate, variables: Mapping[str, Any],
              plain_variables: Mapping[str, Any]) -> "_Profile":
        """``plain_variables`` (no chat template kwargs) for the think tags: ``enable_thinking=False`` templates
        put an empty think block into the generation prompt, which would hide the tags."""
        def render(messages, add_generation_prompt=False, plain=False):
            try:
                return template.render(messages, plain_variables if plain else variables, add_generation_prompt)
            except RecordError:
                return None

        s0, s1, s2, s3 = (_SENTINEL.format(k) for k in range(4))
        tails = {}
        for role, probe in (("user", [_m("user", s0)]), ("system", [_m("system", s0)]),
                            ("tool", [_m("user", s1), _m("assistant", s2), _m("tool", s0)])):
            text = render(probe, True)
            if text is not None and text.count(s0) == 1:
                tails[role] = text[text.index(s0) + len(s0):]
        end_of_turn = None
        for head in ([_m("user", s0)], [_m("system", s3), _m("user", s0)]):
            final = render(head + [_m("assistant", s1)])
            followed = render(head + [_m("assistant", s1), _m("user", s2)])
            if final is not None and followed is not None and final.count(s1) == 1 == followed.count(s1):
                end_of_turn = os.path.commonprefix([t[t.index(s1) + len(s1):] for t in (final, followed)]) or None
                break
        think = None
        text = render([_m("user", s0), {"role": "assistant", "content": s1, REASONING_KEY: s2}], plain=True)
        tail = render([_m("user", s0)], True, plain=True)
        if text and tail and text.count(s2) == 1 and text.count(s1) == 1 and text.index(s2) < text.index(s1):
            at, end = text.index(s2), text.index(s1)
            before = text[text.index(s0) + len(s0):at]
            tail = tail[tail.index(s0) + len(s0):]
            if before.startswith(tail):
                think = (before[len(tail):], text[at + len(s2):end])
        return cls(tails, end_of_turn, think)


class _TurnLabels:
    """Wrapper, assistant_end and turn-start labels of the assistant turns, in skeleton coordinates."""

    def __init__(self, finder: SpanFinder, conversation: Conversation, fields: Sequence[TextField], text: str,
                 occ: Sequence[tuple[int, int, int]]):
        self.finder, self.conversation, self.fields, self.text, self.occ = finder, conversation, fields, text, occ
        self.profile = finder.profile(conversation.template_kwargs)
        self.regions: list[tuple[int, int, int]] = []
        self.after: list[tuple[int, int]] = []
        self.last_start = 0
        self.starts = [s for s, _, _ in occ]

    def compute(self) -> "_TurnLabels":
        blocks = self._tool_call_blocks()
        by_message: dict[int, list[tuple[int, int, str]]] = {}
        for s, e, n in self.occ:
            by_message.setdefault(self.fields[n].message, []).append((s, e, self.fields[n].role))
        for j, parts in blocks.items():
            by_message.setdefault(j, []).extend((s, e, "tool_call_block") for s, e in parts)
        cursor = 0  # end of the parts of the messages before this one
        for j, message in enumerate(self.conversation.messages):
            parts = sorted(by_message.get(j, []))
            if message["role"] == "assistant" and parts:
                first, last = parts[0][0], max(e for _, e, _ in parts)
                # the tail is known after a message's text only: after an empty message the turn starts at its part
                previous = self.conversation.messages[j - 1]["role"] if j and by_message.get(j - 1) else None
                turn_start = self._turn_start(cursor, first, previous)
                if parts[0][2] == "reasoning" and turn_start == first and self.profile.think:
                    opening = self.profile.think[0].lstrip()  # the think tag before the reasoning
                    if opening and self.text.startswith(opening, first - len(opening)) \
                            and first - len(opening) >= cursor:
                        turn_start = first - len(opening)
                self._gaps(turn_start, parts)
                if parts[-1][2] == "tool_call" and j not in blocks:
                    last = self._call_tail(last)
                self._after(last)
                self.last_start = turn_start
            elif message["role"] == "assistant":  # no rendered part: place its end-of-turn after its header
                cursor = self._empty_turn(cursor, self._next_start(cursor))
            if parts:
                cursor = max(cursor, max(e for _, e, _ in parts))
        # tool-call blocks are written after the gaps so that they win where they overlap
        self.regions.sort(key=lambda r: (r[2] == content_key(Role.TOOL_CALL, False), r[0]))
        return self

    def _turn_start(self, before: int, first: int, previous: str | None) -> int:
        """After the generation prompt: where the render continues the previous message with the text that
        ``add_generation_prompt=True`` renders after it; else the turn's first part."""
        tail = self.profile.prompt_tails.get(previous) if previous else None
        if tail and before < first and before + len(tail) <= first and self.text.startswith(tail, before):
            return before + len(tail)
        return first

    def _next_start(self, pos: int) -> int:
        """Start of the first occurrence at or after ``pos`` (the end of the text if none)."""
        k = bisect.bisect_left(self.starts, pos)
        return self.starts[k] if k < len(self.starts) else len(self.text)

    def _gaps(self, turn_start: int, parts: list[tuple[int, int, str]]) -> None:
        """Text inside the turn between its parts: the reasoning's tags (the text touching the reasoning, without
        whitespace at its far edge) are reasoning; a tool-call block is tool_call, and text touching a tool-call
        name where no block is known; an empty think block the template emits is reasoning; the rest is
        assistant."""
        pos, previous = turn_start, None
        for s, e, kind in parts:
            if s > pos:
                self._gap(pos, s, previous, kind)
            if kind == "tool_call_block":
                self.regions.append((s, e, content_key(Role.TOOL_CALL, False)))
            pos, previous = max(pos, e), kind

    def _gap(self, start: int, end: int, left: str | None, right: str) -> None:
        text = self.text[start:end]
        if left == "reasoning" or right == "reasoning":
            lead = len(text) - len(text.lstrip()) if left != "reasoning" else 0
            trail = len(text) - len(text.rstrip()) if right != "reasoning" else 0
            pieces = [(start, start + lead, Role.ASSISTANT), (start + lead, end - trail, Role.REASONING),
                      (end - trail, end, Role.ASSISTANT)]
        elif "tool_call" in (left, right):
            pieces = [(start, end, Role.TOOL_CALL)]
        else:
            pieces = [(start, end, Role.ASSISTANT)]
            think = self.profile.think
            empty = think[0] + think[1] if think else ""
            at = text.find(empty) if empty.strip() else -1
            if at != -1:
                tags = len(empty.rstrip())
                pieces = [(start, start + at, Role.ASSISTANT), (start + at, start + at + tags, Role.REASONING),
                          (start + at + tags, end, Role.ASSISTANT)]
        self.regions.extend((a, b, content_key(role, False)) for a, b, role in pieces if b > a)

    def _call_tail(self, last: int) -> int:
        """Where no tool-call block is known (the template cannot render the turn without its calls): the call
        runs from its last field to the end-of-turn text."""
        end_of_turn = self.profile.end_of_turn
        at = self.text.find(end_of_turn, last, self._next_start(last)) if end_of_turn else -1
        if at > last:
            self.regions.append((last, at, content_key(Role.TOOL_CALL, False)))
            return at
        return last

    def _after(self, last: int) -> None:
        limit, end_of_turn = self._next_start(last), self.profile.end_of_turn
        length = len(os.path.commonprefix([end_of_turn, self.text[last:limit]])) if end_of_turn else 0
        self.after.append((last, last + length if length else limit))

    def _empty_turn(self, cursor: int, limit: int) -> int:
        end_of_turn = self.profile.end_of_turn
        tail = self.profile.prompt_tails.get("user")
        if not end_of_turn:
            return cursor
        start = self.text.find(end_of_turn, cursor, limit)
        if tail and self.text.startswith(tail, cursor) and self.text.startswith(end_of_turn, cursor + len(tail)):
            start = cursor + len(tail)
        if start == -1:
            return cursor
        self.after.append((start, start + len(end_of_turn)))
        self.last_start = start
        return start + len(end_of_turn)

    def _tool_call_blocks(self) -> dict[int, list[tuple[int, int]]]:
        """Each assistant's tool calls as rendered with their wrapper: the text the render gains over the render
        without tool calls, between the same neighbouring fields."""
        calls = {j for j, m in enumerate(self.conversation.messages) if m.get("tool_calls")}
        if not calls:
            return {}
        try:
            other = self.finder._render(self.finder._probe(self.conversation, self.fields, drop_tool_calls=True))
        except RecordError:
            return {}
        is_call = [f.role == "tool_call" and f.path[0] == "tool_calls" for f in self.fields]
        mine = [(s, e, n) for s, e, n in self.occ if not is_call[n]]
        theirs = [(m.start(), m.end(), int(m.group(1))) for m in _SENTINEL_RE.finditer(other)]
        if [n for _, _, n in mine] != [n for _, _, n in theirs]:
            return {}
        blocks: dict[int, list[tuple[int, int]]] = {}
        pairs_mine = list(zip([0] + [e for _, e, _ in mine], [s for s, _, _ in mine] + [len(self.text)]))
        pairs_other = list(zip([0] + [e for _, e, _ in theirs], [s for s, _, _ in theirs] + [len(other)]))
        for (a, b), (c, d) in zip(pairs_mine, pairs_other):
            x, y = self.text[a:b], other[c:d]
            if x == y:
                continue
            # the common suffix first: an inserted block then ends with its own closing text (``</tool_call>``)
            q = len(os.path.commonprefix([x[::-1], y[::-1]]))
            q = min(q, len(x), len(y))
            p = len(os.path.commonprefix([x[:len(x) - q], y[:len(y) - q]]))
            start, end = a + p, b - q
            inside = self.occ[bisect.bisect_left(self.starts, start):bisect.bisect_right(self.starts, end)]
            owners = {self.fields[n].message for s, e, n in inside if is_call[n] and e <= end}
            if len(owners) == 1 and owners <= calls:
                blocks.setdefault(owners.pop(), []).append((start, end))
        return blocks


# -- helpers ----------------------------------------------------------------------------------------------------
def _m(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def _bisect(bounds: Sequence[int], pos: int) -> int:
    """Index k of the literal [bounds[2k], bounds[2k+1]] that holds ``pos`` (ends included)."""
    lo, hi = 0, len(bounds) // 2 - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if bounds[2 * mid] <= pos:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _set(messages: list[dict], f: TextField, value: str) -> None:
    message = messages[f.message]
    if f.path == (REASONING_KEY,):
        for alias in REASONING_ALIASES:
            if alias in message:
                message[alias] = value
        return
    if f.path[0] == "tool_calls":
        calls = message["tool_calls"] = [dict(c) for c in message["tool_calls"]]
        k = f.path[1]
        calls[k]["function"] = dict(calls[k]["function"], name=value)
        return
    message[f.path[0]] = value


def _blank_text(message: Mapping[str, Any]) -> dict:
    """The message with its text fields replaced by whether they are empty (the shape part of the cache key)."""
    out = {}
    for key, value in message.items():
        if key == "tool_calls":
            out[key] = [dict(c, function=dict(c["function"], name=bool(c["function"]["name"]))) for c in value]
        elif isinstance(value, str) and key not in ("role", "tool_call_id", "name"):
            out[key] = value != ""
        else:
            out[key] = value
    return out


def _describe(f: TextField, conversation: Conversation) -> str:
    return f"message {f.message} ({conversation.messages[f.message]['role']}) field {f.name!r}"


def _unrendered(template: ChatTemplate, where: str, field: str) -> RecordError:
    return RecordError("unrendered_field", f"chat template {template.name!r} does not render {where}; pass "
                                           f"--allow-unrendered {field} to accept that"
                                           + template_hint(template.name, structured_parts(fields=[field])))


def find_spans(template: ChatTemplate, messages: Sequence[Mapping[str, Any]] | Conversation,
               special_tokens: Mapping[str, Any]) -> RenderedConversation:
    """One-off span finding (the Encoder keeps a :class:`SpanFinder` with its cache)."""
    conversation = messages if isinstance(messages, Conversation) else Conversation([dict(m) for m in messages])
    return SpanFinder(template, special_tokens).find(conversation)
