"""Weight policies (presets, overrides, serialisation, fingerprints, validation), their effect on encoded
examples (float32 weights, labels, last_assistant_only), and the mergeable LengthStats accumulator."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from im_data import Encoder, LengthStats, WeightPolicy, parse_weight_overrides
from im_data.roles import NUM_ROLES, OUTPUT_SIDE_ROLES, ROLE_LABELS, ROLE_TABLE, Role, roles_on_side


def m(role, content):
    return {"role": role, "content": content}


def by_side(template, instruction, output):
    """Expected weights in role-code order, read from the role table's ``side`` column."""
    side = {"template": template, "instruction": instruction, "output": output}
    return [side[spec.side] for spec in ROLE_TABLE]


def by_name(**values):
    """A per-role vector in role-code order: the named roles get their value, every other role 0."""
    assert set(values) <= set(ROLE_LABELS)
    return [values.get(label, 0) for label in ROLE_LABELS]


# --- presets -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy, weights, name", [
    (WeightPolicy.preset("it"), by_side(0, 0, 1), "it"),
    (WeightPolicy.preset("im"), by_side(0, 1, 1), "im"),
    (WeightPolicy.wit(0.1, 1.0), by_side(0, 0.1, 1), "wit"),
    (WeightPolicy.preset("wit", prompt_weight=0.25, response_weight=0.75), by_side(0, 0.25, 0.75), "wit"),
    (WeightPolicy.preset("wit", prompt_weight=0.3), by_side(0, 0.3, 1), "wit"),
    (WeightPolicy(), by_side(0, 0, 1), "custom"),
])
def test_presets(policy, weights, name):
    arr = policy.weights_array()
    assert arr.dtype == np.float32
    assert arr.tolist() == np.array(weights, dtype=np.float32).tolist()
    assert policy.name == name
    assert [policy.weight(label) for label in ROLE_LABELS] == [float(w) for w in weights]
    assert [policy.weight(Role(i)) for i in range(NUM_ROLES)] == [float(w) for w in weights]


def test_preset_errors():
    with pytest.raises(ValueError, match="prompt weight"):
        WeightPolicy.preset("wit")
    with pytest.raises(ValueError, match="unknown mode"):
        WeightPolicy.preset("sft")


def test_last_assistant_only_flag_on_presets():
    for mode in ("it", "im"):
        assert WeightPolicy.preset(mode, last_assistant_only=True).last_assistant_only is True
    assert WeightPolicy.preset("wit", prompt_weight=0.1, last_assistant_only=True).last_assistant_only is True


