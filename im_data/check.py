"""Is a chat template safe to train on? A built-in probe set, encoded, and what it tells (``im-data check-template``).

Pure (no Beam, no I/O). :func:`check_template` encodes every probe of :data:`PROBES` (system prompt, multi-turn,
tools, parallel calls, tool results, reasoning on the last and on earlier turns, inline ``<think>`` reasoning) with
the user's tokenizer and template under ``it`` and ``im``, and reports:

* per probe and per role, the tokens and how many are trained under each mode (or the reject, with the flag that
  accepts such records where one exists);
* which record fields the template renders, drops (``unrendered_field``) or changes (``template_error``);
* whether renders are prefix-stable (the render of a conversation's first turns starts the render of the whole)
  and whether each generation prompt starts the assistant turn that follows it;
* whether the end-of-turn token is trained (under ``it``: a model that never learns it never stops);
* invariant violations (rejects with reason ``invariant_violation``) and every reject by reason.

:attr:`TemplateReport.supported` (exit status 0 of the command) holds when every required probe is encoded, no
invariant is violated and every assistant turn's end is trained. Prefix instability and generation prompts that do
not start the turn are reported, not counted against the template: the encoder labels each record on its own render.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Mapping, Sequence

from .encode import EncodedExample, Encoder, special_tokens_for_render
from .errors import RecordError
from .formats import FormatOptions, read_conversation
from .policy import WeightPolicy
from .roles import ROLE_LABELS
from .templates import ChatTemplate

MODES = ("it", "im")
INVARIANT_REASON = "invariant_violation"


@dataclasses.dataclass(frozen=True)
class Probe:
    name: str
    what: str
    record: Mapping[str, Any]
    required: bool = True  # False: advisory (its reject names a flag, it does not make the template unsupported)


def _m(role: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


_TOOLS = [{"type": "function", "function": {
    "name": "add", "description": "Add two integers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"]}}}]


def _call(call_id: str, a: int, b: int) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "add", "arguments": {"a": a, "b": b}}}


#: The built-in probe set, in report order.
PROBES: tuple[Probe, ...] = (
    Probe("system", "system prompt, one exchange", {"messages": [
        _m("system", "You are terse."), _m("user", "Capital of France?"), _m("assistant", "Paris.")]}),
    Probe("multi_turn", "three exchanges", {"messages": [
        _m("user", "Hi there"), _m("assistant", "Hello!"), _m("user", "2+2?"), _m("assistant", "4."),
        _m("user", "And 3+3?"), _m("assistant", "6.")]}),
    Probe("tools", "tool definitions, one call, its result, the answer", {"tools": _TOOLS, "messages": [
        _m("user", "2+3?"), _m("assistant", "", tool_calls=[_call("c1", 2, 3)]),
        _m("tool", "5", tool_call_id="c1", name="add"), _m("assistant", "It is 5.")]}),
    Probe("parallel_calls", "two calls in one turn, two results", {"tools": _TOOLS, "messages": [
        _m("user", "2+3 and 4+5?"), _m("assistant", "", tool_calls=[_call("c1", 2, 3), _call("c2", 4, 5)]),
        _m("tool", "5", tool_call_id="c1", name="add"), _m("tool", "9", tool_call_id="c2", name="add"),
        _m("assistant", "5 and 9.")]}),
    Probe("tool_results", "two tool rounds: call, result, call, result, answer", {"tools": _TOOLS, "messages": [
        _m("user", "(2+3)+4?"), _m("assistant", "", tool_calls=[_call("c1", 2, 3)]),
        _m("tool", "5", tool_call_id="c1", name="add"), _m("assistant", "", tool_calls=[_call("c2", 5, 4)]),
        _m("tool", "9", tool_call_id="c2", name="add"), _m("assistant", "It is 9.")]}),
    Probe("reasoning_last", "reasoning on the last turn", {"messages": [
        _m("user", "2+3?"), _m("assistant", "5.", reasoning_content="Two plus three is five.")]}),
    Probe("reasoning_earlier", "reasoning on an earlier turn and the last", {"messages": [
        _m("user", "2+3?"), _m("assistant", "5.", reasoning_content="Two plus three is five."),
        _m("user", "Times 2?"), _m("assistant", "10.", reasoning_content="Five times two is ten.")]}),
    Probe("inline_reasoning", "reasoning written inline as <think>...</think> at the start of the content",
          {"messages": [_m("user", "2+3?"), _m("assistant", "<think>Two plus three is five.</think>5.")]},
          required=False),
)


@dataclasses.dataclass(frozen=True)
class RoleCount:
    role: str
    tokens: int
    trained: dict[str, int]  # mode -> tokens with a positive weight


@dataclasses.dataclass
class ProbeResult:
    probe: Probe
    roles: tuple[RoleCount, ...] = ()
    reject: RecordError | None = None
    fix: str | None = None
    examples: dict[str, EncodedExample] = dataclasses.field(default_factory=dict)
    prefix_breaks: list[int] = dataclasses.field(default_factory=list)  # message counts whose render is no prefix
    prompt_breaks: list[int] = dataclasses.field(default_factory=list)  # assistant messages the prompt does not start
    end_of_turn: list[list[str]] = dataclasses.field(default_factory=list)  # per assistant turn: trained end tokens

    @property
    def encoded(self) -> bool:
        return self.reject is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe": self.probe.name, "what": self.probe.what, "required": self.probe.required,
            "encoded": self.encoded,
            "reject": None if self.reject is None else {"reason": self.reject.reason, "message": self.reject.message},
            "fix": self.fix,
            "roles": {r.role: {"tokens": r.tokens, **{f"trained_{m}": r.trained[m] for m in MODES}}
                      for r in self.roles if r.tokens},
            "prefix_stable": not self.prefix_breaks, "prefix_breaks_at_messages": self.prefix_breaks,
            "generation_prompt_breaks_at_messages": self.prompt_breaks,
            "end_of_turn_trained": [bool(t) for t in self.end_of_turn],
        }


@dataclasses.dataclass
class TemplateReport:
    template: str
    tokenizer: str
    probes: list[ProbeResult]
    tokenizer_object: Any = dataclasses.field(default=None, repr=False)  # for token texts (``--show``)

    # -- findings ---------------------------------------------------------------------------------
    def fields(self) -> dict[str, list[str]]:
        """``rendered`` / ``dropped`` / ``changed``: field names (``dropped``: the template leaves them out,
        ``changed``: it renders a value differently or fails on it)."""
        dropped, changed = [], []
        for p in self.probes:
            if p.reject is None:
                continue
            if p.reject.reason == "unrendered_field":
                dropped += [f"{f} ({p.probe.name})" for f in [_field_named(p.reject.message)] if f]
            elif p.reject.reason == "template_error":
                changed.append(f"{_field_named(p.reject.message) or 'the conversation'} ({p.probe.name})")
        rendered = sorted({f for p in self.probes if p.encoded for f in _probe_fields(p.probe)})
        return {"rendered": rendered, "dropped": dropped, "changed": changed}

    def rejects_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.probes:
            if p.reject is not None:
                out[p.reject.reason] = out.get(p.reject.reason, 0) + 1
        return dict(sorted(out.items()))

    def invariant_violations(self) -> list[str]:
        return [f"{p.probe.name}: {p.reject.message}" for p in self.probes
                if p.reject is not None and p.reject.reason == INVARIANT_REASON]

    @property
    def prefix_stable(self) -> bool:
        return not any(p.prefix_breaks for p in self.probes)

    @property
    def prompts_start_turns(self) -> bool:
        return not any(p.prompt_breaks for p in self.probes)

    @property
    def end_of_turn_trained(self) -> bool | None:
        """Every assistant turn of every encoded probe has a trained end-of-turn token under ``it`` (``None``: no
        probe was encoded)."""
        turns = [t for p in self.probes if p.encoded for t in p.end_of_turn]
        return all(turns) if turns else None

    def end_of_turn_tokens(self) -> list[str]:
        return sorted({tok for p in self.probes for t in p.end_of_turn for tok in t})

    @property
    def supported(self) -> bool:
        return (all(p.encoded for p in self.probes if p.probe.required) and not self.invariant_violations()
                and bool(self.end_of_turn_trained))

    def to_dict(self) -> dict[str, Any]:
        return {"template": self.template, "tokenizer": self.tokenizer, "supported": self.supported,
                "probes": [p.to_dict() for p in self.probes], "fields": self.fields(),
                "prefix_stable": self.prefix_stable, "generation_prompts_start_turns": self.prompts_start_turns,
                "end_of_turn": {"trained": self.end_of_turn_trained, "tokens": self.end_of_turn_tokens()},
                "invariant_violations": self.invariant_violations(), "rejects_by_reason": self.rejects_by_reason()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)


# ------------------------------------------------------------------------------------------------- analysis
def check_template(tokenizer: Any, chat_template: ChatTemplate | str | None = None, *,
                   chat_template_kwargs: Mapping[str, Any] | None = None, allow_unrendered: Sequence[str] = (),
                   format_options: FormatOptions | None = None, tokenizer_name: str = "",
                   probes: Sequence[Probe] = PROBES) -> TemplateReport:
    """Encode every probe under ``it`` and ``im`` and analyse the template (see the module docstring)."""
    encoders = {mode: Encoder(tokenizer, chat_template=chat_template, policy=WeightPolicy.preset(mode),
                              chat_template_kwargs=chat_template_kwargs, allow_unrendered=allow_unrendered,
                              format_options=format_options)
                for mode in MODES}
    template = encoders["it"].template
    render = _Renderer(template, tokenizer, chat_template_kwargs or {}, format_options or FormatOptions())
    results = [_run_probe(p, encoders, render) for p in probes]
    return TemplateReport(template.name, tokenizer_name or getattr(tokenizer, "name_or_path", "") or "", results,
                          tokenizer)


def _run_probe(probe: Probe, encoders: Mapping[str, Encoder], render: "_Renderer") -> ProbeResult:
    result = ProbeResult(probe)
    for mode, encoder in encoders.items():
        out = encoder.encode_batch([json.loads(json.dumps(probe.record))])[0]
        if isinstance(out, RecordError):
            result.reject, result.fix = out, fix_for(probe, out)
            result.examples.clear()
            break
        result.examples[mode] = out
    if result.encoded:
        result.roles = _role_counts(result.examples)
        result.end_of_turn = _end_of_turn(result.examples["it"], encoders["it"])
    result.prefix_breaks, result.prompt_breaks = render.stability(probe.record)
    return result


def _role_counts(examples: Mapping[str, EncodedExample]) -> tuple[RoleCount, ...]:
    roles = examples["it"].roles
    rows = []
    for code, label in enumerate(ROLE_LABELS):
        at = roles == code
        rows.append(RoleCount(label, int(at.sum()),
                              {m: int((examples[m].loss_weights[examples[m].roles == code] > 0).sum()) for m in MODES}))
    return tuple(rows)


def _end_of_turn(example: EncodedExample, encoder: Encoder) -> list[list[str]]:
    """Per assistant turn (a run of output tokens ended by ``assistant_end`` or the end), the trained
    ``assistant_end`` tokens: an empty list is a turn whose end a model would never learn."""
    end_code = ROLE_LABELS.index("assistant_end")
    output = {ROLE_LABELS.index(r) for r in ("assistant", "reasoning", "tool_call")}
    roles, weights, ids = example.roles.tolist(), example.loss_weights.tolist(), example.input_ids.tolist()
    turns: list[list[str]] = []
    k = 0
    while k < len(roles):
        if roles[k] in output:
            while k < len(roles) and roles[k] in output:
                k += 1
            ends = []
            while k < len(roles) and roles[k] == end_code:
                if weights[k] > 0:
                    ends.append(encoder.tokens([ids[k]])[0])
                k += 1
            turns.append(ends)
        else:
            k += 1
    return turns


def fix_for(probe: Probe, error: RecordError) -> str | None:
    """The flag that accepts records like ``probe`` rejected with ``error``, where one exists."""
    if error.reason == "unrendered_field":
        field = _field_named(error.message)
        return f"--allow-unrendered {field}" if field else "--allow-unrendered FIELD"
    if error.reason == "special_token_in_content":
        return "--allow-special-tokens"
    if error.reason == "template_error":
        if probe.name == "inline_reasoning":
            return "--split-inline-reasoning"
        if probe.record.get("tools"):
            return "--chat-template chatml_tools"
    return None


_FIELD = re.compile(r"field '([A-Za-z_]\w*)")
_CONTENT = re.compile(r"\bcontent of message \d+")


def _field_named(message: str) -> str | None:
    """The record field a reject message names (``field 'tool_calls[0].function.name'`` -> ``tool_calls``)."""
    match = _FIELD.search(message)
    if match:
        return match[1]
    return "content" if _CONTENT.search(message) else None


#: the record fields the probes exercise (a probe's ``tool_call_id`` / ``name`` are not required to be rendered)
DATA_FIELDS = ("content", "tools", "tool_calls", "reasoning_content")


def _probe_fields(probe: Probe) -> set[str]:
    fields = {"tools"} if probe.record.get("tools") else set()
    for msg in probe.record["messages"]:
        fields |= {k for k in msg if k in DATA_FIELDS}
    return fields


class _Renderer:
    """Renders a probe's messages as the encoder gets them, for the prefix and generation-prompt checks."""

    def __init__(self, template: ChatTemplate, tokenizer: Any, kwargs: Mapping[str, Any], options: FormatOptions):
        self.template, self.options = template, options
        self.variables = {**special_tokens_for_render(tokenizer), **dict(kwargs)}

    def stability(self, record: Mapping[str, Any]) -> tuple[list[int], list[int]]:
        """``(prefix breaks, prompt breaks)``: the message counts n < len whose render is not a prefix of the whole
        (n just after an assistant turn), and the assistant messages i whose generation prompt (render of the first
        i messages with ``add_generation_prompt``) does not start the render of the first i + 1."""
        try:
            conv = read_conversation(json.loads(json.dumps(record)), self.options)
        except RecordError:
            return [], []
        msgs, tools = conv.messages, conv.tools

        def render(n: int, prompt: bool = False) -> str | None:
            try:
                return self.template.render(msgs[:n], self.variables, prompt, tools=tools, documents=conv.documents)
            except RecordError:
                return None

        whole = render(len(msgs))
        prefix_breaks, prompt_breaks = [], []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            if i + 1 < len(msgs):
                head = render(i + 1)
                if whole is not None and head is not None and not whole.startswith(head):
                    prefix_breaks.append(i + 1)
            prompt, turn = render(i, True), render(i + 1)
            if i and prompt is not None and turn is not None and not turn.startswith(prompt):
                prompt_breaks.append(i)
        return prefix_breaks, prompt_breaks


