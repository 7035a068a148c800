"""End to end through the command lines: `im-sft` (accelerate launch) and plain `trl sft` on prepared shards.

Uses the real `im-data prepare` on the embedded sample data when the pipeline is importable, else the test fixture's
shard directories. Subprocesses run offline (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import os
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
                *TRAIN_FLAGS], cwd=tmp_path)
    assert "'loss_instruction'" in log and "'eval_loss_output'" in log, log[-3000:]
    assert (run_dir / "model.safetensors").is_file() or any(run_dir.glob("*.safetensors"))


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
