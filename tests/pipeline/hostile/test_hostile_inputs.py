"""Hostile input (issue 12): no record kills a job, memory stays bounded, partial files keep what is readable."""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import make_corpus` in any import mode

from im_data import Encoder, RecordError, load_tokenizer  # noqa: E402
from im_data.limits import LengthBound  # noqa: E402
from im_data.shards import example_id  # noqa: E402
from make_corpus import (MAX_LENGTH, MAX_RECORD_BYTES, TEMPLATE, TEMPLATE_TIMEOUT_S, build_corpus,  # noqa: E402
                         good)
from pipeline_helpers import read_output, run_cli  # noqa: E402
from pipelines.read import InputError, expand_inputs, plan_splits, read_split  # noqa: E402


def read_all(specs, max_record_bytes=MAX_RECORD_BYTES):
    return [r for s in plan_splits(expand_inputs([str(x) for x in specs]), 1 << 20)
            for r in read_split(s, max_record_bytes)]


def reason(rec):
    return rec.payload.reason if isinstance(rec.payload, RecordError) else None


# ------------------------------------------------------------------------------------------- the whole corpus
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("hostile") / "corpus")


def check_run(corpus, out: Path) -> None:
    res = read_output(out)
    counts = res["manifest"]["counts"]
    good_ids = {example_id(src, i) for (src, i), why in corpus.expected.items() if why is None}
    bad = {(src, i): why for (src, i), why in corpus.expected.items() if why is not None}
    assert {r["example_id"] for r in res["rows"]} == good_ids  # every good record written, nothing else
    assert {(r["source"], r["index"]): r["reason"] for r in res["rejects"]} == bad
    assert counts["read"] == len(corpus.expected) == counts["written"] + counts["rejected"]
    assert counts["written"] == len(good_ids) and counts["rejected"] == len(bad)
    lines = {}
    for src in {s for s, _ in bad}:
        if src.endswith(".jsonl") and os.path.isfile(src) and not os.path.islink(src):
            lines[src] = Path(src).read_bytes().split(b"\n")
    for rej in res["rejects"]:
        if rej["source"] in lines and rej["reason"] != "too_large":  # raw: the line's original bytes
            raw = base64.b64decode(rej["raw"]) if rej.get("raw_encoding") == "base64" else rej["raw"].encode()
            assert raw == lines[rej["source"]][rej["index"]]
        if rej["reason"] == "internal_error":
            assert rej["message"].startswith("TypeError: ")
        if rej["reason"] == "template_timeout":
            assert "ran longer than 1 s" in rej["message"]
    tok = load_tokenizer(None)
    assert not any("EVIL" in tok.decode(r["input_ids"]) for r in res["rows"])  # no kwargs text became a token
    assert res["manifest"]["inputs"][-1].endswith("names/caf\\xe9 \\xff.jsonl")  # valid UTF-8 text
    for path in (out / "rejects").glob("*.jsonl"):  # strict JSON, valid UTF-8
        for line in path.read_bytes().decode("utf-8").splitlines():
            json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in a reject file"))


def test_corpus_in_process(corpus, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("IM_DATA_TEMPLATE_TIMEOUT_S", TEMPLATE_TIMEOUT_S)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="im_data.prepare"):
        assert run_cli("prepare", *corpus.inputs, "-o", out, "-q", *corpus.options()) == 0
    check_run(corpus, out)
    warned = [r.getMessage() for r in caplog.records if "read once" in r.getMessage()]
    assert len(warned) == len(corpus.duplicates)
    for dup in corpus.duplicates:
        assert any(w.startswith(f"input {dup} is the same file as") for w in warned)
    messages = [r.getMessage() for r in caplog.records]
    read_errors = sum(1 for why in corpus.expected.values() if why == "read_error")
    assert f"{read_errors} read_error reject(s): part of the input could not be read" in "\n".join(messages)
    (skipped,) = [m for m in messages if m.startswith("skipped ")]
    assert skipped.startswith("skipped 1 file(s)") and "compressed other than gzip" in skipped
    assert skipped.endswith("names/notes.jsonl.bz2")


def test_corpus_multi_processing(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("IM_DATA_TEMPLATE_TIMEOUT_S", TEMPLATE_TIMEOUT_S)  # the worker processes inherit it
    out = tmp_path / "out"
    assert run_cli("prepare", *corpus.inputs, "-o", out, "-q", *corpus.options(),
                   "--direct_running_mode", "multi_processing", "--direct_num_workers", "2") == 0
    check_run(corpus, out)


# ------------------------------------------------------------------------------------------------ the reader
def test_json_array_keeps_every_readable_element(tmp_path):
    f = tmp_path / "a.json"
    f.write_bytes(b'[{"a": "x,]\\"["}, {"b": [1, {"c": "}"}]},\n  {bad}, , {"d": 4},]')
    got = [(r.index, r.payload if reason(r) is None else reason(r)) for r in read_all([f])]
    assert got == [(0, b'{"a": "x,]\\"["}'), (1, b'{"b": [1, {"c": "}"}]}'), (2, b"{bad}"), (3, "invalid_json"),
                   (4, b'{"d": 4}')]
    f.write_bytes(b'[{"a": 1}] trailing')
    assert [(r.index, reason(r)) for r in read_all([f])] == [(0, None), (None, "invalid_json")]


def test_json_file_starting_with_much_whitespace_is_read(tmp_path):
    for name, body in (("arr.json", b'[{"a": 1}, {"b": 2}]'), ("lines.json", b'{"a": 1}\n{"b": 2}\n')):
        (tmp_path / name).write_bytes(b" \n\t" * 4000 + body)
        assert [json.loads(r.payload) for r in read_all([tmp_path / name])] == [{"a": 1}, {"b": 2}]


def test_oversized_records_are_skipped_while_reading(tmp_path):
    f = tmp_path / "big.jsonl"
    f.write_bytes(b'{"a": 1}\n' + b'{"x": "' + b"y" * 100_000 + b'"}\n{"b": 2}\n' + b"z" * 50)
    got = read_all([f], max_record_bytes=1000)
    assert [(r.index, reason(r)) for r in got] == [(0, None), (1, "too_large"), (2, None), (3, None)]
    assert "100009 bytes > --max-record-bytes 1000" in got[1].payload.message
    assert got[1].raw == (b'{"x": "' + b"y" * 100_000)[:1001]  # the prefix that was read: max + 1 bytes
    assert [r.index for r in read_all([f], max_record_bytes=9)] == [0, 1, 2, 3]  # 9 bytes: line 0 fits exactly
    assert reason(read_all([f], max_record_bytes=7)[0]) == "too_large"


def test_corrupt_parquet_row_group_loses_only_its_rows(corpus):
    got = read_all([corpus.root / "groups.parquet"])
    assert [(r.index, reason(r)) for r in got] == [(0, None), (1, None), (2, "read_error"), (4, None), (5, None)]
    assert "rows 2-3 (row group 1)" in got[2].payload.message
    assert got[3].payload == good(217)  # row 4: 200 + 4 * 4 + 1


def test_dataset_dict_missing_split_and_bad_dataset_dict_json(corpus, tmp_path):
    got = read_all([corpus.root / "dd"])
    assert [(r.source.rsplit("/", 1)[1], r.index, reason(r)) for r in got] == [
        ("dd[train]", 0, None), ("dd[train]", 1, None), ("dd[train]", 2, None), ("dd[test]", None, "read_error")]
    (tmp_path / "weird").mkdir()
    for content in ("[]", '{"splits": ["../../etc"]}', "{not json"):
        (tmp_path / "weird" / "dataset_dict.json").write_text(content)
        with pytest.raises(InputError, match="dataset_dict.json"):
            expand_inputs([str(tmp_path / "weird")])
    assert run_cli("prepare", tmp_path / "weird", "-o", tmp_path / "out") == 2


def test_io_error_while_reading_jsonl_is_a_read_error(corpus):
    (rec,) = read_all([corpus.root / "io_error.jsonl"])
    assert rec.index == 0 and reason(rec) == "read_error" and "Input/output error" in rec.payload.message


def test_special_files_and_symlink_loops_are_refused_up_front(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo.jsonl")
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    for name, words in (("fifo.jsonl", "FIFO"), ("zero.jsonl", "device"), ("loop.jsonl", "symbolic link loop")):
        with pytest.raises(InputError, match=words):
            expand_inputs([str(tmp_path / name)])
        assert run_cli("prepare", tmp_path / name, "-o", tmp_path / "out") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and name in err[0] and words in err[0]


def test_duplicates_are_read_once_and_reported(tmp_path, caplog, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d")  # a symlink loop under a ** glob
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "d" / "a.jsonl")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="im_data.prepare"):
        sources = expand_inputs([str(tmp_path / "d" / "a.jsonl"), "d/a.jsonl", "link.jsonl", "d/**/*.jsonl"])
    assert [s.label for s in sources] == [str(tmp_path / "d" / "a.jsonl")]
    assert [m.getMessage().split(" is the same")[0] for m in caplog.records] == [
        "input d/a.jsonl", "input link.jsonl", "input d/a.jsonl"]


# ------------------------------------------------------------------------------------------------ the encoder
def test_far_too_long_record_is_rejected_before_tokenizing():
    tok = load_tokenizer(None)
    enc = Encoder(tok, max_length=16, truncation="drop")
    bound = enc._length_bound
    assert isinstance(bound, LengthBound) and bound.max_length == 16
    record = {"messages": [{"role": "user", "content": "x" * (bound.max_bytes + 1)},
                           {"role": "assistant", "content": "y"}]}
    prepared = enc.prepare([record])
    assert prepared.convs == [] and prepared.results[0].reason == "too_long"  # nothing left to tokenize
    assert "without tokenizing" in prepared.results[0].message
    near = {"messages": [{"role": "user", "content": "x" * 40}, {"role": "assistant", "content": "y"}]}
    assert enc.encode_batch([near])[0].reason == "too_long"  # just over: found by tokenizing, as before
    assert Encoder(tok, max_length=16)._length_bound is None  # keep_start truncates: no early rejection


def test_unexpected_exception_on_one_record_is_internal_error(tmp_path):
    """The template emits a lone surrogate after a message named BOOM: the tokenizer raises a TypeError for the
    batch; the other records of the batch are still encoded."""
    (tmp_path / "boom.jinja").write_text(TEMPLATE)
    src = tmp_path / "in.jsonl"
    records = [good(0), {"messages": [{"role": "user", "content": "hi", "name": "BOOM"},
                                      {"role": "assistant", "content": "x"}]},
               good(4)]
    src.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "out"
    assert run_cli("prepare", src, "-o", out, "-q", "--chat-template", tmp_path / "boom.jinja") == 0
    res = read_output(out)
    assert res["manifest"]["counts"]["written"] == 2
    (rej,) = res["rejects"]
    assert (rej["index"], rej["reason"]) == (1, "internal_error") and rej["message"].startswith("TypeError: ")


def test_big_records_make_smaller_encode_batches():
    from pipelines.encode import BATCH_BYTES, record_weight
    from pipelines.read import RawRecord

    assert record_weight(RawRecord("s", 0, b"{}"), 1024) == 1
    assert record_weight(RawRecord("s", 0, {"a": 1}), 1024) == 1
    big = RawRecord("s", 0, b"x" * (1 << 20))
    assert record_weight(big, 1024) == 1024 * (1 << 20) // BATCH_BYTES  # a batch holds BATCH_BYTES / 1 MB such records
