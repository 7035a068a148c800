"""Chat templates: a :class:`ChatTemplate` is a Jinja chat template (the tokenizer's own, a built-in written by us,
or a file), rendered in the sandboxed environment ``transformers`` uses, with the variables
``apply_chat_template`` passes (``messages``, ``tools``, ``documents``, ``add_generation_prompt``, the special
tokens and the chat template kwargs). Span finding on the render lives in :mod:`im_data.spans`.

**A budget per render.** A template is code from elsewhere: every render runs under a time limit
(:data:`RENDER_TIMEOUT_S`, or ``IM_DATA_TEMPLATE_TIMEOUT_S`` seconds; a record over it is rejected
``template_timeout``) and a size limit (:func:`render_budget_chars`: the rendered text, any string or list the
template builds with ``*``, a filter, a macro call or a namespace assignment; a record over it is rejected
``too_large``). The time limit is enforced by one watchdog thread per process that raises
:class:`TemplateTimeout` in the rendering thread when its deadline passes (Python code, such as Jinja's compiled
loops, is interrupted between two bytecodes); the size checks run inside the sandbox (intercepted ``*`` and
``**``, calls, filters), so one record can neither stall a worker nor exhaust its memory.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import RecordError, TemplateError, structured_parts, template_hint

#: Seconds one render may take (the environment variable ``IM_DATA_TEMPLATE_TIMEOUT_S`` overrides it).
RENDER_TIMEOUT_S = 10.0
#: The rendered text (and anything a template builds) may hold RENDER_MIN_CHARS characters, or
#: RENDER_DATA_FACTOR times the characters of the data rendered, whichever is more.
RENDER_MIN_CHARS = 1 << 20
RENDER_DATA_FACTOR = 8


class TemplateTimeout(RecordError):
    """A render ran longer than its time limit (raised in the rendering thread by the watchdog)."""

    def __init__(self, message: str = "the chat template ran longer than its time limit"):
        super().__init__("template_timeout", message)

    def __reduce__(self):
        return (TemplateTimeout, (self.message,))


class TemplateTooLarge(RecordError):
    """A render produced, or built, more text than its size limit."""

    def __init__(self, message: str):
        super().__init__("too_large", message)

    def __reduce__(self):
        return (TemplateTooLarge, (self.message,))


def render_timeout_s() -> float:
    try:
        return float(os.environ.get("IM_DATA_TEMPLATE_TIMEOUT_S", RENDER_TIMEOUT_S))
    except ValueError:
        return RENDER_TIMEOUT_S


def _data_chars(value: Any, depth: int = 0) -> int:
    """Characters of the strings in ``value`` (nested lists and dicts, keys included), roughly what a render
    of it may show."""
    if isinstance(value, str):
        return len(value)
    if depth > 32:
        return 0
    if isinstance(value, Mapping):
        return sum(len(k) + _data_chars(v, depth + 1) if isinstance(k, str) else _data_chars(v, depth + 1)
                   for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_data_chars(v, depth + 1) for v in value)
    return 8


def render_budget_chars(*data: Any) -> int:
    """The size limit of a render of ``data``: max(:data:`RENDER_MIN_CHARS`, :data:`RENDER_DATA_FACTOR` × its
    characters)."""
    return max(RENDER_MIN_CHARS, RENDER_DATA_FACTOR * sum(_data_chars(d) for d in data))


class _Watchdog:
    """Deadlines of the renders in progress, one per thread; a daemon thread raises :class:`TemplateTimeout` in a
    thread whose deadline has passed (``PyThreadState_SetAsyncExc``), and clears it again if the render ended
    first."""

    def __init__(self):
        self._pid = None
        self._start()

    def _start(self) -> None:
        self._cond = threading.Condition()
        self._deadlines: dict[int, list] = {}
        self._pid = os.getpid()
        threading.Thread(target=self._run, name="im-data-template-watchdog", daemon=True).start()

    def arm(self, seconds: float) -> tuple[int, list]:
        if self._pid != os.getpid():  # a forked child has no watchdog thread
            self._start()
        tid, entry = threading.get_ident(), [time.monotonic() + seconds, False]
        with self._cond:
            self._deadlines[tid] = entry
            self._cond.notify()
        return tid, entry

    def disarm(self, tid: int, entry: list) -> None:
        with self._cond:
            self._deadlines.pop(tid, None)
            if entry[1]:  # fired: drop the exception if it is still pending
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                wait = None
                for tid, entry in self._deadlines.items():
                    if entry[1]:
                        continue
                    if now >= entry[0]:
                        entry[1] = True
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid),
                                                                   ctypes.py_object(TemplateTimeout))
                    else:
                        wait = entry[0] - now if wait is None else min(wait, entry[0] - now)
                self._cond.wait(wait)


_WATCHDOG: _Watchdog | None = None
_WATCHDOG_LOCK = threading.Lock()


def _watchdog() -> _Watchdog:
    global _WATCHDOG
    if _WATCHDOG is None:
        with _WATCHDOG_LOCK:
            if _WATCHDOG is None:
                _WATCHDOG = _Watchdog()
    return _WATCHDOG


_LIMIT = threading.local()  # the size limit of the render in progress in this thread


def _check_size(value: Any, what: str) -> Any:
    limit = getattr(_LIMIT, "chars", None)
    if limit is not None and isinstance(value, (str, list, tuple, dict)) and len(value) > limit:
        raise TemplateTooLarge(f"the chat template built {what} of {len(value):,} items, over the limit of "
                               f"{limit:,} for this record")
    return value


def _check_args(args: Sequence[Any], kwargs: Mapping[str, Any], what: str) -> None:
    """An int argument larger than the size limit (``center(10**9)``, ``"%9999999999s"|format``) would build a
    string that large in one C call: refused before the call."""
    limit = getattr(_LIMIT, "chars", None)
    if limit is None:
        return
    if what == "the filter format" and args and isinstance(args[0], str):
        _check_format(args[0])
    for a in (*args, *kwargs.values()):
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > limit:
            raise TemplateTooLarge(f"the chat template called {what} with {a:,}, over the size limit of {limit:,}")
        _check_size(a, f"an argument of {what}")


def _check_format(spec: str) -> None:
    """A printf-style format whose width or precision is over the size limit (``'%999999999s'``)."""
    limit = getattr(_LIMIT, "chars", None)
    if limit is not None and "%" in spec and any(int(n) > limit for m in _FORMAT_NUMBERS.finditer(spec)
                                                 for n in m.groups() if n):
        raise TemplateTooLarge(f"the chat template formats with a width over the size limit of {limit:,}")


_FORMAT_NUMBERS = re.compile(r"%[-+ #0]*(\d*)(?:\.(\d+))?")


def _budget_environment(env):
    """An overlay of transformers' sandboxed environment that checks sizes (see the module doc)."""
    import jinja2

    budget = env.overlay()
    budget.intercepted_binops = frozenset({"*", "**", "%"})
    parent_binop, parent_call = env.call_binop, env.call

    def call_binop(context, operator, left, right):
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(n, int) and isinstance(seq, (str, list, tuple)):
                    limit = getattr(_LIMIT, "chars", None)
                    if limit is not None and len(seq) * n > limit:
                        raise TemplateTooLarge(f"the chat template multiplies a sequence of {len(seq):,} items by "
                                               f"{n:,}, over the size limit of {limit:,}")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
                and right > 64:
            raise TemplateTooLarge(f"the chat template computes {left} ** {right}")
        return parent_binop(context, operator, left, right)

    def call(context, obj, *args, **kwargs):
        _check_args(args, kwargs, getattr(obj, "__name__", "a function"))
        return _check_size(parent_call(context, obj, *args, **kwargs), "a value")

    def wrap_filter(name, fn):
        @functools.wraps(fn)
        def checked(*args, **kwargs):
            _check_args(args, kwargs, f"the filter {name}")
            return _check_size(fn(*args, **kwargs), f"a value (filter {name})")
        return checked

    base_namespace = env.globals.get("namespace", jinja2.utils.Namespace)

    class BudgetNamespace(base_namespace):  # a namespace attribute is where a loop can grow a value
        def __setitem__(self, name, value):
            _check_size(value, f"namespace attribute {name!r}")
            super().__setitem__(name, value)

    budget.call_binop = call_binop
    budget.call = call
    budget.filters = {name: wrap_filter(name, fn) if not getattr(fn, "jinja_pass_arg", None) else fn
                      for name, fn in env.filters.items()}
    budget.globals = dict(env.globals, namespace=BudgetNamespace)
    return budget