def test_with_weights_overrides():
    base = WeightPolicy.preset("im")
    p = base.with_weights({"system": 0.0, "tool": 0.5})
    assert p.weights_array().tolist() == by_name(user=1, tool=0.5, assistant=1, assistant_end=1, reasoning=1,
                                                 tool_call=1)
    q = WeightPolicy.preset("it").with_weights({"reasoning": 0.5, "tool_call": 0.0})
    assert q.weights_array().tolist() == by_name(assistant=1, assistant_end=1, reasoning=0.5)
    assert p.name == "custom" and base.name == "im" and base.system == 1.0  # frozen original untouched
    assert base.with_weights({}) is base
    with pytest.raises(ValueError, match="unknown role 'bot'"):
        base.with_weights({"bot": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        base.with_weights({"user": -0.5})
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.user = 0.0  # type: ignore[misc]


def test_parse_weight_overrides():
    assert parse_weight_overrides(["user=0.5", " system = 0"]) == {"user": 0.5, "system": 0.0}
    assert parse_weight_overrides(None) == {}
    assert parse_weight_overrides(["reasoning=0.5", "tool_call=0"]) == {"reasoning": 0.5, "tool_call": 0.0}
    with pytest.raises(ValueError, match="ROLE=W"):
        parse_weight_overrides(["user"])
    with pytest.raises(ValueError, match="unknown role"):
        parse_weight_overrides(["bot=1"])


# --- serialisation and fingerprint ---------------------------------------------------------------------------
IM_JSON = ('{"assistant":1.0,"assistant_end":1.0,"last_assistant_only":false,"name":"im","reasoning":1.0,'
           '"system":1.0,"template":0.0,"tool":1.0,"tool_call":1.0,"user":1.0,"version":2}')
IT_JSON = ('{"assistant":1.0,"assistant_end":1.0,"last_assistant_only":false,"name":"it","reasoning":1.0,'
           '"system":0.0,"template":0.0,"tool":0.0,"tool_call":1.0,"user":0.0,"version":2}')
# version 1 manifests (written before reasoning/tool_call existed) as they were stored
IM_JSON_V1 = ('{"assistant":1.0,"assistant_end":1.0,"last_assistant_only":false,"name":"im","system":1.0,'
              '"template":0.0,"tool":1.0,"user":1.0,"version":1}')
WIT_JSON_V1 = ('{"assistant":0.9,"assistant_end":0.8,"last_assistant_only":true,"name":"wit","system":0.1,'
               '"template":0.0,"tool":0.1,"user":0.1,"version":1}')


def test_json_is_canonical_and_fingerprint_is_stable():
    p = WeightPolicy.preset("im")
    assert p.to_json() == IM_JSON
    # the digests of the literals above, computed once with sha256 (fingerprints must not drift across releases)
    assert p.fingerprint == hashlib.sha256(IM_JSON.encode()).hexdigest()[:16] == "6a3962de961c853b"
    assert WeightPolicy.preset("it").to_json() == IT_JSON
    assert WeightPolicy.preset("it").fingerprint == hashlib.sha256(IT_JSON.encode()).hexdigest()[:16]
    assert WeightPolicy.preset("im").fingerprint == p.fingerprint  # equal policies, equal fingerprints


def test_version_1_policies_stay_readable():
    im = WeightPolicy.from_json(IM_JSON_V1)
    assert im == WeightPolicy.preset("im") and im.version == 2
    wit = WeightPolicy.from_json(WIT_JSON_V1)
    # v1 had no reasoning/tool_call roles: they were part of the assistant output, so they take its weight
    assert wit.weights_array().tolist() == np.array(
        by_name(system=0.1, user=0.1, tool=0.1, assistant=0.9, assistant_end=0.8, reasoning=0.9, tool_call=0.9),
        dtype=np.float32).tolist()
    assert wit.last_assistant_only is True and wit.name == "wit"
    with pytest.raises(ValueError, match="unsupported weight policy version 3"):
        WeightPolicy.from_dict({**json.loads(IM_JSON), "version": 3})


@pytest.mark.parametrize("policy", [
    WeightPolicy.preset("it"), WeightPolicy.preset("im", last_assistant_only=True), WeightPolicy.wit(0.1, 0.9),
    WeightPolicy(template=0.05, system=0.3, user=1e-7, tool=2.5, assistant=1 / 3, assistant_end=0.0,
                 reasoning=0.125, tool_call=4.0),
])
def test_json_round_trip(policy):
    back = WeightPolicy.from_json(policy.to_json())
    assert back == policy and back.fingerprint == policy.fingerprint
    assert WeightPolicy.from_dict(policy.to_dict()) == policy
    assert back.weights_array().tobytes() == policy.weights_array().tobytes()


@pytest.mark.parametrize("field, value", [
    *[(label, 0.5) for label in ROLE_LABELS], ("last_assistant_only", True), ("name", "im2"),
])
def test_fingerprint_changes_with_every_field(field, value):
    p = WeightPolicy.preset("im")
    q = dataclasses.replace(p, **{field: value})
    assert q.fingerprint != p.fingerprint
    assert len(q.fingerprint) == 16 and int(q.fingerprint, 16) >= 0


def test_fingerprint_sees_tiny_weight_changes():
    assert WeightPolicy.wit(0.1).fingerprint != WeightPolicy.wit(0.1 + 1e-12).fingerprint


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"user": -0.1}, ValueError, "'user' must be finite and >= 0"),
    ({"assistant": float("nan")}, ValueError, "'assistant' must be finite"),
    ({"system": float("inf")}, ValueError, "'system' must be finite"),
    ({"tool": True}, TypeError, "'tool' must be a number"),
    ({"user": "0.5"}, TypeError, "'user' must be a number"),
    ({"user": None}, TypeError, "'user' must be a number"),
    ({label: 0.0 for label in ROLE_LABELS}, ValueError, "every role weight 0"),
    ({"last_assistant_only": 1}, TypeError, "last_assistant_only must be a bool"),
    ({"version": 1}, ValueError, "unsupported weight policy version 1"),
    ({"version": 3}, ValueError, "unsupported weight policy version 3"),
])
def test_validation(kwargs, exc, words):
    with pytest.raises(exc) as info:
        WeightPolicy(**kwargs)
    assert words in str(info.value)


