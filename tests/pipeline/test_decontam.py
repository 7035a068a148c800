"""``--decontaminate``: records whose instruction or output side shares a word n-gram with a benchmark record are
rejected ``contaminated`` naming the benchmark, its record and the n-gram; checked against a brute-force oracle
(Python sets of word tuples) on the sample data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline_helpers import read_output, run_cli

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "im_data/assets/sample.jsonl"


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _grams(text: str, n: int) -> set[tuple[str, ...]]:
    w = _words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def test_ngrams_ignore_case_and_punctuation_and_keep_order():
    from im_data.decontam import NgramIndex, WordHasher, find_contamination

    index = NgramIndex.build([("b", [(7, {"q": "one two three four five six", "meta": {"x": ["alpha beta gamma"]}})])],
                             n=3)
    assert len(index) == 4 + 1  # 4 trigrams of the question, 1 of the nested string, none across fields
    assert NgramIndex.from_bytes(index.to_bytes()).hashes.tolist() == index.hashes.tolist()
    h = WordHasher()

    def conv(user, assistant):
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}

    err, bench = find_contamination(conv("Say: TWO, three... four!", "ok"), index, h)
    assert bench == "b" and err.reason == "contaminated"
    assert err.message == 'the instruction side shares the 3-gram "two three four" with benchmark b record 7'
    err, _ = find_contamination(conv("hi", "Alpha beta gamma."), index, h)
    assert err.message.startswith('the output side shares the 3-gram "alpha beta gamma"')
    assert find_contamination(conv("four three two", "six five four"), index, h) is None  # order matters
    assert find_contamination(conv("five six alpha", "beta gamma"), index, h) is None  # not across fields
    assert find_contamination({"nonsense": 1}, index, h) is None  # left to the encoder


def _sample():
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


def test_contaminated_records_match_a_brute_force_oracle(tmp_path):
    n = 13
    records = _sample()
    user_text = records[3]["messages"][0]["content"]
    reply = next(m["content"] for m in records[10]["messages"] if m["role"] == "assistant")
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"prompt": "Q: " + " ".join(_words(user_text)[:20]), "answer": "A"}) + "\n"
                     + json.dumps({"prompt": "unrelated words only here", "answer": reply.upper()}) + "\n")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"text": "nothing in common with any record of the sample at all today or tomorrow"}) + "\n")
    assert run_cli("prepare", SAMPLE, "-o", tmp_path / "o", "--decontaminate", bench, other, "-q") == 0
    out = read_output(tmp_path / "o")
    bench_grams = [_grams(s, n) for s in ("Q: " + " ".join(_words(user_text)[:20]), reply)]
    expected = {}
    for i, rec in enumerate(records):
        for m in rec["messages"]:
            hit = [b for b, g in enumerate(bench_grams) if _grams(m.get("content") or "", n) & g]
            if hit:
                expected[i] = hit[0]
                break
    assert 3 in expected and 10 in expected
    rejects = sorted((r for r in out["rejects"] if r["reason"] == "contaminated"), key=lambda r: r["index"])
    assert [r["index"] for r in rejects] == sorted(expected)
    for r in rejects:
        m = re.fullmatch(r'the (instruction|output) side shares the 13-gram "(.*)" with benchmark (.*) record (\d+)',
                         r["message"])
        assert m and m.group(3) == str(bench)
        gram = tuple(m.group(2).split())
        assert len(gram) == n and gram in bench_grams[int(m.group(4))]
    c = out["manifest"]["counts"]
    assert c["rejected_by_reason"] == {"contaminated": len(expected)} and c["read"] == 80
    assert out["stats"]["decontamination"] == {"ngram": 13, "benchmarks": {
        str(bench): {"ngrams": len(bench_grams[0] | bench_grams[1]), "contaminated": len(expected)},
        str(other): {"ngrams": 2, "contaminated": 0}}}
    assert out["stats"]["sources"][str(SAMPLE)]["rejected_by_reason"] == {"contaminated": len(expected)}
    card = (tmp_path / "o" / "README.md").read_text()
    assert f"| `{bench}` | {len(bench_grams[0] | bench_grams[1])} | {len(expected)} |" in card
    assert f"| `{SAMPLE}` | {len(expected)} |" in card
    assert not (tmp_path / "o" / "_decontam").exists()


def test_ngram_length_is_configurable(tmp_path):
    bench = tmp_path / "b.jsonl"
    bench.write_text(json.dumps({"q": "the following paragraph"}) + "\n")
    assert run_cli("prepare", SAMPLE, "-o", tmp_path / "o3", "--decontaminate", bench,
                   "--decontaminate-ngram", "3", "-q") == 0
    assert run_cli("prepare", SAMPLE, "-o", tmp_path / "o13", "--decontaminate", bench, "-q") == 0
    expected = sum(1 for r in _sample() if any(("the", "following", "paragraph") in _grams(m["content"], 3)
                                                for m in r["messages"]))
    assert expected > 0
    assert read_output(tmp_path / "o3")["manifest"]["counts"]["rejected_by_reason"] == {"contaminated": expected}
    assert read_output(tmp_path / "o13")["manifest"]["counts"]["rejected"] == 0


def test_a_missing_benchmark_is_a_usage_error(tmp_path, capsys):
    assert run_cli("prepare", SAMPLE, "-o", tmp_path / "o", "--decontaminate", tmp_path / "nope.jsonl") == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
