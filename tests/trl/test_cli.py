"""End to end through the command lines: `im-sft` (accelerate launch) and plain `trl sft` on prepared shards.

Uses the real `im-data prepare` on the embedded sample data when the pipeline is importable, else the test fixture's
shard directories. Subprocesses run offline (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_llama

REPO = Path(__file__).resolve().parents[2]
TRAIN_FLAGS = ["--max_steps", "3", "--per_device_train_batch_size", "4", "--report_to", "none", "--use_cpu",
               "--save_strategy", "no", "--logging_steps", "1", "--learning_rate", "1e-3",
               "--gradient_checkpointing", "false", "--disable_tqdm", "true"]


def _env(cwd=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CI="1",
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                                                         os.environ.get("PYTHONPATH")])))
    if cwd is not None:  # a private datasets cache: other test sessions may share ~/.cache
        env["HF_DATASETS_CACHE"] = str(Path(cwd) / "hf-datasets-cache")
    return env


def _run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tok):
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tok):
    """{mode: dir} from `im-data prepare` on the embedded sample data (fixture shards if no pipeline)."""
    root = tmp_path_factory.mktemp("prepared")
    out = {}
    try:
        import pipelines.cli  # noqa: F401
        have_pipeline = True
    except ImportError:
        have_pipeline = False
    for mode in ("it", "im"):
        if have_pipeline:
            _run([sys.executable, "-m", "pipelines", "prepare", "--output", str(root / mode), "--mode", mode, "-q"],
                 cwd=root)
        else:
            from shard_fixture import write_shard_dir

            write_shard_dir(root / mode, tok, mode=mode, n=24)
        out[mode] = root / mode
    return out


def test_im_sft_trains_on_a_prepared_dir(tmp_path, tiny_model_dir, prepared):
    run_dir = tmp_path / "run"
    log = _run([sys.executable, "-m", "trl_plugin.cli", "--model_name_or_path", str(tiny_model_dir),
                "--dataset_name", str(prepared["im"]), "--eval_dataset_name", str(prepared["im"]),
                "--eval_strategy", "steps", "--eval_steps", "3", "--output_dir", str(run_dir),
                "--loss_normalization", "sequence", "--segment_metrics", "all", "--num_processes", "1",
                "--max_length", "48", *TRAIN_FLAGS], cwd=tmp_path)
    assert "'loss_instruction'" in log and "'eval_loss_output'" in log, log[-3000:]
    assert (run_dir / "model.safetensors").is_file() or any(run_dir.glob("*.safetensors"))
    # a max_length below the data's lengths is reported, for the train and the eval data
    for name in ("train", "eval"):
        assert re.search(rf"TruncationWarning: max_length=48 \(keep_start\) truncates \d+ of 80 {name} examples: it "
                         r"removes [\d,]+ of [\d,]+ tokens", log), log[-3000:]


def _im_sft(args, cwd, **env):
    return subprocess.run([sys.executable, "-m", "trl_plugin.cli", *args], cwd=cwd, env={**_env(cwd), **env},
                          capture_output=True, text=True, timeout=300)


def test_im_sft_without_arguments_prints_the_usage(tmp_path):
    proc = _im_sft([], tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == ""
    assert lines[0].startswith("usage: im-sft --model_name_or_path MODEL --dataset_name DATA")
    assert lines[-1] == "im-sft: error: no arguments given (im-sft --help lists every option)"
    proc = _im_sft(["--output_dir", "x", "--use_cpu"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("im-sft: error: the following arguments are required: "
                                                    "--model_name_or_path, --dataset_name (im-sft --help lists "
                                                    "every option)")


def test_im_sft_error_is_the_last_line_and_debug_shows_the_traceback(tmp_path):
    proc = _im_sft(["--model_name_or_path", "m", "--dataset_name", "d", "--max_length", "abc"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == ("im-sft: error: max_length must be an integer, 'none' or "
                                                    "'auto', got 'abc'")
    assert "Traceback" not in proc.stderr
    proc = _im_sft(["--model_name_or_path", "m", "--dataset_name", "d", "--max_length", "abc", "--debug"], tmp_path)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("ValueError: max_length must be an integer, 'none' or 'auto', "
                                                    "got 'abc'")


def test_im_sft_error_in_the_training_process(tmp_path, tiny_model_dir, tok, prepared):
    """An error raised by the launched training process (here: shards of another tokenizer) ends the output as one
    line with its own message: no traceback, no CalledProcessError."""
    import json

    other = tmp_path / "other"
    shutil.copytree(prepared["im"], other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["tokenizer"]["fingerprint"] = "0123456789abcdef"
    (other / "manifest.json").write_text(json.dumps(manifest))
    proc = _im_sft(["--model_name_or_path", str(tiny_model_dir), "--dataset_name", str(other),
                    "--output_dir", str(tmp_path / "run"), "--num_processes", "1", *TRAIN_FLAGS], tmp_path)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert last.startswith("im-sft: error: the shards of the train dataset were tokenized by "), last
    assert "(fingerprint 0123456789abcdef)" in last and last.endswith("(--tokenizer_name_or_path).")
    assert "Traceback" not in proc.stderr and "CalledProcessError" not in proc.stderr


_PROBE = """
import contextlib, io, json, sys
from trl_plugin.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = main(sys.argv[2:])
heavy = sorted(m for m in ("torch", "trl", "transformers", "accelerate", "datasets") if m in sys.modules)
open(sys.argv[1], "w").write(json.dumps({"rc": rc, "out": out.getvalue(), "heavy": heavy}))
"""


def _probe(tmp_path, *args):
    import json

    result = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(result), *args], cwd=tmp_path,
                          env={**_env(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "100"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(result.read_text())


def test_im_sft_version_and_cached_help_import_nothing_heavy(tmp_path, monkeypatch):
    from importlib.metadata import version

    from trl_plugin.train import make_parser

    got = _probe(tmp_path, "--version")
    assert got["rc"] == 0 and got["heavy"] == []
    assert got["out"] == (f"im-sft {version('im-data')} (trl {version('trl')}, transformers "
                          f"{version('transformers')}, torch {version('torch')})\n")
    monkeypatch.setenv("COLUMNS", "100")
    expected = make_parser(prog="im-sft").format_help()
    first = _probe(tmp_path, "--help")  # builds the help from TRL's dataclasses, and keeps it
    assert first["rc"] == 0 and first["out"] == expected and "torch" in first["heavy"]
    second = _probe(tmp_path, "--help")  # from the cache: the same text, without importing torch or TRL
    assert second == {"rc": 0, "out": expected, "heavy": []}


def test_im_sft_help_lists_the_plugin_fields():
    from trl_plugin.train import make_parser

    out = make_parser(prog="im-sft").format_help()
    for flag in ("--loss_weights_column", "--loss_normalization", "--segment_metrics", "--dataset_name",
                 "--packing", "--eval_dataset_name", "--per_device_train_batch_size"):
        assert flag in out


@pytest.mark.parametrize("mode", ["it", "im"])
def test_plain_trl_sft_trains_on_the_labels_column(tmp_path, tiny_model_dir, prepared, mode):
    """Binary weights are carried exactly by `labels`: stock `trl sft` trains IT or IM with no plugin at all, on the
    prepared directory itself (its dataset card points `datasets` at the shards)."""
    run_dir = tmp_path / "run"
    log = _run(["trl", "sft", "--model_name_or_path", str(tiny_model_dir),
                "--dataset_name", str(prepared[mode]), "--output_dir", str(run_dir), *TRAIN_FLAGS],
               cwd=tmp_path)
    assert "'loss'" in log and any(run_dir.glob("*.safetensors"))