def test_only_template_weight_is_allowed():
    p = WeightPolicy(**{label: 0.0 for label in roles_on_side("output")}, template=1.0)
    assert p.weights_array().tolist() == by_name(template=1)


@pytest.mark.parametrize("label", ROLE_LABELS)
def test_any_single_role_may_be_the_only_trained_one(label):
    p = WeightPolicy(**{**{r: 0.0 for r in ROLE_LABELS}, label: 1.0})
    assert p.weights_array().tolist() == by_name(**{label: 1})


def test_is_binary():
    assert WeightPolicy.preset("it").is_binary and WeightPolicy.preset("im").is_binary
    assert not WeightPolicy.wit(0.1).is_binary


# --- policies applied to examples ----------------------------------------------------------------------------
CONV = {"messages": [m("system", "Be brief."), m("user", "Hi there"), m("assistant", "Hello!"), m("user", "More?"),
                     m("tool", "data"), m("assistant", "Goodbye now.")]}


@pytest.mark.parametrize("prompt", [0.1, 0.3, 1 / 3, 1e-6, 0.7])
def test_float_weights_stay_float32(default_tokenizer, prompt):
    enc = Encoder(default_tokenizer, chat_template="tulu", policy=WeightPolicy.wit(prompt, 0.9))
    ex = enc.encode(CONV)
    assert ex.loss_weights.dtype == np.float32
    roles = ex.roles
    instr = np.isin(roles, [Role.SYSTEM, Role.USER, Role.TOOL])
    assert instr.sum() > 0
    assert (ex.loss_weights[instr] == np.float32(prompt)).all()  # exactly 0.1f, not rounded to 0 or 1
    assert (ex.loss_weights[np.isin(roles, OUTPUT_SIDE_ROLES)] == np.float32(0.9)).all()
    assert (ex.loss_weights[roles == Role.TEMPLATE] == 0).all()
    # labels: input_ids where weight > 0, -100 exactly where weight == 0
    assert ex.labels.dtype == np.int32
    assert ex.labels.tolist() == [i if w > 0 else -100 for i, w in zip(ex.input_ids.tolist(), ex.loss_weights)]
    assert ((ex.labels == -100) == (ex.loss_weights == 0)).all()
    # weight mass per role is the exact sum of the float32 weights
    for r in range(NUM_ROLES):
        assert ex.weight_mass[r] == pytest.approx(float(ex.loss_weights[roles == r].astype(np.float64).sum()),
                                                  rel=0, abs=0)


def test_labels_under_it_and_im(default_tokenizer):
    output = {spec.code for spec in ROLE_TABLE if spec.side == "output"}
    instruction = {spec.code for spec in ROLE_TABLE if spec.side == "instruction"}
    for mode, trained in (("it", output), ("im", output | instruction)):
        ex = Encoder(default_tokenizer, chat_template="chatml", policy=WeightPolicy.preset(mode)).encode(CONV)
        want = [i if r in trained else -100 for i, r in zip(ex.input_ids.tolist(), ex.roles.tolist())]
        assert ex.labels.tolist() == want


def test_custom_overrides_applied(default_tokenizer):
    pol = WeightPolicy.preset("im").with_weights({"system": 0.0, "template": 0.25, "assistant_end": 2.0})
    ex = Encoder(default_tokenizer, chat_template="tulu", policy=pol).encode(CONV)
    table = dict(enumerate(by_name(template=0.25, user=1.0, tool=1.0, assistant=1.0, assistant_end=2.0,
                                   reasoning=1.0, tool_call=1.0)))
    assert ex.loss_weights.tolist() == [table[r] for r in ex.roles.tolist()]
    assert ex.weight_mass.tolist() == [table[r] * c for r, c in enumerate(ex.role_token_counts.tolist())]


