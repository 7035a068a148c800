"""Chat templates and exact span finding.

A :class:`ChatTemplate` is a Jinja chat template (the tokenizer's own, a built-in written by us, or a file).
:func:`find_spans` locates every message's content in the rendered conversation by comparing the renders of
``messages[:i]`` and ``messages[:i+1]`` — never by searching for marker strings such as ``<|user|>``:

1. every render must be a prefix of the next (else: ``template_error``);
2. the text a message adds (its *delta*) must contain the message's content, verbatim or trimmed (templates
   like llama3 trim); content a template defers (llama2/gemma put the system prompt inside the first user
   turn) is looked for in later deltas, in order;
3. where the content occurs more than once in a delta (content ``"user"`` under a ``<|im_start|>user`` header)
   the template is rendered once more with unique sentinel contents, and the delta must equal that render with
   the sentinels replaced: the header and footer then fix the span exactly. If neither way gives one answer,
   the record is rejected with ``template_error``; we never guess.

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

import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import TemplateError

BUILTIN_DIR = Path(__file__).resolve().parent / "templates"
BUILTIN_TEMPLATES = ("tulu", "chatml", "llama3", "llama2", "mistral", "zephyr", "gemma", "alpaca")
_SENTINEL = "\ue000{}\ue001"


@functools.lru_cache(maxsize=32)
def _compile(source: str):
    try:  # the same sandboxed environment transformers uses (raise_exception, {% generation %}, tojson, ...)
        from transformers.utils.chat_template_utils import _compile_jinja_template

        return _compile_jinja_template(source)
    except ImportError:  # pragma: no cover - older/newer transformers layouts
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        return env.from_string(source)


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """A named Jinja chat template. ``sha256`` identifies it in shard manifests."""

    name: str
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    @classmethod
    def builtin(cls, name: str) -> "ChatTemplate":
        if name not in BUILTIN_TEMPLATES:
            raise ValueError(f"unknown built-in chat template {name!r}; built-ins: {', '.join(BUILTIN_TEMPLATES)}")
        return cls(name, (BUILTIN_DIR / f"{name}.jinja").read_text(encoding="utf-8"))

    @classmethod
    def resolve(cls, name_or_path: str | None, tokenizer: Any = None) -> "ChatTemplate":
        """``None``: the tokenizer's own template; a built-in name; or a path to a Jinja file."""
        if name_or_path is None:
            own = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
            if isinstance(own, dict):  # multiple named templates: take the default one
                own = own.get("default")
            if not own:
                raise ValueError("the tokenizer has no chat template; pass one with --chat-template "
                                 f"(a Jinja file or a built-in: {', '.join(BUILTIN_TEMPLATES)})")
            return cls("tokenizer", own)
        if name_or_path in BUILTIN_TEMPLATES:
            return cls.builtin(name_or_path)
        path = Path(name_or_path)
        if path.is_file():
            return cls(path.name, path.read_text(encoding="utf-8"))
        raise ValueError(f"chat template {name_or_path!r} is neither a built-in ({', '.join(BUILTIN_TEMPLATES)}) "
                         "nor a readable file")

    def render(self, messages: Sequence[Mapping[str, str]], special_tokens: Mapping[str, Any],
               add_generation_prompt: bool = False) -> str:
        try:
            return _compile(self.source).render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                                **special_tokens)
        except TemplateError:
            raise
        except Exception as exc:  # jinja2 TemplateError, raise_exception(), TypeError on bad content ...
            raise TemplateError(f"chat template {self.name!r} failed to render {len(messages)} message(s): "
                                f"{type(exc).__name__}: {exc}") from None


@dataclasses.dataclass(frozen=True)
class RenderedConversation:
    """The rendered text plus character spans: each message's content (start, end, role), and for each
    assistant message the text the template emitted after its content for that message (start, end)."""

    text: str
    content_spans: tuple[tuple[int, int, str], ...]
    after_assistant: tuple[tuple[int, int], ...]
    last_assistant_start: int


def _occurrences(haystack: str, needle: str, start: int, limit: int = 2) -> list[int]:
    found, pos = [], haystack.find(needle, start)
    while pos != -1 and len(found) < limit:
        found.append(pos)
        pos = haystack.find(needle, pos + 1)
    return found


