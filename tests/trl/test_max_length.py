"""Training defaults that respect the data: ``max_length="auto"`` takes the prepared data's own limit, and whatever
the trainer still truncates is reported with the tokens and trained weight it removes."""

from __future__ import annotations

import json
import warnings
from dataclasses import fields

import pytest
from datasets import Dataset

from helpers import make_trainer, rows_of
from shard_fixture import toy_conversations, write_shard_dir
from trl import SFTConfig
from trl_plugin import TruncationWarning, load_prepared
from trl_plugin.config import parse_max_length

TRL_DEFAULT = next(f.default for f in fields(SFTConfig) if f.name == "max_length")  # 1024


def _set_manifest_max_length(directory, value):
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["max_length"] = value
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


@pytest.fixture(scope="module")
def long_dir(tmp_path_factory, tok):
    """Prepared without --max-length, with one example longer than TRL's default max_length."""
    convs = toy_conversations(6, seed=1)
    convs[2] = [{"role": "user", "content": " ".join(["rain fell over quiet hills"] * 260)},
                {"role": "assistant", "content": "it rained"}]
    return write_shard_dir(tmp_path_factory.mktemp("long"), tok, mode="im", conversations=convs, num_shards=1)


def test_max_length_values():
    assert parse_max_length("auto") == "auto"
    assert parse_max_length("None") is None and parse_max_length(None) is None
    assert parse_max_length("512") == 512 and parse_max_length(64) == 64
    for bad in ("abc", "0", -3, 1.5, True):
        with pytest.raises(ValueError, match="max_length must be an integer"):
            parse_max_length(bad)


def test_auto_keeps_every_token_of_data_prepared_without_max_length(tok, make_model, tmp_path, long_dir):
    original = rows_of(load_prepared(long_dir, tok))
    longest = max(len(r["input_ids"]) for r in original)
    assert longest > TRL_DEFAULT  # the case TRL's default would cut
    for dataset in (str(long_dir), load_prepared(long_dir, tok)):  # a path, or a Dataset loaded from the dir
        with warnings.catch_warnings():
            warnings.simplefilter("error", TruncationWarning)
            trainer = make_trainer(make_model(), dataset, tok, tmp_path, max_length="auto")
        assert trainer.args.max_length is None
        trained = rows_of(trainer.train_dataset)
        assert [r["input_ids"] for r in trained] == [r["input_ids"] for r in original]
        assert [r["loss_weights"] for r in trained] == [pytest.approx(r["loss_weights"]) for r in original]


def test_auto_is_the_default_and_takes_the_manifests_max_length(tok, make_model, tmp_path, im_dir, it_dir):
    from trl_plugin import WeightedSFTConfig

    assert WeightedSFTConfig(str(tmp_path / "d"), use_cpu=True).max_length == "auto"
    train = _set_manifest_max_length(write_shard_dir(tmp_path / "a", tok, mode="im", n=8), 2048)
    evaluation = _set_manifest_max_length(write_shard_dir(tmp_path / "b", tok, mode="it", n=8), 3000)
    trainer = make_trainer(make_model(), str(train), tok, tmp_path, max_length="auto",
                           eval_dataset=str(evaluation), eval_strategy="steps")
    assert trainer.args.max_length == 3000  # the largest limit of the data: neither dataset is cut
    # the caller's config object is not changed
    args = WeightedSFTConfig(str(tmp_path / "c"), use_cpu=True, report_to="none")
    from trl_plugin import WeightedSFTTrainer

    WeightedSFTTrainer(make_model(), args=args, train_dataset=str(train), processing_class=tok)
    assert args.max_length == "auto"


def test_auto_falls_back_to_trl_default_for_other_data(tok, make_model, tmp_path, im_dir):
    plain = Dataset.from_list(rows_of(load_prepared(im_dir, tok)))  # no manifest behind it
    trainer = make_trainer(make_model(), plain, tok, tmp_path, max_length="auto")
    assert trainer.args.max_length == TRL_DEFAULT


