"""Chat templates: a :class:`ChatTemplate` is a Jinja chat template (the tokenizer's own, a built-in written by us,
or a file), rendered in the sandboxed environment ``transformers`` uses, with the variables
``apply_chat_template`` passes (``messages``, ``tools``, ``documents``, ``add_generation_prompt``, the special
tokens and the chat template kwargs). Span finding on the render lives in :mod:`im_data.spans`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import TemplateError, structured_parts, template_hint

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
                                f"{type(exc).__name__}: {exc}"
                                + template_hint(self.name, structured_parts(messages, tools))) from None


