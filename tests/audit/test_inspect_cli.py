"""`im-data inspect` end to end: terminal view at a fixed width, the HTML page, shard directories, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser

import pytest
from rich.cells import cell_len

from im_data import Encoder, WeightPolicy

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LABELS = ["template", "system", "user", "tool", "assistant", "assistant_end"]


class Spans(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tokens, self.role_rows = [], {}
        self._row = None
        self._cells = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and "tok" in (a.get("class") or "").split():
            self.tokens.append(a)
        if tag == "tr" and "data-role" in a:
            self._row, self._cells = a["data-role"], []
        if tag == "td" and self._row is not None:
            self._cells.append("")

    def handle_data(self, data):
        if self._row is not None and self._cells:
            self._cells[-1] += data

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.role_rows[self._row] = self._cells
            self._row = None


def parse_html(path):
    p = Spans()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


def first_record(path, n=0):
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(lines[n])


def test_raw_input_terminal_view_fixed_width(cli, data_dir, default_tokenizer):
    path = data_dir / "sample_sharegpt.jsonl"
    r = cli("inspect", path, "--index", "2", "--chat-template", "tulu", "--mode", "wit", "--prompt-weight", "0.1",
            "--color", "never", width=72)
    assert r.code == 0, r
    assert not ANSI.search(r.out)
    assert max(cell_len(line) for line in r.out.splitlines()) <= 72
    assert "example_id: " in r.out and "policy: wit" in r.out and "template: tulu" in r.out
    ex = Encoder(default_tokenizer, chat_template="tulu", policy=WeightPolicy.wit(0.1)).encode(first_record(path, 2))
    rows = {m.group(1): (int(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"│\s+(\w+)\s+│\s+(\d+)\s+│\s+\S+\s+│\s+([\d.e+-]+)\s+│", r.out)}
    for code, label in enumerate(LABELS):
        assert rows[label] == (int(ex.role_token_counts[code]), pytest.approx(float(ex.weight_mass[code]), rel=1e-3))


@pytest.mark.parametrize("mode, extra, user_grey", [("it", [], 85), ("im", [], 255),
                                                     ("wit", ["--prompt-weight", "0.1"], 139)])
def test_terminal_colours_follow_the_mode(cli, data_dir, mode, extra, user_grey):
    r = cli("inspect", data_dir / "sample_alpaca.jsonl", "--mode", mode, *extra, "--color", "always", width=90)
    assert r.code == 0, r
    assert max(cell_len(line) for line in ANSI.sub("", r.out).splitlines()) <= 90
    stream = r.out.split("weight (brightness)")[1].split("\n", 1)[1].split("tokens and weight mass")[0]
    user_cells = re.findall(r"\x1b\[38;2;(\d+);\d+;\d+;48;2;24;60;130m", stream)
    assert user_cells and {int(g) for g in user_cells} == {user_grey}


def test_html_page_parses_back(cli, data_dir, default_tokenizer, tmp_path):
    path = data_dir / "sample_alpaca.jsonl"
    page = tmp_path / "view.html"
    r = cli("inspect", path, "--index", "3", "--mode", "wit", "--prompt-weight", "0.25", "--html", page)
    assert r.code == 0, r
    p = parse_html(page)
    ex = Encoder(default_tokenizer, policy=WeightPolicy.wit(0.25)).encode(first_record(path, 3))
    assert [int(t["data-token-id"]) for t in p.tokens] == ex.input_ids.tolist()
    assert [LABELS.index(t["data-role"]) for t in p.tokens] == ex.roles.tolist()
    assert [float(t["data-weight"]) for t in p.tokens] == pytest.approx(ex.loss_weights.tolist())
    assert int(p.role_rows["user"][1]) == int(ex.role_token_counts[2])
    assert int(p.role_rows["total"][1]) == len(ex.input_ids)


def test_shard_dir_by_index_and_by_id_agree_with_raw(cli, shard_dir, sample_data, tmp_path):
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    a, b, c = tmp_path / "a.html", tmp_path / "b.html", tmp_path / "c.html"
    r = cli("inspect", shard_dir, "--index", "5", "--html", a, "--color", "never")
    assert r.code == 0, r
    example_id = re.search(r"example_id: (\w+)", r.out).group(1)
    assert "policy: wit" in r.out
    r = cli("inspect", shard_dir, "--example-id", example_id, "--html", b)
    assert r.code == 0, r
    # the same record from the raw file, encoded on the fly with the manifest's settings
    r = cli("inspect", sample_data, "--example-id", example_id, "--chat-template", "tulu", "--mode", "wit",
            "--prompt-weight", "0.2", "--html", c)
    assert r.code == 0, r
    pa_, pb, pc = parse_html(a), parse_html(b), parse_html(c)
    assert pa_.tokens == pb.tokens
    strip = lambda toks: [(t["data-token-id"], t["data-role"], t["data-weight"]) for t in toks]  # noqa: E731
    assert strip(pa_.tokens) == strip(pc.tokens)
    assert {t["data-weight"] for t in pa_.tokens if t["data-role"] == "user"} == {"0.2"}
    assert manifest["counts"]["written"] == 80


def test_shard_dir_warns_about_raw_only_options(cli, shard_dir):
    r = cli("inspect", shard_dir, "--mode", "it")
    assert r.code == 0 and "ignored for a shard directory" in r.err


@pytest.mark.parametrize("args, message", [
    (["{data}/sample_alpaca.jsonl", "--index", "8"], "out of range (8 records)"),
    (["{data}/sample_alpaca.jsonl", "--index", "-1"], "--index must be >= 0"),
    (["{data}/sample_alpaca.jsonl", "--example-id", "0000"], "no record has example_id '0000' (ids hash"),
    (["{data}/nope.jsonl"], "no such file"),
    (["{tmp}/empty.jsonl"], "holds no records"),
    (["{tmp}/bad.jsonl"], "is rejected: [no_assistant_turn]"),
    (["{tmp}/bad.jsonl", "--index", "1"], "is rejected: [invalid_json]"),
    (["{tmp}/half"], "no manifest.json"),
    (["{shards}", "--index", "80"], "out of range (80 examples)"),
    (["{shards}", "--example-id", "ffff"], "no example has example_id 'ffff' (--example-id)"),
    (["{data}/sample_alpaca.jsonl", "--mode", "it", "--prompt-weight", "0.3"], "need --mode wit"),
    (["{data}/sample_alpaca.jsonl", "--tokenizer", "{tmp}/no-tokenizer"], "cannot load tokenizer"),
])
def test_bad_input_is_one_line_and_exit_2(cli, error_lines, data_dir, shard_dir, tmp_path, args, message):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n{oops\n")
    (tmp_path / "half" / "shards").mkdir(parents=True)
    argv = [a.format(data=data_dir, tmp=tmp_path, shards=shard_dir) for a in args]
    r = cli("inspect", *argv)
    assert r.code == 2, r
    ours = error_lines(r)
    assert len(ours) == 1 and ours[0].startswith("im-data inspect: error: ") and message in ours[0], r
    assert "Traceback" not in r.err and r.out == ""


def test_index_and_example_id_are_exclusive(cli, data_dir):
    r = cli("inspect", data_dir / "sample_alpaca.jsonl", "--index", "1", "--example-id", "x")
    assert r.code == 2 and "not allowed with" in r.err


def test_missing_shard_file(cli, error_lines, shard_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(shard_dir, broken)
    for f in (broken / "shards").iterdir():
        f.write_bytes(b"garbage")
    r = cli("inspect", broken)
    assert r.code == 2 and "unreadable shard" in error_lines(r)[0], r
    r = cli("audit", broken)
    assert r.code == 2 and "unreadable shard" in error_lines(r)[0], r


@pytest.mark.parametrize("mode, user_weight", [("im", "1"), ("it", "0"), ("wit", "0.1")])
def test_tokens_rows_one_line_per_token(cli, tmp_path, mode, user_weight):
    """--tokens: the README's worked example, token by token (tulu, embedded tokenizer)."""
    src = tmp_path / "tiny.jsonl"
    src.write_text(json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "Add 2 and 3."},
                                            {"role": "assistant", "content": "5"}]}) + "\n")
    extra = ["--prompt-weight", "0.1"] if mode == "wit" else []
    r = cli("inspect", str(src), "--index", "0", "--chat-template", "tulu", "--mode", mode, "--tokens", *extra)
    assert r.code == 0, r.err
    rows = [line.split() for line in r.out.splitlines()[1:] if line.strip()]
    got = [(row[-2], row[-1]) for row in rows]
    prompt = user_weight
    assert got == ([("template", "0")] * 2 + [("system", prompt)] * 3 + [("template", "0")] * 3
                   + [("user", prompt)] * 6 + [("template", "0")] * 3
                   + [("assistant", "1"), ("assistant_end", "1"), ("template", "0")])
    assert rows[0][1] == "'<|system|>'" and rows[17][1] == "'5'" and rows[18][1] == "'</s>'"


