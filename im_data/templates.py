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
BUILTIN_TEMPLATES = ("tulu", "chatml", "llama3", "llama2", "mistral", "zephyr", "gemma", "alpaca", "chatml_tools")
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

    def render(self, messages: Sequence[Mapping[str, Any]], variables: Mapping[str, Any],
               add_generation_prompt: bool = False, *, tools: Any = None, documents: Any = None) -> str:
        """Render as ``transformers``' ``apply_chat_template`` does: ``messages``, ``tools``, ``documents``,
        ``add_generation_prompt``, then ``variables`` (the special tokens and the chat template kwargs)."""
        try:
            return _compile(self.source).render(messages=list(messages), tools=tools, documents=documents,
                                                add_generation_prompt=add_generation_prompt, **variables)
        except TemplateError:
            raise
        except Exception as exc:  # jinja2 TemplateError, raise_exception(), TypeError on bad content ...
            raise TemplateError(f"chat template {self.name!r} failed to render {len(messages)} message(s): "
                                f"{type(exc).__name__}: {exc}") from None


