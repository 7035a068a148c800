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

import numpy as np

from .errors import RecordError, TemplateError, structured_parts, template_hint
from .messages import REASONING_ALIASES, REASONING_KEY, Conversation, TextField, message_fields, opaque_fields
from .roles import ROLE_CODES, Role
from .templates import ChatTemplate

_SENTINEL = "\ue000{}\ue001"
#: reasoning tags templates write (an empty pair the template emits inside an assistant turn is reasoning)
THINK_TAGS = (("<think>", "</think>"), ("[THINK]", "[/THINK]"), ("<seed:think>", "</seed:think>"))
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
    first special token); ``last_assistant_start``: where the last assistant turn starts; ``turns``: (start, end,
    message) of each assistant turn with a rendered part (after its generation prompt, to the end of its last
    output part); ``headers``: (start, end, message) of what the template writes before each message's first part
    (for an assistant message: up to the end of its generation prompt)."""

    text: str
    spans: tuple[tuple[int, int, int], ...]
    after_assistant: tuple[tuple[int, int], ...]
    last_assistant_start: int
    turns: tuple[tuple[int, int, int], ...] = ()
    headers: tuple[tuple[int, int, int], ...] = ()

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
    turns: tuple[tuple[int, int, int, int, int], ...] = ()  # (lit a, off a, lit b, off b, message)
    headers: tuple[tuple[int, int, int, int, int], ...] = ()
    violation: "RecordError | None" = None  # the shape breaks a labelling invariant: every record of it is rejected


class SpanFinder:
    """Span finding for one template and one set of template variables (special tokens, chat template kwargs)."""

    def __init__(self, template: ChatTemplate, special_tokens: Mapping[str, Any], *,
                 template_kwargs: Mapping[str, Any] | None = None, allow_unrendered: Sequence[str] = (),
                 special_strings: Sequence[str] = ()):
        """``special_strings``: the tokenizer's special tokens as text (where no end-of-turn text is known, a tool
        call runs to the first of them after its arguments)."""
        self.template = template
        self.special_strings = tuple(sorted({t for t in special_strings if t}, key=len, reverse=True))
        self.special_tokens = dict(special_tokens)
        self.variables = {**self.special_tokens, **(template_kwargs or {})}
        self.allow_unrendered = frozenset(REASONING_KEY if a in REASONING_ALIASES else a for a in allow_unrendered)
        self._skeletons: dict = {}
        self._profiles: dict[str, _Profile] = {}

    # -- public -------------------------------------------------------------------------------------------------
    def find(self, conversation: Conversation, check: bool = True) -> RenderedConversation:
        """Render ``conversation`` and label every character (see the module doc). A conversation whose shape
        breaks a labelling rule raises ``invariant_violation``; ``check=False`` returns its labels anyway (for
        reports: pass them to :func:`check_invariants`)."""
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
        if check and skeleton.violation is not None:
            raise skeleton.violation
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
        # a field the template writes more than once (a tool's name again in the tool message's header): one
        # occurrence is the field, the others are the template's text (still data: checked for special tokens)
        primary = set(labels.occ)
        keys = [content_key(ROLE_CODES[fields[n].role] if (s, e, n) in primary else Role.TEMPLATE, True)
                for s, e, n in occ]
        violations = check_invariants(RenderedConversation(
            skeleton_text, tuple(labels.regions) + tuple((s, e, k) for (s, e, _), k in zip(occ, keys)),
            tuple(labels.after), labels.last_start, tuple(labels.turns), tuple(labels.headers)), conversation)

        literal_starts = bounds[0::2]

        def lit(pos: int) -> tuple[int, int]:  # absolute skeleton position -> (literal index, offset)
            k = bisect.bisect_right(literal_starts, pos) - 1  # the last literal starting at or before pos
            return k, pos - literal_starts[k]

        regions = tuple((*lit(s), *lit(e), key) for s, e, key in labels.regions)
        after = tuple((*lit(s), *lit(e)) for s, e in labels.after)
        return _Skeleton(literals, tuple((n, *t) for (_, _, n), t in zip(occ, transforms)), tuple(keys), regions,
                         after, lit(labels.last_start), tuple((*lit(s), *lit(e), j) for s, e, j in labels.turns),
                         tuple((*lit(s), *lit(e), j) for s, e, j in labels.headers),
                         violations[0].error(self.template) if violations else None)

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
                len(m) == 2 and "content" in m for m in conversation.messages):  # {"role", "content"} only
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
            self._mismatch(skeleton, fields, conversation)
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
                self._mismatch(skeleton, fields, conversation)
            data.append((pos, end, key))
            pos = end + len(following)
            lit_start.append(end)
        if pos != len(text):
            self._mismatch(skeleton, fields, conversation)
        spans = [(lit_start[a] + oa, lit_start[b] + ob, key) for a, oa, b, ob, key in skeleton.regions]
        after = tuple((lit_start[a] + oa, lit_start[b] + ob) for a, oa, b, ob in skeleton.after)
        last_lit, last_off = skeleton.last_start
        turns = tuple((lit_start[a] + oa, lit_start[b] + ob, j) for a, oa, b, ob, j in skeleton.turns)
        headers = tuple((lit_start[a] + oa, lit_start[b] + ob, j) for a, oa, b, ob, j in skeleton.headers)
        return RenderedConversation(text, tuple(spans + data), after, lit_start[last_lit] + last_off, turns, headers)

    def _mismatch(self, skeleton: _Skeleton, fields: Sequence[TextField], conversation: Conversation) -> None:
        """The render differs from the skeleton filled with the values: name the field whose value the template
        changes (the first field whose real value, alone among sentinels, does not render as the skeleton says),
        and the flag that encodes it where one exists."""
        field = self._culprit(skeleton, fields, conversation)
        where = _describe(field, conversation) if field is not None else "the conversation"
        hint = ""
        if field is not None and field.path == _CONTENT and field.role == "assistant" and any(
                tag in field.value for pair in THINK_TAGS for tag in pair):
            hint = ("; the content holds inline reasoning (a think block): pass --split-inline-reasoning to encode "
                    "it as the message's reasoning")
        raise TemplateError(f"chat template {self.template.name!r}: the render of {where} differs from the "
                            "template's render of the same conversation shape (the template changes the value, "
                            f"or renders differently depending on it){hint}")

    def _culprit(self, skeleton: _Skeleton, fields: Sequence[TextField],
                 conversation: Conversation) -> TextField | None:
        probe = self._probe(conversation, fields)
        for number, f in enumerate(fields):
            single = [dict(m) for m in probe.messages]
            _set(single, f, f.value)
            try:
                text = self._render(dataclasses.replace(probe, messages=single))
            except RecordError:
                return f
            parts = [skeleton.literals[0]]
            for (n, left, right), following in zip(skeleton.occurrences, skeleton.literals[1:]):
                value = _strip(f.value, left % UNKNOWN, right % UNKNOWN) if n == number else _SENTINEL.format(n)
                parts += [value, following]
            if text != "".join(parts):
                return f
        return None


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
        self.finder, self.conversation, self.fields, self.text = finder, conversation, fields, text
        self.all_occ = occ
        self.occ = sorted(primary_occurrences(occ, fields))
        self.profile = finder.profile(conversation.template_kwargs)
        self.regions: list[tuple[int, int, int]] = []
        self.after: list[tuple[int, int]] = []
        self.turns: list[tuple[int, int, int]] = []
        self.headers: list[tuple[int, int, int]] = []
        self.last_start = 0
        self.starts = [s for s, _, _ in occ]
        self._probe_cache: Conversation | None = None
        self._turn_starts: set[int] = set()
        self.leads: dict[int, int] = {}  # block start -> where its text starts after its leading whitespace

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
                first, last = self.leads.get(parts[0][0], parts[0][0]), max(e for _, e, _ in parts)
                block_end = parts[0][1] if parts[0][2] == "tool_call_block" else first
                turn_start = self._turn_start(j, cursor, first, bool(j and by_message.get(j - 1)), block_end)
                parts, turn_start = self._block_edges(parts, turn_start)
                if parts[0][2] == "reasoning" and turn_start == first and self.profile.think:
                    opening = self.profile.think[0].lstrip()  # the think tag before the reasoning
                    if opening and self.text.startswith(opening, first - len(opening)) \
                            and first - len(opening) >= cursor:
                        turn_start = first - len(opening)
                unblocked = bool(message.get("tool_calls")) and j not in blocks
                self._turn_starts.add(turn_start)
                self._gaps(turn_start, parts, unblocked)
                if unblocked and any(kind == "tool_call" for _, _, kind in parts):
                    last = self._call_tail(j, last)
                self._after(last)
                self.headers.append((turn_start, turn_start, j))
                self.turns.append((turn_start, last, j))
                self.last_start = turn_start
                cursor = max(cursor, last)
            elif message["role"] == "assistant":  # no rendered part: place its end-of-turn after its header
                cursor = self._empty_turn(cursor, self._next_start(cursor))
            elif parts:
                self.headers.append((parts[0][0], parts[0][0], j))
            if parts:
                cursor = max(cursor, max(e for _, e, _ in parts))
        # a header runs from the end of whatever part or turn precedes it in the text (templates may reorder); after
        # an assistant turn, from where the render of the messages before it ends (what the template writes for
        # this message is its header, whatever the turn's labels swallowed)
        ends = sorted({e for s, e, _ in self.occ} | {e for _, e, _ in self.turns} | {0})
        self.headers = [(self._header_start(j, start, ends), start, j) for _, start, j in self.headers]
        # tool-call blocks are written after the gaps so that they win where they overlap
        self.regions.sort(key=lambda r: (r[2] == content_key(Role.TOOL_CALL, False), r[0]))
        return self

    def _skeleton_probe(self) -> Conversation:
        if self._probe_cache is None:
            self._probe_cache = self.finder._probe(self.conversation, self.fields)
        return self._probe_cache

    def _header_start(self, j: int, start: int, ends: Sequence[int]) -> int:
        default = ends[bisect.bisect_right(ends, start) - 1]
        if j == 0 or self.conversation.messages[j]["role"] == "assistant" or \
                not self.conversation.messages[j - 1].get("tool_calls"):  # only a call's text can run past its turn
            return default
        probe = self._skeleton_probe()
        try:
            before = self.finder._render(dataclasses.replace(probe, messages=probe.messages[:j]))
        except RecordError:
            return default
        found = list(_SENTINEL_RE.finditer(before))
        if not found:
            return default
        number, tail = int(found[-1].group(1)), before[found[-1].end():]
        for s, e, n in self.all_occ:
            if n == number and e + len(tail) <= start and self.text.startswith(tail, e):
                return e + len(tail)
        return default

    def _block_edges(self, parts: list[tuple[int, int, str]], turn_start: int
                     ) -> tuple[list[tuple[int, int, str]], int]:
        """A block's leading whitespace (``\n`` before ``<tool_call>``) is written for the call: tool_call. Where
        the block opens the turn, whitespace after the generation prompt is the turn's text before the call, and
        whitespace inside the prompt is the prompt's; where no prompt was found, the turn starts with the block."""
        s, e, kind = parts[0]
        if kind == "tool_call_block" and s < turn_start and self._prompt_found:  # never over the generation prompt
            s = self.leads[turn_start] = max(self.leads.get(s, s), turn_start)
            parts = [(turn_start, e, kind)] + parts[1:]
            s = turn_start
        lead = self.leads.get(s, s)
        if kind != "tool_call_block" or lead == s or self.text[turn_start:lead].strip():
            return parts, turn_start
        if self._prompt_found:
            return [(lead, e, kind)] + parts[1:], turn_start
        return parts, min(turn_start, s)

    def _turn_start(self, j: int, before: int, first: int, previous_rendered: bool, block_end: int) -> int:
        """After the generation prompt: where the render continues the previous message with the text that
        ``add_generation_prompt=True`` renders after it (the render of the messages before this one with the
        prompt; else the per-template prompt tail of the previous message's role); else the turn's first part.
        A tool-call block (a diff: its edges may reach into the prompt) may start inside the prompt."""
        self._prompt_found = False
        if not previous_rendered or before >= first:
            return first
        for tail in (self.profile.prompt_tails.get(self.conversation.messages[j - 1]["role"]), None):
            tail = tail if tail is not None else self._prompt_tail(j)  # the prefix render only where needed
            if tail and before + len(tail) <= max(first, block_end - 1) and self.text.startswith(tail, before):
                self._prompt_found = True
                return before + len(tail)
        return first

    def _prompt_tail(self, j: int) -> str | None:
        """The generation prompt after messages[:j]: the render of their skeleton with ``add_generation_prompt``,
        after its last field, when that field is the one the full skeleton renders last before message j."""
        probe = self._skeleton_probe()
        try:
            prompt = self.finder._render(dataclasses.replace(probe, messages=probe.messages[:j]), True)
        except RecordError:
            return None
        found = list(_SENTINEL_RE.finditer(prompt))
        return prompt[found[-1].end():] if found else None

    def _next_start(self, pos: int) -> int:
        """Start of the first occurrence at or after ``pos`` (the end of the text if none)."""
        k = bisect.bisect_left(self.starts, pos)
        return self.starts[k] if k < len(self.starts) else len(self.text)

    def _gaps(self, turn_start: int, parts: list[tuple[int, int, str]], unblocked: bool) -> None:
        """Text inside the turn between its parts: the reasoning's tags (the text touching the reasoning, without
        whitespace at its far edge) are reasoning; a tool-call block is tool_call, and text touching a tool-call
        name where no block is known; an empty think block the template emits is reasoning; the rest is
        assistant."""
        pos, previous = turn_start, None
        for s, e, kind in parts:
            if s > pos:
                self._gap(pos, s, previous, kind, unblocked)
            if kind == "tool_call_block":
                self.regions.append((s, e, content_key(Role.TOOL_CALL, False)))
            pos, previous = max(pos, e), kind

    def _gap(self, start: int, end: int, left: str | None, right: str, unblocked: bool) -> None:
        text = self.text[start:end]
        if left == "reasoning" or right == "reasoning":
            lead = len(text) - len(text.lstrip()) if left != "reasoning" else 0
            trail = len(text) - len(text.rstrip()) if right != "reasoning" else 0
            if left == "reasoning":  # a closing that runs into a new assistant header (harmony) stops before it
                at = min((text.find(t) for t in self.profile.prompt_tails.values() if t and t in text), default=-1)
                trail = max(trail, len(text) - at) if at != -1 else trail
            pieces = [(start, start + lead, Role.ASSISTANT), (start + lead, end - trail, Role.REASONING),
                      (end - trail, end, Role.ASSISTANT)]
        elif unblocked and "tool_call" in (left, right):
            pieces = [(start, end, Role.TOOL_CALL)]
        else:
            empty = self._empty_think(start, end) + self._prompt_opened_think(start, end)
            pieces = [(a, b, Role.ASSISTANT) for a, b in _complement(start, end, sorted(empty))]
            pieces += [(a, b, Role.REASONING) for a, b in empty]
        self.regions.extend((a, b, content_key(role, False)) for a, b, role in pieces if b > a)

    def _empty_think(self, start: int, end: int) -> list[tuple[int, int]]:
        """Empty think blocks (a known tag pair, or the template's own, with only whitespace inside) in the text."""
        pairs = list(THINK_TAGS)
        if self.profile.think:
            pairs.append((self.profile.think[0].strip(), self.profile.think[1].strip()))
        found = []
        for opening, closing in pairs:
            if not opening or not closing:
                continue
            at = self.text.find(opening, start, end)
            while at != -1:
                inner = at + len(opening)
                close = self.text.find(closing, inner, end)
                if close == -1:
                    break
                if not self.text[inner:close].strip():
                    found.append((at, close + len(closing)))
                at = self.text.find(opening, close + len(closing), end)
        return sorted(found)

    def _prompt_opened_think(self, start: int, end: int) -> list[tuple[int, int]]:
        """A think block the generation prompt opens (it ends with ``<think>\n``) and the turn closes with nothing
        but whitespace before the closing tag: the turn's part of it (whitespace and the closing tag) is
        reasoning."""
        if start not in self._turn_starts:
            return []
        before = self.text[:start].rstrip()
        for opening, closing in THINK_TAGS:
            body = self.text[start:end]
            at = len(body) - len(body.lstrip())
            if before.endswith(opening) and body.startswith(closing, at):
                return [(start, start + at + len(closing))]
        return []

    def _call_tail(self, j: int, last: int) -> int:
        """Where no tool-call block is known (the template cannot render the turn without its calls): the call runs
        from its last field past its arguments to the end-of-turn text, or else to the first special token."""
        end = max(last, self._arguments_end(j, last))
        limit = self._next_start(end)
        end_of_turn = self.profile.end_of_turn
        at = self.text.find(end_of_turn, end, limit) if end_of_turn else -1
        if at == -1:
            at = min((p for p in (self.text.find(t, end, limit) for t in self.finder.special_strings) if p != -1),
                     default=end)
        if at > last:
            self.regions.append((last, at, content_key(Role.TOOL_CALL, False)))
            return at
        return last

    def _arguments_end(self, j: int, last: int) -> int:
        """End of the rendered arguments of message j's calls: where the render with them emptied stops differing
        (common suffix); ``last`` when that render fails or the arguments are not rendered after ``last``."""
        probe = self.finder._probe(self.conversation, self.fields)
        messages = [dict(m) for m in probe.messages]
        calls = copy.deepcopy(messages[j]["tool_calls"])
        for call in calls:
            call["function"]["arguments"] = {}
        messages[j]["tool_calls"] = calls
        try:
            other = self.finder._render(dataclasses.replace(probe, messages=messages))
        except RecordError:
            return last
        if other == self.text:
            return last
        q = len(os.path.commonprefix([self.text[::-1], other[::-1]]))
        return max(last, len(self.text) - q)

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
        without tool calls, between the same neighbouring fields, without whitespace at its edges."""
        calls = {j for j, m in enumerate(self.conversation.messages) if m.get("tool_calls")}
        if not calls:
            return {}
        try:
            other = self.finder._render(self.finder._probe(self.conversation, self.fields, drop_tool_calls=True))
        except RecordError:
            return {}
        is_call = [f.role == "tool_call" and f.path[0] == "tool_calls" for f in self.fields]
        mine = [(s, e, n) for s, e, n in self.all_occ if not is_call[n]]
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
            # an insertion can slide where its edges repeat the text around it: never start on a closing bracket
            # (``>`` of ``</think>`` when the block is ``\n<tool_call>…</tool_call>``)
            slack = len(os.path.commonprefix([x[p:], y[p:]]))
            while slack and self.text[start] in ">]})" and self.text[end] == self.text[start]:
                start, end, slack = start + 1, end + 1, slack - 1
            block = self.text[start:end]
            lead, end = start + len(block) - len(block.lstrip()), end - (len(block) - len(block.rstrip()))
            inside = self.occ[bisect.bisect_left([s for s, _, _ in self.occ], start):
                              bisect.bisect_right([s for s, _, _ in self.occ], end)]
            owners = {self.fields[n].message for s, e, n in inside if is_call[n] and e <= end}
            last_call = max((e for s, e, n in inside if is_call[n] and e <= end), default=start)
            # the turn's end-of-turn text the block gained (the render without calls has no end-of-turn) is not
            # part of the call
            end_of_turn = (self.profile.end_of_turn or "").strip()
            at = self.text.find(end_of_turn, last_call, end) if end_of_turn else -1
            if at != -1:
                end = len(self.text[start:at].rstrip()) + start
            if len(owners) == 1 and owners <= calls and end > lead:
                owner = owners.pop()
                # nor the turn's end-of-turn token (the special tokens a plain turn ends with), nor what follows it:
                # the diff may reach into the next message's header where that depends on the calls
                stops = [p for p in (self.text.find(t, last_call, end) for t in self.finder.special_strings
                                     if end_of_turn and t in end_of_turn) if p != -1]
                if stops:
                    end = len(self.text[start:min(stops)].rstrip()) + start
                blocks.setdefault(owner, []).append((start, end))
                self.leads[start] = lead
        return blocks



def primary_occurrences(occ: Sequence[tuple[int, int, int]], fields: Sequence[TextField]
                        ) -> list[tuple[int, int, int]]:
    """For a field the template writes more than once, the occurrence that is the field: the first one after the
    fields of the messages before it (a preview in an earlier header, or a repeat in a later header, is the
    template's echo); the first one where none follows them."""
    by_number: dict[int, list[tuple[int, int, int]]] = {}
    for o in occ:
        by_number.setdefault(o[2], []).append(o)
    if len(by_number) == len(occ):  # every field written once: the common case
        return list(occ)
    chosen: list[tuple[int, int, int]] = []
    floor = reached = -1  # end of the chosen occurrences of the earlier messages / of all chosen so far
    message = -1
    for n in sorted(by_number, key=lambda n: (fields[n].message, n)):
        if fields[n].message != message:
            message, floor = fields[n].message, reached
        options = by_number[n]
        pick = next((o for o in options if o[0] >= floor), options[0])
        chosen.append(pick)
        reached = max(reached, pick[1])
    return chosen


# -- the labelling invariants -----------------------------------------------------------------------------------
class Violation(NamedTuple):
    """A labelling invariant that a rendered conversation breaks: ``message`` (index) and ``field`` at fault
    (``header``: what the template writes before the message's first part), the ``rule`` broken, the offending
    ``text``, and the ``flag`` that fixes it where one exists."""

    message: int
    role: str
    field: str
    rule: str
    text: str
    flag: str | None = None

    def describe(self) -> str:
        fix = f"; pass {self.flag} to fix it" if self.flag else ""
        return f"message {self.message} ({self.role}) {self.field}: {self.rule} ({self.text!r}){fix}"

    def error(self, template: ChatTemplate) -> RecordError:
        return RecordError("invariant_violation", f"chat template {template.name!r}: {self.describe()}")


#: the rules (docs/DESIGN.md, "Labelling rules"), as named in violations
RULE_HEADER = "a message's header (the template's text before it, or an assistant's generation prompt) carries " \
              "an output role"
RULE_TURN = "text the template emits inside an assistant turn is not output"
RULE_THINK = "an empty reasoning block the template emits inside an assistant turn is not reasoning"

_OUTPUT_CONTENT = [int(r) for r in (Role.ASSISTANT, Role.REASONING, Role.TOOL_CALL)]


def character_roles(rendered: RenderedConversation) -> np.ndarray:
    """The role code of every character of the render (int8; spans in writing order; the after-turn regions are
    assistant_end up to their end: the first special token is a token-level cut, see :mod:`im_data.encode`)."""
    roles = np.zeros(len(rendered.text), dtype=np.int8)
    for s, e in rendered.after_assistant:
        roles[s:e] = int(Role.ASSISTANT_END)
    for s, e, k in rendered.spans:
        roles[s:e] = int(role_of_key(k)) if k >= CONTENT else int(Role.TEMPLATE)
    return roles


def check_invariants(rendered: RenderedConversation, conversation: Conversation | Sequence[Mapping[str, Any]]
                     ) -> list[Violation]:
    """The labelling rules a rendered conversation breaks (empty: none), at the character level:

    * no message's header carries an output role (assistant, reasoning, tool_call): what the template writes
      before a system / user / tool message, and an assistant's generation prompt, are template text;
    * every character of an assistant turn (after its generation prompt, up to the end of its last output part)
      has an output role;
    * an empty think block (``<think></think>``, ``<seed:think></seed:think>``, ...) inside a turn is reasoning.

    ``conversation``: the messages the render was made from (for naming the message at fault)."""
    messages = conversation.messages if isinstance(conversation, Conversation) else list(conversation)
    roles = character_roles(rendered)
    output = np.isin(roles, _OUTPUT_CONTENT)
    text = rendered.text
    found = []

    def run(mask: np.ndarray, offset: int) -> str:
        bad = np.flatnonzero(mask)
        return text[offset + int(bad[0]):offset + int(bad[-1]) + 1]

    for s, e, j in rendered.headers:
        if output[s:e].any():
            found.append(Violation(j, messages[j]["role"], "header", RULE_HEADER, run(output[s:e], s)))
    for s, e, j in rendered.turns:
        if not output[s:e].all():
            found.append(Violation(j, "assistant", "turn", RULE_TURN, run(~output[s:e], s)))
        for opening, closing in THINK_TAGS:
            at = text.find(opening, s, e)
            while at != -1:
                close = text.find(closing, at + len(opening), e)
                if close == -1:
                    break
                end = close + len(closing)
                if not text[at + len(opening):close].strip() and (roles[at:end] != Role.REASONING).any():
                    found.append(Violation(j, "assistant", "turn", RULE_THINK, text[at:end]))
                at = text.find(opening, end, e)
    return found


def _complement(start: int, end: int, holes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out, pos = [], start
    for a, b in holes:
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if end > pos:
        out.append((pos, end))
    return out


# -- helpers ----------------------------------------------------------------------------------------------------
def _m(role: str, content: str) -> dict:
    return {"role": role, "content": content}


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