BUILTIN_DIR = Path(__file__).resolve().parent / "templates"
BUILTIN_TEMPLATES = ("tulu", "chatml", "llama3", "llama2", "mistral", "zephyr", "gemma", "alpaca", "chatml_tools")
_SENTINEL = "\ue000{}\ue001"


#: The variables ``apply_chat_template`` passes itself; with the tokenizer's special tokens (``bos_token``,
#: ``eos_token``, ...) they are :func:`reserved_variables`, which chat template kwargs may not set.
RENDER_VARIABLES = ("messages", "tools", "documents", "add_generation_prompt")


def reserved_variables(special_tokens: Mapping[str, Any]) -> frozenset[str]:
    """Template variable names that chat template kwargs (``--chat-template-kwargs`` or a record's own) may not
    set: the render's own variables and the names of the special-token variables (whatever the tokenizer has)."""
    return frozenset(RENDER_VARIABLES) | frozenset(special_tokens)


@functools.lru_cache(maxsize=32)
def _compile(source: str):
    """The template compiled in transformers' sandboxed environment, overlaid with the size checks."""
    env = _budget_environment(_compile_plain("").environment)
    _LIMIT.chars = RENDER_MIN_CHARS  # Jinja folds constant expressions while compiling: under the size checks too
    try:
        return env.from_string(source)
    finally:
        _LIMIT.chars = None