@pytest.mark.parametrize("template", ["tulu", "chatml", "llama3", "zephyr", "alpaca", "gemma", "mistral", "llama2"])
@pytest.mark.parametrize("mode", ["it", "im"])
def test_last_assistant_only(default_tokenizer, template, mode):
    conv = {"messages": [m("user", "Hi there"), m("assistant", "Hello!"), m("user", "More?"),
                         m("assistant", "It is fine."), m("user", "Last?"), m("assistant", "It is over.")]}
    full = Encoder(default_tokenizer, chat_template=template, policy=WeightPolicy.preset(mode)).encode(conv)
    last = Encoder(default_tokenizer, chat_template=template,
                   policy=WeightPolicy.preset(mode, last_assistant_only=True)).encode(conv)
    assert last.input_ids.tolist() == full.input_ids.tolist() and last.roles.tolist() == full.roles.tolist()
    roles = full.roles.tolist()
    # index of the first assistant token of the last assistant turn
    asst = [i for i, r in enumerate(roles) if r == Role.ASSISTANT]
    runs_start = [i for i in asst if i - 1 not in asst]
    last_start = runs_start[-1]
    assert len(runs_start) == 3
    for i, r in enumerate(roles):
        if r in (Role.ASSISTANT, Role.ASSISTANT_END):
            assert last.loss_weights[i] == (1.0 if i >= last_start else 0.0), (i, r)
        else:  # instruction roles keep their weights, template stays 0
            assert last.loss_weights[i] == full.loss_weights[i]
    # the last turn keeps every one of its assistant and assistant_end tokens
    assert last.loss_weights[last_start:].tolist() == full.loss_weights[last_start:].tolist()


# --- LengthStats ---------------------------------------------------------------------------------------------
def summary(instr, out, tmpl=3, truncated=False, counts=None, mass=None):
    return {"num_instruction_tokens": instr, "num_output_tokens": out, "num_template_tokens": tmpl,
            "truncated": truncated,
            "role_token_counts": counts or by_name(template=tmpl, user=instr, assistant=out, assistant_end=1),
            "weight_mass": mass or by_name(user=float(instr), assistant=float(out), assistant_end=1.0)}


def test_dataset_ratio_is_sum_over_sum_not_mean_of_ratios():
    s = LengthStats()
    for instr, out in ((100, 10), (10, 100), (30, 30)):
        s.add(summary(instr, out))
    mean_of_ratios = (10 + 0.1 + 1) / 3  # 3.7
    assert s.dataset_ratio == 140 / 140 == 1.0
    assert abs(s.dataset_ratio - mean_of_ratios) > 2
    d = s.to_dict()
    assert d["dataset_ratio"] == 1.0
    assert d["instruction_tokens"]["mean"] / d["output_tokens"]["mean"] == 1.0
    assert d["instruction_tokens"] == {"sum": 140, "min": 10, "max": 100, "mean": 140 / 3,
                                       "median": d["instruction_tokens"]["median"]}
    assert d["ratio_min"] == 0.1 and d["ratio_max"] == 10.0


def test_empty_stats():
    s = LengthStats()
    assert s.dataset_ratio is None
    d = s.to_dict()
    assert d["count"] == 0 and d["dataset_ratio"] is None
    assert all(v is None for v in d["ratio_quantiles"].values())
    assert LengthStats.from_dict(d) == s


def test_stats_from_encoded_examples(default_tokenizer):
    enc = Encoder(default_tokenizer, chat_template="tulu", policy=WeightPolicy.preset("im"))
    recs = [CONV, {"messages": [m("user", "a b c d e f"), m("assistant", "ok")]}]
    exs = enc.encode_batch(recs)
    s = LengthStats()
    for ex in exs:
        s.add(ex.summary())
    assert s.sums["instruction"] == sum(ex.num_instruction_tokens for ex in exs)
    assert s.sums["output"] == sum(ex.num_output_tokens for ex in exs)
    assert s.dataset_ratio == s.sums["instruction"] / s.sums["output"]
    assert s.role_tokens == (exs[0].role_token_counts + exs[1].role_token_counts).tolist()
    # instruction = content of system/user/tool; output = content of assistant (CONV: tool and system count)
    rc = exs[0].role_token_counts
    content = {side: [spec.code for spec in ROLE_TABLE if spec.side == side and spec.content]
               for side in ("instruction", "output")}
    assert content == {"instruction": [Role.SYSTEM, Role.USER, Role.TOOL],
                       "output": [Role.ASSISTANT, Role.REASONING, Role.TOOL_CALL]}
    assert exs[0].num_instruction_tokens == rc[content["instruction"]].sum()
    assert exs[0].num_output_tokens == rc[content["output"]].sum()
    assert exs[0].num_template_tokens == rc[Role.TEMPLATE] + rc[Role.ASSISTANT_END]
    d = s.to_dict()
    assert d["weight_mass_per_role"]["template"] == 0.0
    assert d["weight_mass_per_role"]["user"] == float(rc[2] + exs[1].role_token_counts[2])
    share = d["weight_mass_share"]
    assert share["it"]["user"] == 0.0 and sum(share["it"].values()) == pytest.approx(1.0)
    assert sum(share["im"].values()) == pytest.approx(1.0) and share["im"]["template"] == 0.0


