"""`check_template` (the core of `im-data check-template`) on every stored real template, and its verdicts value by
value on a few: a fully supported one, one that drops a field, one whose end of turn is not trained.

Each finding is checked against what ``transformers``' own ``apply_chat_template`` renders (never against the span
finder): a probe the template raises on is rejected; a probe whose reasoning the render leaves out is rejected as
``unrendered_field`` with the flag that accepts it; a render of a conversation's first turns that does not start the
whole render is a prefix break, and only those are."""

from __future__ import annotations

import json

import pytest

from im_data import WeightPolicy
from im_data.check import PROBES, Probe, check_template, report_renderables
from im_data.roles import ROLE_LABELS
from im_data.templates import ChatTemplate

import real_tokenizers
from oracle import canonical_messages

pytestmark = pytest.mark.real_templates

FAMILIES = list(real_tokenizers.families())
_REPORTS: dict = {}


def report(family: str, template: str | None = None, **kwargs):
    key = (family, template, json.dumps(kwargs, sort_keys=True))
    if key not in _REPORTS:
        source = ChatTemplate.builtin(template) if template else ChatTemplate(
            family, real_tokenizers.template_source(family))
        _REPORTS[key] = check_template(real_tokenizers.family_tokenizer(family), source, **kwargs)
    return _REPORTS[key]


def _render(tok, source: str, record, n: int | None = None, prompt: bool = False) -> str:
    messages = canonical_messages(record["messages"])[:n]
    return tok.apply_chat_template(messages, tools=record.get("tools"), chat_template=source, tokenize=False,
                                   add_generation_prompt=prompt)


def _reasonings(probe: Probe) -> list[str]:
    return [m["reasoning_content"] for m in probe.record["messages"] if m.get("reasoning_content")]


@pytest.mark.parametrize("family", FAMILIES)
def test_check_template_on_every_real_template(family):
    rep = report(family)
    tok, source = real_tokenizers.family_tokenizer(family), real_tokenizers.template_source(family)
    data = json.loads(rep.to_json())
    assert [p["probe"] for p in data["probes"]] == [p.name for p in PROBES]
    for result in rep.probes:
        probe = result.probe
        try:
            text = _render(tok, source, probe.record)
        except Exception:  # noqa: BLE001 - the template raises: the probe must be rejected
            text = None
        if text is None:
            assert result.reject is not None and result.reject.reason == "template_error", (family, probe.name)
            assert not result.prefix_breaks
            continue
        if any(r not in text for r in _reasonings(probe)):
            assert result.reject is not None, (family, probe.name)
            if result.reject.reason == "unrendered_field":
                assert result.fix == "--allow-unrendered reasoning_content", (family, probe.name, result.fix)
        if result.encoded:
            _check_counts(family, result)
        # prefix stability, from transformers' renders
        messages = probe.record["messages"]
        want = [i + 1 for i, m in enumerate(messages[:-1]) if m["role"] == "assistant"
                and not text.startswith(_render(tok, source, probe.record, i + 1))]
        assert result.prefix_breaks == want, (family, probe.name)
    required = [p for p in rep.probes if p.probe.required]
    assert rep.supported == (all(p.encoded for p in required) and bool(rep.end_of_turn_trained)
                             and not rep.invariant_violations())
    assert data["supported"] is rep.supported
    for p in rep.probes:
        if p.reject is not None and p.reject.reason == "unrendered_field":
            assert p.fix.startswith("--allow-unrendered ") and p.fix.split()[1] in p.reject.message


def _check_counts(family: str, result) -> None:
    """Per role: tokens add up to the example; each preset trains exactly the roles it weighs, all their tokens."""
    example = result.examples["it"]
    assert sum(r.tokens for r in result.roles) == len(example)
    for mode in ("it", "im"):
        policy = WeightPolicy.preset(mode)
        for row in result.roles:
            want = row.tokens if policy.weight(row.role) > 0 else 0
            assert row.trained[mode] == want, (family, result.probe.name, mode, row)


