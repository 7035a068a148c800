"""Nothing is dropped silently: a field the chat template does not render is either rendered, or the record is
rejected with ``unrendered_field`` naming it, unless the user allows it (issue 8, item 2).

Property test over random extra fields (name, value, place) on a real template (Qwen2.5, which renders only the
fields it knows) and on a template that renders every message field."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from im_data import Encoder, RecordError, WeightPolicy
from im_data.templates import ChatTemplate

import real_tokenizers

pytestmark = pytest.mark.real_templates

FAMILY = "qwen2_5"
ALLOWED = ("x_note", "x_source")
RENDER_ALL_FIELDS = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% for k, v in m.items() if k not in ('role', 'content') %}{{ k }}: {{ v }}\n{% endfor %}"
    "{{ m.content }}<|im_end|>\n{% endfor %}"
)
BASE = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Sum 2+3"},
        {"role": "assistant", "content": "It is 5."}]
_ENCODERS: dict = {}


def encoder(kind: str) -> Encoder:
    if kind not in _ENCODERS:
        tok = real_tokenizers.family_tokenizer(FAMILY)
        source = RENDER_ALL_FIELDS if kind == "render_all" else real_tokenizers.template_source(FAMILY)
        extra = {"allow_unrendered": ALLOWED} if kind == "allowed" else {}
        _ENCODERS[kind] = Encoder(tok, chat_template=ChatTemplate(kind, source), policy=WeightPolicy.preset("im"),
                                  **extra)
    return _ENCODERS[kind]


field_names = st.from_regex(r"x_[a-z]{1,10}", fullmatch=True)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=10)
values = st.one_of(words.map(lambda w: f"data {w}"), st.lists(words, min_size=1, max_size=3),
                   st.dictionaries(words, words, min_size=1, max_size=2))
places = st.sampled_from(["record"] + [f"message {i}" for i in range(len(BASE))])
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def with_field(place: str, name: str, value) -> dict:
    record = {"messages": [dict(m) for m in BASE]}
    if place == "record":
        record[name] = value
    else:
        record["messages"][int(place.split()[1])][name] = value
    return record


def _reject(enc: Encoder, record: dict) -> RecordError | None:
    result = enc.encode_batch([record])[0]
    return result if isinstance(result, RecordError) else None


@SETTINGS
@given(name=field_names, value=values, place=places)
def test_an_unrendered_field_rejects_the_record_naming_it(name, value, place):
    tok = real_tokenizers.family_tokenizer(FAMILY)
    record = with_field(place, name, value)
    text = tok.apply_chat_template(record["messages"], chat_template=real_tokenizers.template_source(FAMILY),
                                   tokenize=False)
    assert str(value) not in text  # the real template renders none of these fields
    err = _reject(encoder("real"), record)
    assert err is not None, f"{place}.{name} = {value!r} was dropped silently"
    assert err.reason == "unrendered_field" and name in err.message, (err.reason, err.message)


@SETTINGS
@given(name=st.sampled_from(ALLOWED), value=values, place=places)
def test_an_allowed_field_is_left_out_and_the_record_encoded(name, value, place):
    record = with_field(place, name, value)
    ex = encoder("allowed").encode(record)
    plain = encoder("real").encode({"messages": [dict(m) for m in BASE]})
    assert ex.input_ids.tolist() == plain.input_ids.tolist()
    assert ex.roles.tolist() == plain.roles.tolist()


@SETTINGS
@given(name=field_names, value=words.map(lambda w: f"data {w}"), index=st.integers(0, len(BASE) - 1))
def test_a_rendered_message_field_is_encoded(name, value, index):
    """A template that renders every message field: the extra field is used, so the record is encoded and
    the message contents keep their roles."""
    record = with_field(f"message {index}", name, value)
    ex = encoder("render_all").encode(record)
    tok = real_tokenizers.family_tokenizer(FAMILY)
    text = tok.apply_chat_template(record["messages"], chat_template=RENDER_ALL_FIELDS, tokenize=False)
    assert f"{name}: {value}\n" in text
    assert ex.input_ids.tolist() == tok(text, add_special_tokens=False)["input_ids"]