summaries = st.builds(
    summary,
    st.integers(0, 5000), st.integers(0, 5000), st.integers(0, 200), st.booleans(),
    st.lists(st.integers(0, 1000), min_size=NUM_ROLES, max_size=NUM_ROLES),
    st.lists(st.sampled_from([0.0, 0.1, 0.25, 1 / 3, 1.0, 7.5, 1e-7]), min_size=NUM_ROLES, max_size=NUM_ROLES),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(summaries, min_size=0, max_size=30), st.randoms(use_true_random=False))
def test_merge_is_exact_and_order_independent(items, rnd):
    whole = LengthStats()
    for it in items:
        whole.add(it)
    # random partition into bundles, merged in a random order and tree shape
    shuffled = items[:]
    rnd.shuffle(shuffled)
    parts, i = [], 0
    while i < len(shuffled):
        k = rnd.randint(1, 5)
        p = LengthStats()
        for it in shuffled[i:i + k]:
            p.add(it)
        parts.append(p)
        i += k
    rnd.shuffle(parts)
    while len(parts) > 1:
        a = parts.pop(rnd.randrange(len(parts)))
        b = parts.pop(rnd.randrange(len(parts)))
        parts.append(a.merge(b))
    merged = parts[0] if parts else LengthStats()
    assert merged.to_dict() == whole.to_dict()
    assert merged == whole
    # the round trip through JSON-able dicts is exact and still merges exactly
    back = LengthStats.from_dict(whole.to_dict())
    assert back == whole
    assert LengthStats.merged([back, LengthStats()]) == whole


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 10_000)), min_size=1, max_size=40))
def test_quantiles_monotone_and_in_range(pairs):
    s = LengthStats()
    for instr, out in pairs:
        s.add(summary(instr, out))
    q = s.ratio_quantiles()
    vals = [q[k] for k in ("p05", "p25", "p50", "p75", "p95")]
    assert all(v is not None for v in vals)
    assert vals == sorted(vals)
    lo, hi = min(i / o for i, o in pairs), max(i / o for i, o in pairs)
    assert all(lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9) for v in vals)
    assert s.dataset_ratio == sum(i for i, _ in pairs) / sum(o for _, o in pairs)
    med = s.median("instruction")
    # (log-interpolation can land one ulp outside the range: allow 1e-9 relative)
    assert min(i for i, _ in pairs) * (1 - 1e-9) <= med <= max(i for i, _ in pairs) * (1 + 1e-9)
    hist = s.to_dict()["ratio_histogram"]
    assert sum(hist["counts"]) + hist["underflow"] + hist["overflow"] == len(pairs)


def test_weight_mass_merges_exactly_with_tenths():
    """0.1 * 10 bundles merged in any order is the same number (exact integer units, no float drift)."""
    a, b = LengthStats(), LengthStats()
    for _ in range(10):
        a.add(summary(1, 1, mass=by_name(system=0.1, user=0.1, assistant=1.0, assistant_end=1.0)))
    for i in range(10):
        part = LengthStats()
        part.add(summary(1, 1, mass=by_name(system=0.1, user=0.1, assistant=1.0, assistant_end=1.0)))
        b = part.merge(b) if i % 2 else b.merge(part)
    assert a == b
    assert a.to_dict()["accumulator"]["weight_mass_units"] == b.to_dict()["accumulator"]["weight_mass_units"]


def test_ratio_excludes_examples_without_output_from_histogram():
    s = LengthStats()
    s.add(summary(10, 0))
    s.add(summary(10, 10))
    assert s.dataset_ratio == 2.0 and s.count == 2
    h = s.to_dict()["ratio_histogram"]
    assert sum(h["counts"]) + h["underflow"] + h["overflow"] == 1
    assert not math.isnan(s.to_dict()["ratio_quantiles"]["p50"])


def test_truncated_counted():
    s = LengthStats()
    s.add(summary(1, 1, truncated=True))
    s.add(summary(1, 1))
    assert s.to_dict()["truncated"] == 1 and s.to_dict()["truncated_share"] == 0.5