def test_auto_with_packing_packs_to_the_longest_example(tok, make_model, tmp_path, long_dir):
    longest = max(len(r["input_ids"]) for r in rows_of(load_prepared(long_dir, tok)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        trainer = make_trainer(make_model(), str(long_dir), tok, tmp_path, max_length="auto", packing=True)
    assert trainer.args.max_length == longest
    total = sum(len(r["input_ids"]) for r in rows_of(load_prepared(long_dir, tok)))
    assert sum(len(r["input_ids"]) for r in rows_of(trainer.train_dataset)) == total


def _expected_cost(rows, max_length, keep_end, weight_of):
    """Counted token by token, the plain Python way."""
    removed_tokens = removed_weight = total_weight = 0.0
    truncated = emptied = 0
    for row in rows:
        weights = weight_of(row)
        cut = weights[:-max_length] if keep_end else weights[max_length:]
        kept = weights[-max_length:] if keep_end else weights[:max_length]
        if len(weights) > max_length:
            truncated += 1
            removed_tokens += len(weights) - max_length
        removed_weight += sum(cut)
        total_weight += sum(weights)
        emptied += sum(weights) > 0 and not any(w > 0 for w in kept)
    return int(removed_tokens), removed_weight, total_weight, truncated, emptied


@pytest.mark.parametrize("mode", ["keep_start", "keep_end"])
@pytest.mark.parametrize("weighted", [True, False])
def test_truncation_is_reported_with_tokens_and_weight(tok, make_model, tmp_path, it_dir, im_dir, mode, weighted):
    max_length = 20
    # IT cut at the end loses outputs (some examples keep no trained token); IM cut at the start loses instructions
    data = it_dir if mode == "keep_start" else im_dir
    rows = rows_of(load_prepared(data, tok))
    if weighted:
        def weight_of(row):
            return row["loss_weights"]
    else:  # loss_weights_column=none trains on labels: every labelled token weighs 1
        def weight_of(row):
            return [1.0 if label != -100 else 0.0 for label in row["labels"]]
    tokens, weight, total_weight, truncated, emptied = _expected_cost(rows, max_length, mode == "keep_end",
                                                                     weight_of)
    assert tokens > 0 and weight > 0  # the case under test: truncation removes trained tokens
    assert emptied > 0 if mode == "keep_start" else emptied == 0
    total_tokens = sum(len(r["input_ids"]) for r in rows)
    with pytest.warns(TruncationWarning) as caught:
        trainer = make_trainer(make_model(), str(data), tok, tmp_path, max_length=max_length,
                               truncation_mode=mode, loss_weights_column="loss_weights" if weighted else "none")
    [message] = [str(w.message) for w in caught if w.category is TruncationWarning]
    assert f"max_length={max_length} ({mode}) truncates {truncated} of {len(rows)} train examples" in message
    assert f"removes {tokens:,} of {total_tokens:,} tokens ({100 * tokens / total_tokens:.1f} %)" in message
    assert f"and {weight:,.1f} of {total_weight:,.1f} trained weight ({100 * weight / total_weight:.1f} %)" in message
    longest = max(len(r["input_ids"]) for r in rows)
    assert f"The longest example has {longest} tokens" in message
    if emptied:
        assert f"; {emptied} examples keep no trained token and are dropped." in message
    else:
        assert "are dropped" not in message
    if weighted:
        # the report matches what the trainer really did
        kept = rows_of(trainer.train_dataset)
        assert len(kept) == len(rows) - emptied
        assert sum(sum(r["loss_weights"]) for r in kept) == pytest.approx(total_weight - weight)


def test_no_report_when_nothing_is_cut(tok, make_model, tmp_path, im_dir):
    lengths = [len(r["input_ids"]) for r in rows_of(load_prepared(im_dir, tok))]
    longest = max(lengths)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        make_trainer(make_model(), str(im_dir), tok, tmp_path, max_length=longest)
    n = lengths.count(longest)  # one token less: each of the longest examples loses its last token
    with pytest.warns(TruncationWarning, match=f"truncates {n} of {len(lengths)} train examples: it removes {n} of"):
        make_trainer(make_model(), str(im_dir), tok, tmp_path, max_length=longest - 1)