def test_example_id_found_through_any_path_to_the_same_file(cli, data_dir, tmp_path, monkeypatch):
    """An id made by `prepare x.jsonl` in the file's folder is found through ../repo/x.jsonl, ./x.jsonl and the
    absolute path; the view names the path the id was made from."""
    from im_data.shards import example_id

    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    repo.mkdir()
    elsewhere.mkdir()
    shutil.copy(data_dir / "sample_alpaca.jsonl", repo / "x.jsonl")
    wanted = example_id("x.jsonl", 3)  # what `cd repo && im-data prepare x.jsonl` writes for line 3
    by_index = cli("inspect", repo / "x.jsonl", "--index", "3", "--tokens")
    assert by_index.code == 0, by_index
    for cwd, spec in ((elsewhere, "../repo/x.jsonl"), (repo, "./x.jsonl"), (elsewhere, str(repo / "x.jsonl")),
                      (repo, "x.jsonl")):
        monkeypatch.chdir(cwd)
        r = cli("inspect", spec, "--example-id", wanted, "--tokens")
        assert r.code == 0 and r.out == by_index.out, (spec, r)  # the same record, token by token
        view = cli("inspect", spec, "--example-id", wanted, "--color", "never", width=200)
        same_label = os.path.normpath(spec) == "x.jsonl"  # ./x.jsonl is labelled x.jsonl, as prepare labels it
        meta = f"example_id: {wanted}" + ("" if same_label else " (of x.jsonl)") + "  index: 3  "
        assert view.code == 0 and meta in view.out, (spec, view)


def test_unknown_example_id_says_which_paths_were_tried(cli, error_lines, data_dir, tmp_path, monkeypatch):
    from im_data.shards import example_id

    (tmp_path / "repo").mkdir()
    shutil.copy(data_dir / "sample_alpaca.jsonl", tmp_path / "repo" / "x.jsonl")
    monkeypatch.chdir(tmp_path / "repo")
    other = example_id("y.jsonl", 0)  # an id of another input
    r = cli("inspect", "x.jsonl", "--example-id", other)
    assert r.code == 2, r
    (line,) = error_lines(r)
    assert line.startswith(f"im-data inspect: error: x.jsonl: no record has example_id {other!r} (ids hash the input "
                           "path as prepare was given it and the line/row; tried ")
    assert "e.g. x.jsonl, repo/x.jsonl, " in line
    assert line.endswith(f"inspect the prepared folder instead: im-data inspect OUTPUT_DIR --example-id {other}")
