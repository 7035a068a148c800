"""`im-sft`'s first hour: every mistake of a new user ends in one line, exit 2, before accelerate starts and before
the model loads (shown by what the process imported, not by a timer); our warnings print as one clean line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset

from conftest import tiny_llama
from helpers import make_trainer, rows_of
from shard_fixture import write_shard_dir
from trl_plugin import TokenizerMismatchError, load_prepared

REPO = Path(__file__).resolve().parents[2]

#: runs `im-sft` in this process and reports its exit status, its stderr and what it imported
_PROBE = """
import contextlib, io, json, sys
from trl_plugin.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    rc = main(sys.argv[2:])
heavy = sorted(m for m in ("torch", "trl", "accelerate", "trl_plugin.trainer") if m in sys.modules)
open(sys.argv[1], "w").write(json.dumps({"rc": rc, "err": err.getvalue(), "heavy": heavy}))
"""


def _env(cwd: Path) -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CI="1",
                PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                XDG_CACHE_HOME=str(cwd / "cache"), HF_DATASETS_CACHE=str(cwd / "hf-datasets"))


def im_sft(tmp_path: Path, *args: str) -> dict:
    result = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(result), *args], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(result.read_text())


def one_line(got: dict) -> str:
    lines = got["err"].strip().splitlines()
    assert got["rc"] == 2 and len(lines) == 1, got
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tok):
    """A tiny model whose weights file is garbage: any command that reaches the model load fails there."""
    path = tmp_path_factory.mktemp("model")
    tiny_llama(tok).save_pretrained(path)
    tok.save_pretrained(path)
    for weights in path.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    return path


@pytest.fixture(scope="module")
def big_tok(tmp_path_factory, tok):
    """The embedded tokenizer plus 5 added tokens (ids beyond the tiny model's embeddings), and data made with it."""
    from im_data.tokenizer import load_tokenizer

    path = tmp_path_factory.mktemp("bigtok")
    tok.save_pretrained(path)
    big = load_tokenizer(str(path))
    big.add_tokens([f"<extra_{i}>" for i in range(5)])
    big.save_pretrained(path)
    big = load_tokenizer(str(path))
    assert len(big) == len(tok) + 5
    return path, write_shard_dir(tmp_path_factory.mktemp("bigdata"), big, mode="im", n=4)


def test_a_flag_typo_is_one_line_with_a_suggestion(tmp_path, model_dir, im_dir):
    common = ["--model_name_or_path", str(model_dir), "--dataset_name", str(im_dir), "--output_dir", "run",
              "--use_cpu"]
    line = one_line(im_sft(tmp_path, *common, "--los_normalization", "sequence"))
    assert line == ("im-sft: error: unrecognized option --los_normalization: did you mean --loss_normalization? "
                    "(im-sft --help lists every option)")
    # accelerate's options are known too, and suggested
    line = one_line(im_sft(tmp_path, *common, "--num-proceses", "1"))
    assert line.startswith("im-sft: error: unrecognized option --num-proceses: did you mean --num_processes?")
    # argparse's own errors (a bad choice, of ours or of accelerate's) are one line too
    line = one_line(im_sft(tmp_path, *common, "--loss_normalization", "seq"))
    assert line.startswith("im-sft: error: argument --loss_normalization/--loss-normalization: invalid choice: "
                           "'seq' (choose from 'weight', 'tokens', 'sequence')")
    got = im_sft(tmp_path, *common, "--num_processes", "abc")
    assert one_line(got).startswith("im-sft: error: argument --num_processes/--num-processes: invalid int value")
    assert "accelerate" in got["heavy"]  # the launcher's parser checked it; nothing was launched


def test_a_missing_dataset_is_reported_before_anything_heavy_is_imported(tmp_path, model_dir):
    got = im_sft(tmp_path, "--model_name_or_path", str(model_dir), "--dataset_name", "./out/typo",
                 "--output_dir", "run", "--use_cpu")
    assert one_line(got) == ("im-sft: error: dataset './out/typo' does not exist: give the directory `im-data "
                             "prepare --output` wrote, or a hub dataset as OWNER/NAME")
    assert got["heavy"] == []  # no TRL, no torch: long before the model loads


def test_a_broken_manifest_is_reported_before_the_launch(tmp_path, model_dir, im_dir, tok):
    broken = write_shard_dir(tmp_path / "broken", tok, rows=rows_of(load_prepared(im_dir, tok), 2), num_shards=1)
    (broken / "shards" / "part-00000-of-00001.arrow").unlink()
    got = im_sft(tmp_path, "--model_name_or_path", str(model_dir), "--dataset_name", str(broken),
                 "--output_dir", "run", "--use_cpu")
    assert "lists shards/part-00000-of-00001.arrow, which does not exist" in one_line(got)
    assert got["heavy"] == []


def test_tokenizer_mismatch_and_too_small_embeddings_before_the_model_loads(tmp_path, model_dir, big_tok, tok):
    path, data = big_tok
    common = ["--model_name_or_path", str(model_dir), "--dataset_name", str(data), "--output_dir", "run", "--use_cpu"]
    got = im_sft(tmp_path, *common)
    assert one_line(got).startswith("im-sft: error: the shards of the train dataset were tokenized by ")
    assert got["heavy"] == []
    # following the advice with the data's tokenizer, larger than the model's embeddings: both sizes, one line
    got = im_sft(tmp_path, *common, "--tokenizer_name_or_path", str(path))
    assert one_line(got) == (
        f"im-sft: error: the tokenizer {str(path)!r} has {len(tok) + 5:,} tokens, but the model {str(model_dir)!r} "
        f"embeds only {len(tok):,} (ids {len(tok):,} to {len(tok) + 4:,} cannot be looked up): train with the "
        "tokenizer the model was made for, or resize the model's embeddings first "
        "(model.resize_token_embeddings(len(tokenizer))).")
    assert got["heavy"] == []


def test_with_a_config_file_the_checks_run_after_parsing_still_before_the_launch(tmp_path, model_dir):
    config = tmp_path / "sft.yaml"
    config.write_text(f"model_name_or_path: {model_dir}\ndataset_name: ./nope\noutput_dir: run\nuse_cpu: true\n")
    got = im_sft(tmp_path, "--config", str(config))
    assert one_line(got).startswith("im-sft: error: dataset './nope' does not exist")
    assert "trl_plugin.trainer" not in got["heavy"]  # nothing was launched, no model was loaded


def test_the_trainer_refuses_a_tokenizer_beyond_the_embeddings(tmp_path, make_model, big_tok, im_dir, tok):
    from im_data.tokenizer import load_tokenizer

    big = load_tokenizer(str(big_tok[0]))
    rows = rows_of(load_prepared(im_dir, tok), 4)
    with pytest.raises(TokenizerMismatchError, match=f"has {len(big):,} tokens, but the model embeds only "
                                                     f"{len(tok):,}"):
        make_trainer(make_model(), Dataset.from_list(rows), big, tmp_path)


_WARN = """
import warnings
from trl_plugin.cli import one_line_warnings
from trl_plugin.truncation import TruncationWarning
one_line_warnings()
def trainer_code():
    warnings.warn("max_length=48 (keep_start) truncates 3 of 8 train\\nexamples.", TruncationWarning, stacklevel=2)
trainer_code()
warnings.warn("someone else's warning", UserWarning)
"""


def test_our_warnings_print_as_one_clean_line(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _WARN], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    lines = proc.stderr.splitlines()
    assert lines[0] == "im-sft: TruncationWarning: max_length=48 (keep_start) truncates 3 of 8 train examples."
    assert lines[1].endswith("UserWarning: someone else's warning") and "<string>" in lines[1]  # Python's format