# ------------------------------------------------------------------------------------------------- text
def _chip(label: str, text: str | None = None) -> Any:
    """``text`` on the role's background colour, as ``inspect`` shows roles."""
    from rich.text import Text

    from .render import TERMINAL_BG, terminal_fg

    fg, bg = terminal_fg(1.0), TERMINAL_BG[label]
    return Text(f" {text or label} ", style=f"rgb({fg[0]},{fg[1]},{fg[2]}) on rgb({bg[0]},{bg[1]},{bg[2]})")


def _trained_line(result: ProbeResult, mode: str) -> Any:
    from rich.text import Text

    line = Text(f"    {mode} trains ")
    trained = [r for r in result.roles if r.trained[mode]]
    for r in trained:
        line.append_text(_chip(r.role, f"{r.role} {r.trained[mode]}"))
        line.append(" ")
    if not trained:
        line.append("nothing")
    total = sum(r.tokens for r in result.roles)
    line.append(f"({sum(r.trained[mode] for r in result.roles)} of {total} tokens)")
    return line


def _yes_no(ok: bool | None) -> str:
    return {True: "yes", False: "no", None: "unknown (no probe encoded)"}[ok]


def report_renderables(report: TemplateReport) -> list[Any]:
    """rich renderables of the report: per probe its trained roles (the ``inspect`` role colours) or its reject,
    then the findings and the verdict."""
    from rich.text import Text

    out: list[Any] = [Text(f"chat template {report.template!r}" + (f", tokenizer {report.tokenizer}"
                                                                 if report.tokenizer else ""), style="bold")]
    for p in report.probes:
        head = Text(f"{p.probe.name}", style="bold")
        head.append(f": {p.probe.what}" + ("" if p.probe.required else " (advisory)"), style="")
        out.append(head)
        if p.reject is None:
            out += [_trained_line(p, m) for m in MODES]
        else:
            line = Text(f"    rejected [{p.reject.reason}] {p.reject.message}".splitlines()[0])
            out.append(line)
            if p.fix:
                out.append(Text(f"    accept such records with {p.fix}"))
    fields = report.fields()
    out.append(Text(""))
    out.append(Text(f"fields rendered: {', '.join(fields['rendered']) or 'none'}"))
    out.append(Text(f"fields dropped: {', '.join(fields['dropped']) or 'none'}"))
    out.append(Text(f"fields changed or failing: {', '.join(fields['changed']) or 'none'}"))
    breaks = [f"{p.probe.name} after {', '.join(map(str, p.prefix_breaks))} messages"
              for p in report.probes if p.prefix_breaks]
    out.append(Text(f"prefix-stable renders: {_yes_no(report.prefix_stable)}"
                    + (f" (not a prefix of the whole: {'; '.join(breaks)})" if breaks else "")))
    breaks = [f"{p.probe.name} message {', '.join(map(str, p.prompt_breaks))}"
              for p in report.probes if p.prompt_breaks]
    out.append(Text(f"generation prompt starts each assistant turn: {_yes_no(report.prompts_start_turns)}"
                    + (f" (not at: {'; '.join(breaks)})" if breaks else "")))
    tokens = ", ".join(repr(t) for t in report.end_of_turn_tokens())
    out.append(Text(f"end-of-turn token trained (it): {_yes_no(report.end_of_turn_trained)}"
                    + (f" ({tokens})" if tokens else "")))
    violations = report.invariant_violations()
    out.append(Text(f"invariant violations: {'; '.join(violations) if violations else 'none'}"))
    rejects = report.rejects_by_reason()
    out.append(Text(f"rejects by reason: {', '.join(f'{k} {v}' for k, v in rejects.items()) or 'none'}"))
    required = [p for p in report.probes if p.probe.required]
    failed = sum(not p.encoded for p in required)
    verdict = "fully supported" if report.supported else (
        f"not fully supported ({failed} of {len(required)} required probes rejected"
        + ("" if report.end_of_turn_trained else ", end of turn not trained")
        + (f", {len(violations)} invariant violations" if violations else "") + ")")
    out.append(Text(f"verdict: {verdict}", style="bold"))
    return out


def render_report(report: TemplateReport, console: Any = None) -> None:
    """Print the report to ``console`` (a ``rich.console.Console``; a default one when None)."""
    from rich.console import Console

    console = console or Console()
    for item in report_renderables(report):
        console.print(item, soft_wrap=True)  # one line per finding, never wrapped (greppable, stable in logs)