# ----------------------------------------------------------------------------------------- value by value
def test_a_fully_supported_template():
    """The built-in chatml_tools with Qwen2.5's tokens: every probe encoded, nothing dropped, stable renders,
    <|im_end|> trained at the end of every assistant turn; token counts per role are those of the contents."""
    rep = report("qwen2_5", "chatml_tools")
    tok = real_tokenizers.family_tokenizer("qwen2_5")
    assert rep.supported
    assert all(p.encoded for p in rep.probes)
    assert rep.fields() == {"rendered": ["content", "reasoning_content", "tool_calls", "tools"], "dropped": [],
                            "changed": []}
    assert rep.prefix_stable and rep.prompts_start_turns
    assert rep.end_of_turn_trained is True and rep.end_of_turn_tokens() == ["<|im_end|>"]
    assert rep.rejects_by_reason() == {} and rep.invariant_violations() == []
    by_name = {p.probe.name: p for p in rep.probes}
    assert [len(t) for t in by_name["multi_turn"].end_of_turn] == [1, 1, 1]
    system = {r.role: r for r in by_name["system"].roles}
    n = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    assert system["system"].tokens == n("You are terse.") and system["user"].tokens == n("Capital of France?")
    assert system["assistant"].tokens == n("Paris.") and system["assistant_end"].tokens == 1
    assert {r.role: r.trained["it"] for r in system.values() if r.trained["it"]} == {
        "assistant": n("Paris."), "assistant_end": 1}
    assert {r.role: r.trained["im"] for r in system.values() if r.trained["im"]} == {
        "system": n("You are terse."), "user": n("Capital of France?"), "assistant": n("Paris."), "assistant_end": 1}
    assert json.loads(rep.to_json())["supported"] is True


def test_a_template_that_drops_a_field():
    """Qwen2.5's own template renders tools and calls but no reasoning: both reasoning probes are rejected as
    unrendered_field, and --allow-unrendered reasoning_content makes the template fully supported."""
    rep = report("qwen2_5")
    rejected = {p.probe.name: p for p in rep.probes if not p.encoded}
    assert sorted(rejected) == ["reasoning_earlier", "reasoning_last"]
    for p in rejected.values():
        assert p.reject.reason == "unrendered_field" and "'reasoning_content'" in p.reject.message
        assert p.fix == "--allow-unrendered reasoning_content"
    assert rep.fields()["dropped"] == ["reasoning_content (reasoning_last)", "reasoning_content (reasoning_earlier)"]
    assert rep.fields()["rendered"] == ["content", "tool_calls", "tools"]
    assert rep.rejects_by_reason() == {"unrendered_field": 2}
    assert not rep.supported and rep.end_of_turn_trained is True and rep.prefix_stable
    allowed = report("qwen2_5", allow_unrendered=("reasoning_content",))
    assert allowed.supported and all(p.encoded for p in allowed.probes)


def test_a_template_that_rewrites_earlier_turns():
    """Qwen3 drops the reasoning of turns before the last user message: the render of the first two messages is
    not a prefix of the whole, the earlier reasoning is unrendered, and inline <think> content is changed by the
    template (advisory: --split-inline-reasoning accepts it)."""
    rep = report("qwen3")
    by_name = {p.probe.name: p for p in rep.probes}
    assert by_name["reasoning_earlier"].prefix_breaks == [2]
    assert not rep.prefix_stable
    assert by_name["reasoning_earlier"].reject.reason == "unrendered_field"
    assert by_name["reasoning_last"].encoded
    assert by_name["inline_reasoning"].fix == "--split-inline-reasoning"
    assert sorted(p.probe.name for p in rep.probes if not p.encoded) == ["inline_reasoning", "reasoning_earlier"]
    assert report("qwen3", allow_unrendered=("reasoning_content",)).supported  # inline_reasoning is advisory


def test_a_template_whose_end_of_turn_is_not_trained():
    """GLM-4 writes no end-of-turn token after an assistant turn: the last turn of every probe ends untrained, so
    the template is not supported whatever else holds."""
    rep = report("glm4")
    assert rep.end_of_turn_trained is False
    for p in rep.probes:
        if p.encoded:
            assert p.end_of_turn[-1] == [], p.probe.name
    assert not rep.supported
    text = "\n".join(str(x) for x in report_renderables(rep))
    assert "end-of-turn token trained (it): no" in text and "end of turn not trained" in text


def test_role_labels_cover_the_report():
    rep = report("qwen2_5", "chatml_tools")
    assert [r.role for r in rep.probes[0].roles] == list(ROLE_LABELS)