def _compile_plain(source: str):
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
            template = _compile(self.source)
        except Exception as exc:  # noqa: BLE001 - a Jinja syntax error: the record's template_error
            raise TemplateError(f"chat template {self.name!r} failed to render {len(messages)} message(s): "
                                f"{type(exc).__name__}: {exc}") from None
        limit = render_budget_chars(messages, tools, documents, variables)
        _LIMIT.chars = limit
        tid, entry = _watchdog().arm(render_timeout_s())
        try:
            parts, size = [], 0
            for part in template.generate(messages=list(messages), tools=tools, documents=documents,
                                          add_generation_prompt=add_generation_prompt, **variables):
                size += len(part)
                if size > limit:
                    raise TemplateTooLarge(f"chat template {self.name!r} rendered more than {limit:,} characters "
                                           "for this record (the limit: 8 × its data, at least 1 Mi)")
                parts.append(part)
            return "".join(parts)
        except TemplateTimeout:
            raise TemplateTimeout(f"chat template {self.name!r} ran longer than {render_timeout_s():g} s on "
                                  f"{len(messages)} message(s) (IM_DATA_TEMPLATE_TIMEOUT_S)") from None
        except RecordError:
            raise
        except Exception as exc:  # jinja2 TemplateError, raise_exception(), TypeError on bad content ...
            raise TemplateError(f"chat template {self.name!r} failed to render {len(messages)} message(s): "
                                f"{type(exc).__name__}: {exc}"
                                + template_hint(self.name, structured_parts(messages, tools))) from None
        finally:
            _watchdog().disarm(tid, entry)
            _LIMIT.chars = None


