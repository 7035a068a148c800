"""Every guard fires with a clear error (or warning)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
from datasets import Dataset

from helpers import make_trainer, rows_of
from im_data.policy import WeightPolicy
from shard_fixture import write_shard_dir
from trl_plugin import (FloatWeightsWarning, ManifestError, TokenizerMismatchError, WeightsError, load_prepared,
                        read_manifest)


def _rows(tok, im_dir, n=4):
    return [{k: v for k, v in r.items()} for r in rows_of(load_prepared(im_dir, tok), n)]


def test_missing_weights_column(tok, make_model, tmp_path, im_dir):
    ds = load_prepared(im_dir, tok).remove_columns(["loss_weights"])
    with pytest.raises(WeightsError, match="has no 'loss_weights' column"):
        make_trainer(make_model(), ds, tok, tmp_path)
    with pytest.raises(WeightsError, match="has no 'my_w' column"):
        make_trainer(make_model(), load_prepared(im_dir, tok), tok, tmp_path, loss_weights_column="my_w")


def test_untokenized_dataset(tok, make_model, tmp_path):
    ds = Dataset.from_dict({"text": ["hello world"] * 2})
    with pytest.raises(WeightsError, match="not tokenized"):
        make_trainer(make_model(), ds, tok, tmp_path)


def test_wrong_length_weights(tok, make_model, tmp_path, im_dir):
    rows = _rows(tok, im_dir)
    rows[2]["loss_weights"] = rows[2]["loss_weights"][:-1]
    with pytest.raises(WeightsError, match=r"row 2 \(example_id .*\): column 'loss_weights' has \d+ values but "
                                           r"input_ids has \d+"):
        make_trainer(make_model(), Dataset.from_list(rows), tok, tmp_path)


def test_wrong_length_in_shard_dir(tok, make_model, tmp_path, im_dir):
    rows = _rows(tok, im_dir)
    rows[1]["roles"] = rows[1]["roles"] + [4]
    bad = write_shard_dir(tmp_path / "bad", tok, rows=rows, num_shards=1)
    with pytest.raises(WeightsError, match="column 'roles' has"):
        make_trainer(make_model(), str(bad), tok, tmp_path)


def test_negative_or_nan_weights(tok, make_model, tmp_path, im_dir):
    rows = _rows(tok, im_dir)
    rows[0]["loss_weights"][3] = -1.0
    with pytest.raises(WeightsError, match="negative"):
        make_trainer(make_model(), Dataset.from_list(rows), tok, tmp_path)
    rows[0]["loss_weights"][3] = float("nan")
    with pytest.raises(WeightsError, match="NaN"):
        make_trainer(make_model(), Dataset.from_list(rows), tok, tmp_path)


def test_all_zero_weights(tok, make_model, tmp_path, im_dir):
    rows = _rows(tok, im_dir)
    for r in rows:
        r["loss_weights"] = [0.0] * len(r["loss_weights"])
    with pytest.raises(WeightsError, match="every loss weight of the train dataset is 0"):
        make_trainer(make_model(), Dataset.from_list(rows), tok, tmp_path)


def test_all_zero_after_truncation(tok, make_model, tmp_path, it_dir):
    # IT: the first 3 tokens are template/user, weight 0 -> every example is dropped by truncation
    with pytest.raises(WeightsError, match="is 0 \\(after truncation to max_length=3\\)"):
        make_trainer(make_model(), load_prepared(it_dir, tok), tok, tmp_path, max_length=3)


def test_tokenizer_fingerprint_mismatch(tok, make_model, tmp_path, im_dir):
    other = write_shard_dir(tmp_path / "other", tok, rows=_rows(tok, im_dir), fingerprint="0123456789abcdef")
    with pytest.raises(TokenizerMismatchError, match="fingerprint 0123456789abcdef"):
        load_prepared(other, tok)
    with pytest.raises(TokenizerMismatchError, match="fingerprint 0123456789abcdef"):
        make_trainer(make_model(), str(other), tok, tmp_path)
    # a Dataset loaded without a tokenizer still carries the manifest's fingerprint to the trainer
    with pytest.raises(TokenizerMismatchError, match="0123456789abcdef"):
        make_trainer(make_model(), load_prepared(other), tok, tmp_path)


def test_manifest_problems(tok, tmp_path, im_dir):
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_prepared(tmp_path)
    broken = write_shard_dir(tmp_path / "b", tok, rows=_rows(tok, im_dir), num_shards=1)
    manifest = read_manifest(broken)

    def rewrite(**shard_fields):
        shard = dataclasses.replace(manifest.shards[0], **shard_fields)
        (broken / "manifest.json").write_bytes(dataclasses.replace(manifest, shards=(shard,)).to_json())

    rewrite(num_rows=99)
    with pytest.raises(ManifestError, match="hold 4 rows, the manifest says 99"):
        load_prepared(broken)
    rewrite(sha256="0" * 64)
    with pytest.raises(ManifestError, match="sha256"):
        load_prepared(broken, verify_checksums=True)
    (broken / "manifest.json").write_text('{"schema_version": 1, "shards": []}')
    with pytest.raises(ManifestError, match="lacks the 'tokenizer' key"):
        load_prepared(broken)


def test_float_weights_warn_when_they_would_be_binarised(tok, make_model, tmp_path):
    wit = write_shard_dir(tmp_path / "wit", tok, policy=WeightPolicy.wit(0.3, 1.0), n=6)
    with pytest.warns(FloatWeightsWarning, match="fractional loss weights"):
        load_prepared(wit, warn_if_binarised=True)
    with pytest.warns(FloatWeightsWarning, match="every token with weight > 0 weighs 1"):
        make_trainer(make_model(), load_prepared(wit), tok, tmp_path, loss_weights_column="none")
    im = write_shard_dir(tmp_path / "im", tok, mode="im", n=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FloatWeightsWarning)
        load_prepared(im, warn_if_binarised=True)  # binary weights: nothing to say
        make_trainer(make_model(), load_prepared(im), tok, tmp_path, loss_weights_column="none")


def test_unsupported_combinations(tok, make_model, tmp_path, im_dir):
    with pytest.raises(ValueError, match="label smoothing"):
        make_trainer(make_model(), str(im_dir), tok, tmp_path, label_smoothing_factor=0.1)
    with pytest.raises(ValueError, match="dft"):
        make_trainer(make_model(), str(im_dir), tok, tmp_path, loss_type="dft")
    with pytest.raises(ValueError, match="loss_normalization"):
        make_trainer(make_model(), str(im_dir), tok, tmp_path, loss_normalization="mean")


def test_a_missing_local_dataset_is_not_asked_of_the_hub(tmp_path, monkeypatch, im_dir):
    from trl_plugin.train import check_local_dataset

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    for name in ("out/typo", "./typo", str(tmp_path / "typo"), "~/surely-not-here-im-data"):
        with pytest.raises(FileNotFoundError, match=f"dataset {name!r} does not exist"):
            check_local_dataset(name)
    for name in ("owner/name", "imdb", str(im_dir)):  # hub names, and paths that exist, pass
        check_local_dataset(name)