def _locate_fast(delta: str, contents: Sequence[str], *, lenient: bool = False) -> list[tuple[int, int]] | None:
    """Find each content in order when it occurs exactly once after the previous one.

    Contents that are empty or have whitespace at their edges are left to the sentinel path (a trimming
    template makes the untrimmed text ambiguous); ``lenient`` is the last resort for templates that drop
    empty messages altogether: empty content becomes a zero-width span at the cursor, edges are trimmed.
    """
    spans, cursor = [], 0
    for content in contents:
        candidate = content
        if not content.strip():
            if not lenient:
                return None
            spans.append((cursor, cursor))
            continue
        if content != content.strip():
            if not lenient:
                return None
            hits = _occurrences(delta, content, cursor) or _occurrences(delta, content.strip(), cursor)
            candidate = content if delta.find(content, cursor) != -1 else content.strip()
        else:
            hits = _occurrences(delta, content, cursor)
        if len(hits) != 1:
            return None
        spans.append((hits[0], hits[0] + len(candidate)))
        cursor = hits[0] + len(candidate)
    return spans


def render_empty(template: ChatTemplate, special_tokens: Mapping[str, Any]) -> str:
    """The render of no messages (often ``""`` or a BOS); templates that cannot render it count as ``""``."""
    try:
        return template.render([], special_tokens)
    except TemplateError:
        return ""


@dataclasses.dataclass(frozen=True)
class _Skeleton:
    """The template's own text around each content for one sequence of roles (from a render with sentinel
    contents, itself checked by the prefix method): ``literals[j]`` precedes content j, ``literals[-1]`` ends
    the conversation; assistant j's after-content region ends ``after_ends[j]`` characters into literal j+1."""

    literals: tuple[str, ...]
    after_ends: tuple[tuple[int, int], ...]  # (message index, chars into the following literal)


SKELETON_CACHE_SIZE = 4096


def find_spans(template: ChatTemplate, messages: Sequence[Mapping[str, str]],
               special_tokens: Mapping[str, Any], empty_render: str | None = None,
               skeletons: dict | None = None) -> RenderedConversation:
    """Render ``messages`` and find the exact character span of every message's content (see module doc).

    ``empty_render`` is :func:`render_empty`'s result, passed in by callers that cache it. With a
    ``skeletons`` dict (one per tokenizer and template), conversations with a role sequence already seen are
    rendered once and aligned to that sequence's cached skeleton; the alignment must reproduce the render
    exactly, else the prefix method below runs as usual.
    """
    if skeletons is not None:
        roles = tuple(m["role"] for m in messages)
        if roles not in skeletons:
            if len(skeletons) >= SKELETON_CACHE_SIZE:
                skeletons.clear()
            skeletons[roles] = _build_skeleton(template, roles, special_tokens, empty_render)
        skeleton = skeletons[roles]
        if skeleton is not None:
            found = _align_to_skeleton(skeleton, messages, template.render(messages, special_tokens))
            if found is not None:
                return found
    return _find_spans_by_prefixes(template, messages, special_tokens, empty_render)


def _build_skeleton(template: ChatTemplate, roles: tuple[str, ...], special_tokens: Mapping[str, Any],
                    empty_render: str | None) -> _Skeleton | None:
    probe = [{"role": role, "content": _SENTINEL.format(j)} for j, role in enumerate(roles)]
    try:
        conv = _find_spans_by_prefixes(template, probe, special_tokens, empty_render)
    except TemplateError:
        return None
    spans = [(s, e) for s, e, _ in conv.content_spans]
    if any(spans[j][1] > spans[j + 1][0] for j in range(len(spans) - 1)):
        return None  # contents out of message order: leave such templates to the prefix method
    bounds = [0] + [x for span in spans for x in span] + [len(conv.text)]
    literals = tuple(conv.text[bounds[2 * j]:bounds[2 * j + 1]] for j in range(len(spans) + 1))
    after = []
    for (start, end), j in zip(conv.after_assistant, [j for j, r in enumerate(roles) if r == "assistant"]):
        limit = bounds[2 * j + 4] if j + 1 < len(spans) else len(conv.text)
        if start != spans[j][1] or end > limit:
            return None
        after.append((j, end - start))
    return _Skeleton(literals, tuple(after))


def _align_to_skeleton(skeleton: _Skeleton, messages: Sequence[Mapping[str, str]],
                       text: str) -> RenderedConversation | None:
    lits = skeleton.literals
    if not text.startswith(lits[0]):
        return None
    pos, spans = len(lits[0]), []
    for j, message in enumerate(messages):
        content, following = message["content"], lits[j + 1]
        last = j + 1 == len(messages)
        for candidate in (content, content.strip()):
            end = pos + len(candidate)
            if text.startswith(candidate, pos) and (
                    len(text) == end + len(following) if last else True) and text.startswith(following, end):
                break
        else:
            return None
        spans.append((pos, end, message["role"]))
        pos = end + len(following)
    after = tuple((spans[j][1], spans[j][1] + k) for j, k in skeleton.after_ends)
    last_start = next((s for s, _, r in reversed(spans) if r == "assistant"), 0)
    return RenderedConversation(text, tuple(spans), after, last_start)


