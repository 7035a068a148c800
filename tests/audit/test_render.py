"""Token-by-token view (im_data.render): token texts, role table, terminal output at a fixed width, HTML."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from rich.cells import cell_len

from im_data import Encoder, WeightPolicy
from im_data.render import (build_view, html_opacity, render_html, render_text, terminal_fg, token_texts,
                            view_from_example)
from im_data.tokenizer import SAMPLE_DATA

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RECORD = {"messages": [
    {"role": "system", "content": "Be brief & precise."},
    {"role": "user", "content": "Translate <b>Grüße</b> to English:\n\tthanks 世界"},
    {"role": "assistant", "content": "Greetings — 世界 means \"world\"."},
]}


def sample_records(n=5):
    with open(SAMPLE_DATA, encoding="utf-8") as fh:
        return [json.loads(line) for line, _ in zip(fh, range(n))]


@pytest.mark.parametrize("tok_fixture", ["default_tokenizer", "deepseek_tokenizer"])
def test_token_texts_concatenate_to_the_decoded_sequence(tok_fixture, request):
    tok = request.getfixturevalue(tok_fixture)
    enc = Encoder(tok, chat_template="tulu", policy=WeightPolicy.preset("im"))
    for record in [RECORD] + sample_records(3):
        ex = enc.encode(record)
        texts = token_texts(tok, ex.input_ids.tolist())
        assert len(texts) == len(ex.input_ids)
        assert "".join(texts) == tok.decode(ex.input_ids.tolist(), skip_special_tokens=False)


@pytest.mark.parametrize("mode, user_weight", [("it", 0.0), ("im", 1.0), ("wit", 0.1)])
def test_view_matches_the_encoded_example(default_tokenizer, mode, user_weight):
    policy = WeightPolicy.preset(mode, prompt_weight=0.1 if mode == "wit" else None)
    ex = Encoder(default_tokenizer, chat_template="tulu", policy=policy).encode(RECORD)
    view = view_from_example(ex, default_tokenizer, title="t")
    assert [r.tokens for r in view.roles] == ex.role_token_counts.tolist()
    assert np.allclose([r.weight_mass for r in view.roles], ex.weight_mass)
    user = next(r for r in view.roles if r.role == "user")
    assert user.tokens > 0 and user.mean_weight == pytest.approx(user_weight)
    assert [c.weight for c in view.cells] == pytest.approx(ex.loss_weights.tolist())
    assert sum(r.mass_share for r in view.roles) == pytest.approx(1.0)


def test_brightness_is_continuous_and_monotone():
    levels = [terminal_fg(w)[0] for w in np.linspace(0, 1, 21)]
    assert levels == sorted(levels) and levels[0] < levels[-1]
    assert len(set(levels)) == len(levels)          # strictly increasing: no steps
    assert terminal_fg(0.0) != terminal_fg(0.1) != terminal_fg(1.0)
    assert terminal_fg(2.0) == terminal_fg(1.0)
    assert html_opacity(0.0) < html_opacity(0.1) < html_opacity(0.5) < html_opacity(1.0) == 1.0


def _view(tokenizer, mode="wit"):
    policy = WeightPolicy.preset(mode, prompt_weight=0.1 if mode == "wit" else None)
    ex = Encoder(tokenizer, chat_template="tulu", policy=policy).encode(RECORD)
    return ex, view_from_example(ex, tokenizer, title="example 0", meta={"example_id": "abc123", "mode": mode})


@pytest.mark.parametrize("width", [60, 100])
def test_terminal_output_fixed_width_plain(default_tokenizer, width):
    ex, view = _view(default_tokenizer)
    out = render_text(view, width=width, color=False)
    assert not ANSI.search(out)
    lines = out.splitlines()
    assert max(cell_len(line) for line in lines) <= width
    assert lines[0] == "example 0"
    assert "example_id: abc123" in out
    assert "roles (background):" in out and "weight (brightness):" in out
    # the whole conversation is there, newlines marked
    assert "Grüße" in out and "世界" in out and "↵" in out and "⇥" in out
    # the role table: counts and weight mass per role
    table = {m.group(1): (int(m.group(2)), float(m.group(3)))
             for m in re.finditer(r"│\s+(\w+)\s+│\s+(\d+)\s+│\s+\S+\s+│\s+([\d.e+-]+)\s+│", out)}
    for code, label in enumerate(["template", "system", "user", "tool", "assistant", "assistant_end"]):
        assert table[label][0] == int(ex.role_token_counts[code])
        assert table[label][1] == pytest.approx(float(ex.weight_mass[code]), rel=1e-3)


def test_terminal_output_colours_encode_role_and_weight(default_tokenizer):
    ex, view = _view(default_tokenizer, "wit")
    out = render_text(view, width=80, color=True)
    assert max(cell_len(line) for line in ANSI.sub("", out).splitlines()) <= 80
    # foreground grey level = weight (0 -> 85, 0.1 -> 139, 1 -> 255); background = role
    user_bg, asst_bg, tmpl_bg = "48;2;24;60;130", "48;2;25;95;40", "48;2;48;48;48"
    assert f"38;2;139;139;139;{user_bg}m" in out      # user tokens at WIT weight 0.1
    assert f"38;2;255;255;255;{asst_bg}m" in out      # assistant at weight 1
    assert f"38;2;85;85;85;{tmpl_bg}m" in out         # template at weight 0
    it_out = render_text(_view(default_tokenizer, "it")[1], width=80, color=True)
    im_out = render_text(_view(default_tokenizer, "im")[1], width=80, color=True)
    def stream(s):
        return s.split("weight (brightness)")[1].split("\n", 1)[1].split("tokens and weight mass")[0]
    assert f"38;2;85;85;85;{user_bg}m" in stream(it_out) and f"38;2;255;255;255;{user_bg}m" not in stream(it_out)
    assert f"38;2;255;255;255;{user_bg}m" in stream(im_out) and f"38;2;85;85;85;{user_bg}m" not in stream(im_out)


class SpanParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tokens, self.tags, self._cur, self.title = [], set(), None, None
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "title":
            self._in_title = True
        if tag == "span" and "tok" in (a.get("class") or "").split():
            self._cur = {**a, "text": ""}

    def handle_data(self, data):
        if self._cur is not None:
            self._cur["text"] += data
        if self._in_title:
            self.title = data

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if tag == "span" and self._cur is not None:
            self.tokens.append(self._cur)
            self._cur = None


@pytest.mark.parametrize("mode", ["it", "im", "wit"])
def test_html_is_standalone_and_parses_back(default_tokenizer, mode):
    ex, view = _view(default_tokenizer, mode)
    page = render_html(view)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "http://" not in page and "https://" not in page and "<link" not in page
    p = SpanParser()
    p.feed(page)
    p.close()
    assert {"html", "head", "style", "body", "table"} <= p.tags
    assert p.title == "example 0"
    assert [int(t["data-token-id"]) for t in p.tokens] == ex.input_ids.tolist()
    assert [float(t["data-weight"]) for t in p.tokens] == pytest.approx(ex.loss_weights.tolist())
    labels = ["template", "system", "user", "tool", "assistant", "assistant_end", "reasoning", "tool_call"]
    assert [t["data-role"] for t in p.tokens] == [labels[r] for r in ex.roles.tolist()]
    # the escaped text round-trips (markup in the content stays text)
    text = "".join(t["text"] for t in p.tokens).replace("↵\n", "\n").replace("⇥", "\t")
    assert text == default_tokenizer.decode(ex.input_ids.tolist(), skip_special_tokens=False)
    assert "<b>Gr" not in page and "&lt;" in page
    # opacity follows the weight
    for t in p.tokens:
        assert f"rgba(0,0,0,{html_opacity(float(t['data-weight']))})" in t["style"]


def test_build_view_validates_lengths():
    with pytest.raises(ValueError):
        build_view([1, 2], [0], [0.0, 1.0])
    with pytest.raises(ValueError):
        build_view([1], [9], [0.0])
    v = build_view([5, 6], [2, 4], [0.0, 1.0])
    assert [c.text for c in v.cells] == ["[5]", "[6]"]


AGENT = {"tools": [{"type": "function", "function": {"name": "weather", "parameters": {"city": "string"}}}],
         "messages": [
             {"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "reasoning_content": "Use the tool.", "content": "", "tool_calls": [
                 {"type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
             {"role": "tool", "content": "18C"},
             {"role": "assistant", "reasoning_content": "Answer.", "content": "It is 18C."}]}


def test_views_list_every_role_of_the_table(default_tokenizer):
    """Legends and per-role tables come from the role table: reasoning and tool_call have rows, colours and counts."""
    from im_data.roles import ROLE_LABELS, ROLE_TABLE

    policy = WeightPolicy.preset("it").with_weights({"reasoning": 0.5})
    ex = Encoder(default_tokenizer, chat_template="chatml_tools", policy=policy).encode(AGENT)
    view = view_from_example(ex, default_tokenizer, title="agent")
    counts = np.bincount(ex.roles, minlength=len(ROLE_TABLE))
    assert [r.role for r in view.roles] == list(ROLE_LABELS)
    assert {r.role: r.tokens for r in view.roles} == dict(zip(ROLE_LABELS, counts.tolist()))
    rows = {r.role: r for r in view.roles}
    assert rows["reasoning"].tokens > 0 and rows["reasoning"].mean_weight == 0.5
    assert rows["tool_call"].tokens > 0 and rows["tool_call"].mean_weight == 1.0
    page = render_html(view)
    p = SpanParser()
    p.feed(page)
    p.close()
    assert {t["data-role"] for t in p.tokens} >= {"reasoning", "tool_call"}
    for spec in ROLE_TABLE:
        assert f'data-legend-role="{spec.name}"' in page and f'<tr data-role="{spec.name}">' in page
    reasoning_bg = "48;2;" + ";".join(str(c) for c in ROLE_TABLE[6].terminal_bg) + "m"
    out = render_text(view, width=100, color=True)
    assert reasoning_bg in out and " tool_call " in ANSI.sub("", out)
