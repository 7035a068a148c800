"""Mixtures, ``INPUT@R``: exact counts (a fraction or a count, repeats with their own example ids), chosen by a
hash of ``--seed`` and the example id, per-source figures in stats.json / manifest / card, and with dedup and
packing the same bytes on Direct and Dask."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from im_data.mixture import REPEAT_STRIDE
from pipeline_helpers import read_output, run_cli

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "im_data/assets/sample.jsonl"
ALPACA = REPO / "tests/data/sample_alpaca.jsonl"
SHAREGPT = REPO / "tests/data/sample_sharegpt.jsonl"


def test_input_ratio_syntax(tmp_path):
    from im_data.mixture import parse_input_ratio

    assert parse_input_ratio("data.jsonl@0.5") == ("data.jsonl", 0.5)
    assert parse_input_ratio("data/*.jsonl@2000") == ("data/*.jsonl", 2000.0)
    assert parse_input_ratio("hf:org/name:train@.25") == ("hf:org/name:train", 0.25)
    assert parse_input_ratio("s3://bucket/x.jsonl") == ("s3://bucket/x.jsonl", None)
    assert parse_input_ratio("data.jsonl@v2") == ("data.jsonl@v2", None)
    odd = tmp_path / "odd.jsonl@5"
    odd.write_text("")
    assert parse_input_ratio(str(odd), exists=lambda p: Path(p).exists()) == (str(odd), None)  # a real file
    with pytest.raises(ValueError, match="must be an integer"):
        parse_input_ratio("data.jsonl@2.5")
    with pytest.raises(ValueError, match="must be > 0"):
        parse_input_ratio("data.jsonl@0")


@pytest.mark.parametrize("ratio,n,expected", [(0.5, 80, 40), (0.33, 10, 3), (1, 7, 7), (200, 80, 200),
                                              (160, 80, 160), (3, 80, 3)])
def test_plans_take_exact_counts(ratio, n, expected):
    from im_data.mixture import copies, plan_sampling

    records = [("src", i) for i in range(n)]
    whole, threshold = plan_sampling(ratio, records, seed=0)
    taken = [copies(whole, threshold, 0, s, i) for s, i in records]
    assert sum(taken) == expected and max(taken) - min(taken) <= 1


def test_seed_changes_the_choice_only():
    from im_data.mixture import copies, plan_sampling

    records = [("src", i) for i in range(100)]
    chosen = {}
    for seed in (0, 1):
        plan = plan_sampling(0.3, records, seed)
        chosen[seed] = {i for s, i in records if copies(*plan, seed, s, i)}
    assert len(chosen[0]) == len(chosen[1]) == 30 and chosen[0] != chosen[1]
    plan = plan_sampling(0.3, records, 0)
    assert chosen[0] == {i for s, i in records if copies(*plan, 0, s, i)}


def test_mixture_counts_shares_and_repeats(tmp_path):
    from im_data.shards import example_id

    assert run_cli("prepare", f"{SAMPLE}@200", f"{ALPACA}@0.5", SHAREGPT, "-o", tmp_path / "mix", "-q") == 0
    assert run_cli("prepare", SAMPLE, ALPACA, SHAREGPT, "-o", tmp_path / "all", "-q") == 0
    mix, everything = read_output(tmp_path / "mix"), read_output(tmp_path / "all")
    sources = mix["stats"]["sources"]
    assert sources == mix["manifest"]["sources"]
    s, a, g = (sources[str(p)] for p in (SAMPLE, ALPACA, SHAREGPT))
    assert (s["available"], s["ratio"], s["read"], s["written"]) == (80, 200.0, 200, 200)
    assert (a["available"], a["ratio"], a["read"], a["written"]) == (8, 0.5, 4, 4)
    assert g["ratio"] is None and g["read"] == g["available"] == g["written"] + g["rejected"]
    written = mix["manifest"]["counts"]["written"]
    assert written == len(mix["rows"]) == 200 + 4 + g["written"]
    assert s["share"] == pytest.approx(200 / written) and sum(x["share"] for x in sources.values()) == pytest.approx(1)
    assert sum(x["tokens"] for x in sources.values()) == sum(mix["manifest"]["tokens_per_role"].values())
    assert s["recommendation"]["decision"] in ("im", "it", "neutral") and s["dataset_ratio"] > 0
    # every mixture row is a row of the full run (the repeats: with their own example id, same tokens)
    originals = {r["example_id"]: r for r in everything["rows"]}
    base = {example_id(str(SAMPLE), i + k * 2**32): example_id(str(SAMPLE), i) for i in range(80) for k in range(3)}
    base.update({example_id(str(p), i): example_id(str(p), i) for p in (ALPACA, SHAREGPT) for i in range(200)})
    assert len({r["example_id"] for r in mix["rows"]}) == written
    for row in mix["rows"]:
        original = originals[base[row["example_id"]]]
        assert row["input_ids"] == original["input_ids"] and row["loss_weights"] == original["loss_weights"]
    from collections import Counter

    repeats = Counter(base[r["example_id"]] for r in mix["rows"] if base[r["example_id"]] in
                      {example_id(str(SAMPLE), i) for i in range(80)})
    assert sum(repeats.values()) == 200 and set(repeats.values()) == {2, 3} and len(repeats) == 80
    card = (tmp_path / "mix" / "README.md").read_text()
    assert f"| `{SAMPLE}` | @200 | 80 | 200 | 200 | 0 | none | {100 * 200 / written:.1f} % |" in card


def test_repeats_are_not_duplicates(tmp_path):
    assert run_cli("prepare", f"{SAMPLE}@160", "-o", tmp_path / "o", "--dedup", "exact", "-q") == 0
    c = read_output(tmp_path / "o")["manifest"]["counts"]
    assert c["read"] == c["written"] == 160 and c["rejected"] == 0


def test_a_bad_ratio_is_a_usage_error(tmp_path, capsys):
    assert run_cli("prepare", f"{SAMPLE}@2.5", "-o", tmp_path / "o") == 2
    assert "must be an integer" in capsys.readouterr().err


def test_dask_and_direct_mix_dedup_decontaminate_and_pack_the_same(scheduler_address, tmp_path):
    inputs = [f"{SAMPLE}@150", f"{ALPACA}@0.5", SHAREGPT, SAMPLE.parent / "sample.jsonl"]
    bench = tmp_path / "bench.jsonl"
    bench.write_text(SAMPLE.read_text().splitlines()[5] + "\n")
    common = ["--dedup", "exact", "--pack-length", "512", "--num-shards", "2", "--seed", "3", "--decontaminate",
              bench, "-q"]
    assert run_cli("prepare", *inputs, "-o", tmp_path / "direct", *common) == 0
    assert run_cli("prepare", *inputs, "-o", tmp_path / "dask", *common, "--runner", "dask",
                   "--dask-address", scheduler_address) == 0
    x, y = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("direct", "dask"))
    assert x["shards"] == y["shards"] and x["counts"] == y["counts"] and x["sources"] == y["sources"]
    for s in x["sources"].values():
        assert s["read"] == s["written"] + s["rejected"]
    # record 5 (the benchmark) is rejected wherever the mixture took it (how often depends on the sampling hash)
    contaminated = [json.loads(line) for line in (tmp_path / "direct/rejects/contaminated.jsonl").read_text().splitlines()]
    assert len(contaminated) == x["counts"]["rejected_by_reason"]["contaminated"] >= 1
    # copy j of record i has index i + j * REPEAT_STRIDE (im_data.mixture)
    assert {(Path(r["source"]).name, r["index"] % REPEAT_STRIDE) for r in contaminated} == {("sample.jsonl", 5)}
    assert json.loads((tmp_path / "direct/stats.json").read_text()) == json.loads(
        (tmp_path / "dask/stats.json").read_text())


def test_audit_reports_each_source_of_a_packed_mixture(tmp_path, capsys):
    out = tmp_path / "mix"
    assert run_cli("prepare", f"{SAMPLE}@100", f"{ALPACA}@0.5", "-o", out, "--pack-length", "512", "-q") == 0
    capsys.readouterr()
    sources = json.loads((out / "manifest.json").read_text())["sources"]
    assert run_cli("audit", out) == 0
    text = " ".join(capsys.readouterr().out.split())  # the table wraps long lines
    s, a = sources[str(SAMPLE)], sources[str(ALPACA)]
    assert (f"source {SAMPLE} @100: read 100, written 100, rejected 0, share {100 * s['share']:.1f} %, tokens "
            f"{s['tokens']:,}, ratio {s['dataset_ratio']:.3f}, recommendation {s['recommendation']['summary']}") in text
    assert f"source {ALPACA} @0.5: read 4, written 4, rejected 0, share {100 * a['share']:.1f} %" in text