def _find_spans_by_prefixes(template: ChatTemplate, messages: Sequence[Mapping[str, str]],
                            special_tokens: Mapping[str, Any], empty_render: str | None = None
                            ) -> RenderedConversation:
    previous = render_empty(template, special_tokens) if empty_render is None else empty_render
    located: dict[int, tuple[int, int]] = {}
    delta_of: dict[int, tuple[int, int]] = {}  # message -> (delta start, delta end) where its content was found
    pending: list[int] = []
    for i in range(len(messages)):
        current = template.render(messages[: i + 1], special_tokens)
        if not current.startswith(previous):
            raise TemplateError(f"chat template {template.name!r}: the render of the first {i + 1} message(s) does "
                                f"not start with the render of the first {i}; spans cannot be found reliably")
        base, delta = len(previous), current[len(previous):]
        pending.append(i)
        contents = [messages[j]["content"] for j in pending]
        spans = _locate_fast(delta, contents)
        if spans is None:
            spans = _locate_with_sentinels(template, messages, i, pending, previous, delta, special_tokens)
        if spans is None:
            spans = _locate_fast(delta, contents, lenient=True)
        # commit the longest located prefix of pending messages; the rest wait for a later delta
        still: list[int] = []
        for j, span in zip(pending, spans if spans is not None else [None] * len(pending)):
            if span is None or still:
                still.append(j)
            else:
                located[j] = (base + span[0], base + span[1])
                delta_of[j] = (base, len(current))
        pending = still
        previous = current
    if pending:
        j = pending[0]
        raise TemplateError(f"chat template {template.name!r}: content of message {j} ({messages[j]['role']}) "
                            "was not found in the rendered conversation")
    text = previous
    content_spans = tuple((located[j][0], located[j][1], messages[j]["role"]) for j in range(len(messages)))
    after, last_start = [], 0
    ordered = sorted(range(len(messages)), key=lambda j: located[j])
    for rank, j in enumerate(ordered):
        if messages[j]["role"] != "assistant":
            continue
        end = delta_of[j][1]
        if rank + 1 < len(ordered) and delta_of[ordered[rank + 1]] == delta_of[j]:
            end = min(end, located[ordered[rank + 1]][0])
        after.append((located[j][1], end))
        last_start = located[j][0]
    return RenderedConversation(text, content_spans, tuple(after), last_start)


def _locate_with_sentinels(template: ChatTemplate, messages: Sequence[Mapping[str, str]], i: int,
                           pending: Sequence[int], previous: str, delta: str,
                           special_tokens: Mapping[str, Any]) -> list[tuple[int, int] | None] | None:
    """Disambiguate repeated content: render with sentinel contents and align the delta to that render."""
    probe = [dict(m) for m in messages[: i + 1]]
    for k, j in enumerate(pending):
        probe[j]["content"] = _SENTINEL.format(k)
    rendered = template.render(probe, special_tokens)
    if not rendered.startswith(previous):
        return None
    skeleton = rendered[len(previous):]
    spans: list[tuple[int, int] | None] = []
    pos_sk, pos_real = 0, 0
    for k, j in enumerate(pending):
        sentinel = _SENTINEL.format(k)
        at = skeleton.find(sentinel, pos_sk)
        if at == -1:  # this message (and those after it) are deferred to a later delta
            spans.extend([None] * (len(pending) - k))
            return spans if k > 0 else None
        literal = skeleton[pos_sk:at]
        if not delta.startswith(literal, pos_real):
            return None
        start = pos_real + len(literal)
        content = messages[j]["content"]
        # the version of the content (as given, or trimmed by the template) that the template's next fixed
        # text follows; a bare startswith would let untrimmed content swallow the template's own whitespace
        after = at + len(sentinel)
        nxt = skeleton.find("\ue000", after)
        following = skeleton[after: nxt if nxt != -1 else len(skeleton)]
        for candidate in (content, content.strip()):
            if delta.startswith(candidate + following, start):
                break
        else:
            return None
        spans.append((start, start + len(candidate)))
        pos_sk, pos_real = at + len(sentinel), start + len(candidate)
    if delta[pos_real:] != skeleton[pos_sk:]:
        return None
    return spans
