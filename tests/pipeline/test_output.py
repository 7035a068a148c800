"""The output directory as a Hugging Face dataset (card, configs, evaluation split) and safe publishing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from im_data.dataset import MANIFEST_FILE, REJECT_COLUMNS, PreparedDataset, is_prepared_dir, read_manifest
from pipeline_helpers import DATA, read_output, run_cli

REPO = Path(__file__).resolve().parents[2]
BAD = DATA / "bad.jsonl"


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (what "left byte-identical" compares)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _card_yaml(out: Path) -> dict:
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture(scope="module")
def eval_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    assert run_cli("prepare", BAD, REPO / "im_data/assets/sample.jsonl", "-o", out, "--num-shards", 2,
                   "--eval-fraction", "0.25", "-q") == 0
    return out


# ------------------------------------------------------------------------------------------- dataset card
def test_load_dataset_reads_exactly_the_shards(eval_out, tmp_path):
    import datasets

    m = read_manifest(eval_out)
    loaded = datasets.load_dataset(str(eval_out), cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train", "test"}
    prepared = PreparedDataset.open(eval_out)
    for split in ("train", "test"):
        shards = prepared.read_table(split)
        assert loaded[split].num_rows == shards.num_rows == m.splits[split] > 0
        assert loaded[split].data.table.to_pylist() == shards.to_pylist()
    assert m.splits["train"] + m.splits["test"] == m.counts.written


def test_card_yaml_configs_and_body(eval_out):
    from huggingface_hub import DatasetCard

    m = read_manifest(eval_out)
    card = DatasetCard.load(eval_out / "README.md")
    meta = card.data.to_dict()
    assert meta == _card_yaml(eval_out)
    default, rejects = meta["configs"]
    assert default["config_name"] == "default" and default["default"] is True
    assert default["data_files"] == [
        {"split": "train", "path": ["shards/part-00000-of-00002.arrow", "shards/part-00001-of-00002.arrow"]},
        {"split": "test", "path": ["shards/test/part-00000-of-00001.arrow"]}]
    assert rejects == {"config_name": "rejects",
                       "data_files": [{"split": r.reason, "path": f"rejects/{r.reason}.arrow"} for r in m.rejects]}
    body = card.text
    for needle in (m.tokenizer_fingerprint, m.policy_fingerprint, m.chat_template["sha256"][:16], "## How to train",
                   "im-sft --model_name_or_path", "trl sft --model_name_or_path", "## Audit recommendation",
                   "dataset ratio", "### Rejects by reason"):
        assert needle in body, needle
    for r in m.rejects:
        assert f"| `{r.reason}` | {r.count:,} | `rejects/{r.reason}.jsonl` |" in body
    assert f"| read | {m.counts.read:,} |" in body and f"| split `test` | {m.splits['test']:,} |" in body
    ratio = read_output(eval_out)["stats"]["dataset_ratio"]
    assert f"| dataset ratio (Σ instruction / Σ output) | {ratio:,.4f} |" in body


def test_rejects_config_loads_every_dead_letter(eval_out, tmp_path):
    import datasets

    m = read_manifest(eval_out)
    rejects = datasets.load_dataset(str(eval_out), "rejects", cache_dir=str(tmp_path / "cache"))
    assert {split: ds.num_rows for split, ds in rejects.items()} == dict(m.counts.rejected_by_reason)
    # the typed copy holds what the JSON Lines dead letters hold, line by line
    for r in m.rejects:
        lines = [json.loads(x) for x in (eval_out / r.path).read_text().splitlines()]
        typed = rejects[r.reason].to_list()
        assert len(typed) == len(lines) == r.count
        for row, line in zip(typed, lines):
            assert row["source"] == os.path.normpath(str(BAD)) and row["reason"] == r.reason
            for name, _ in REJECT_COLUMNS:
                want = line.get(name)
                if want is not None and name == "raw" and not isinstance(want, str):
                    want = json.dumps(want, ensure_ascii=False, sort_keys=True)
                assert row[name] == want, name


def test_fractional_policy_card_warns(tmp_path):
    out = tmp_path / "wit"
    assert run_cli("prepare", BAD, "-o", out, "--mode", "wit", "--prompt-weight", "0.1", "-q") == 0
    body = (out / "README.md").read_text()
    assert "**Warning**: this policy has fractional weights" in body and "trl sft --model_name_or_path" not in body
    assert "| loss weight | 0.00 | 0.10 | 0.10 | 0.10 | 1.00 | 1.00 |" in body


# --------------------------------------------------------------------------------------- evaluation split
def _independent_eval_ids(ids, fraction):
    """The documented recipe, recomputed here: sha256('eval|' + id), first 16 hex digits, below fraction * 2**64."""
    return {i for i in ids if int(hashlib.sha256(("eval|" + i).encode()).hexdigest()[:16], 16) < fraction * 2 ** 64}


def test_eval_split_is_deterministic_by_example_id(eval_out, tmp_path):
    a = PreparedDataset.open(eval_out)
    eval_ids = set(a.read_table("test", ["example_id"]).column("example_id").to_pylist())
    train_ids = set(a.read_table("train", ["example_id"]).column("example_id").to_pylist())
    assert not eval_ids & train_ids
    assert eval_ids == _independent_eval_ids(eval_ids | train_ids, 0.25)
    # another shard count and the multi-process runner: the same evaluation examples, byte for byte
    other = tmp_path / "other"
    assert run_cli("prepare", BAD, REPO / "im_data/assets/sample.jsonl", "-o", other, "--num-shards", 3,
                   "--eval-fraction", "0.25", "-q", "--direct_num_workers", "2",
                   "--direct_running_mode", "multi_processing") == 0
    b = PreparedDataset.open(other)
    assert b.read_table("test").to_pylist() == a.read_table("test").to_pylist()
    assert b.manifest.shards_of("test")[0].sha256 == a.manifest.shards_of("test")[0].sha256
    assert run_cli("prepare", BAD, "-o", tmp_path / "bad", "--eval-fraction", "1.5") == 2
    assert run_cli("prepare", BAD, "-o", tmp_path / "bad", "--eval-fraction", "0.1", "--eval-split", "train") == 2


# -------------------------------------------------------------------------------------------- overwriting
@pytest.mark.parametrize("overwrite", [False, True])
def test_overwrite_refuses_a_folder_with_foreign_files(tmp_path, capsys, overwrite):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("precious")
    (out / "sub" / "data.bin").write_bytes(os.urandom(64))
    before = _tree(out)
    assert run_cli("prepare", BAD, "-o", out, "-q", *(["--overwrite"] if overwrite else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "not an im-data output" in err[0]
    assert _tree(out) == before
    assert not [p for p in tmp_path.iterdir() if "im-data-tmp" in p.name]


def test_overwrite_replaces_only_an_earlier_output(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("prepare", BAD, "-o", out, "-q", "--num-shards", 3) == 0
    assert run_cli("prepare", BAD, "-o", out, "-q") == 2
    assert "--overwrite" in capsys.readouterr().err
    # an earlier output with one foreign file in it: refused, untouched
    (out / "shards" / "mine.txt").write_text("x")
    before = _tree(out)
    assert run_cli("prepare", BAD, "-o", out, "-q", "--overwrite") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shards/mine.txt" in err[0] and str(out) in err[0]
    assert _tree(out) == before
    (out / "shards" / "mine.txt").unlink()
    assert run_cli("prepare", BAD, "-o", out, "-q", "--overwrite", "--num-shards", 1) == 0
    m = read_manifest(out)
    assert sorted(_tree(out)) == sorted(m.owned_files)  # the three old shards are gone, nothing else is there
    assert [s.path for s in m.shards] == ["shards/part-00000-of-00001.arrow"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("prepare", BAD, "-o", empty, "-q") == 0 and is_prepared_dir(empty)


def test_output_and_inputs_must_not_nest(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_bytes(BAD.read_bytes())
    assert run_cli("prepare", data / "a.jsonl", "-o", data, "-q") == 2
    assert "input" in capsys.readouterr().err
    import datasets

    datasets.Dataset.from_dict({"prompt": ["Hi"], "completion": ["Hello"]}).save_to_disk(str(tmp_path / "disk"))
    capsys.readouterr()
    assert run_cli("prepare", tmp_path / "disk", "-o", tmp_path / "disk" / "out", "-q") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inside the input" in err[0]
    assert not (tmp_path / "disk" / "out").exists() and (data / "a.jsonl").read_bytes() == BAD.read_bytes()


# ------------------------------------------------------------------------------------------- killed runs
def _complete_state(out: Path) -> tuple[str, ...]:
    """The shard checksums of a complete output: manifest present, every listed file present and intact, and
    nothing else in the folder."""
    prepared = PreparedDataset.open(out)
    prepared.verify(checksums=True)
    assert sorted(_tree(out)) == sorted(prepared.manifest.owned_files)
    return tuple(s.sha256 for s in prepared.manifest.shards)


def _cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "pipelines", "prepare", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def test_a_run_killed_at_any_point_leaves_the_old_or_the_new_output(tmp_path):
    out = tmp_path / "out"
    new_args = [BAD, REPO / "im_data/assets/sample.jsonl", "-o", out, "-q", "--num-shards", 2, "--overwrite"]
    assert run_cli("prepare", BAD, "-o", out, "-q", "--num-shards", 1) == 0
    old, old_files = _complete_state(out), _tree(out)
    started = time.monotonic()
    assert _cli(new_args, tmp_path).wait(120) == 0
    duration = time.monotonic() - started
    new = _complete_state(out)
    assert new != old
    seen = set()
    for fraction in (0.6, 0.9, 1.0):
        shutil.rmtree(out)  # put the old output back, file for file
        for rel, data in old_files.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(data)
        proc = _cli(new_args, tmp_path)
        time.sleep(duration * fraction)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        state = _complete_state(out)
        assert state in (old, new), fraction
        seen.add(state)
    assert old in seen
    # the next run on the same output removes the run folders the killed runs left behind
    assert run_cli("prepare", *new_args) == 0 and _complete_state(out) == new
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.im-data-")]


def test_stale_run_folders_only_of_dead_runs(tmp_path):
    from pipelines.manifest import OWNER_FILE, STALE_AFTER_S, make_work_dir, remove_stale_runs

    out = tmp_path / "out"
    mine = Path(make_work_dir(str(out)))  # this live process owns it: kept
    dead = Path(make_work_dir(str(out)))
    owner = json.loads((dead / OWNER_FILE).read_text())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (dead / OWNER_FILE).write_text(json.dumps(dict(owner, pid=proc.pid)))
    foreign_host = Path(make_work_dir(str(out)))
    (foreign_host / OWNER_FILE).write_text(json.dumps(dict(owner, host="elsewhere", pid=1)))
    old_foreign = Path(make_work_dir(str(out)))
    (old_foreign / OWNER_FILE).write_text(json.dumps(dict(owner, host="elsewhere",
                                                          started_at=time.time() - STALE_AFTER_S - 60)))
    unrelated = tmp_path / ".other.im-data-tmp-123"
    unrelated.mkdir()
    removed = {Path(p).name for p in remove_stale_runs(str(out))}
    assert removed == {dead.name, old_foreign.name}
    assert mine.is_dir() and foreign_host.is_dir() and unrelated.is_dir()


def test_manifest_is_the_only_reader_of_itself():
    """No module outside the contract parses manifest.json by hand."""
    offenders = []
    for path in list((REPO / "pipelines").glob("*.py")) + list((REPO / "trl_plugin").glob("*.py")):
        text = path.read_text()
        if '"manifest.json"' in text or "'manifest.json'" in text:
            offenders.append(path.name)
    assert offenders == []
    assert MANIFEST_FILE == "manifest.json"


def test_shard_files_are_arrow_ipc_streams(eval_out):
    prepared = PreparedDataset.open(eval_out)
    for path in prepared.shard_files(None):
        with pa.memory_map(path) as src:
            assert pa.ipc.open_stream(src).schema.names[0] == "input_ids"


# ------------------------------------------------------------------------------------------ reject rates
def test_an_all_rejected_run_exits_3_and_publishes_nothing(tmp_path, capsys):
    src = tmp_path / "junk.jsonl"
    src.write_text("not json\n{\"messages\": []}\n[1, 2]\n")
    out = tmp_path / "out"
    assert run_cli("prepare", BAD, "-o", out, "-q") == 0
    before = _tree(out)
    assert run_cli("prepare", src, "-o", out, "-q", "--overwrite") == 3
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("im-data prepare: error: no example was written: all 3 records were rejected")
    assert err.strip().splitlines() == [last]  # -q: the error line only, no summary table (docs/CLI.md)
    rejects = Path(last.rsplit(" in ", 1)[1])
    assert sum(len(p.read_text().splitlines()) for p in rejects.glob("*.jsonl")) == 3
    assert _tree(out) == before  # the earlier output is untouched; no manifest of the failed run anywhere
    assert not list(rejects.parent.glob("shards/*")) and not (rejects.parent / MANIFEST_FILE).exists()
    # the kept dead letters survive later runs on the same output
    assert run_cli("prepare", BAD, "-o", tmp_path / "out", "-q", "--overwrite") == 0 and rejects.is_dir()


def test_max_reject_rate(tmp_path, capsys, caplog):
    # bad.jsonl: 12 of 16 records are rejected (75 %)
    assert run_cli("prepare", BAD, "-o", tmp_path / "strict", "-q", "--max-reject-rate", "0.5") == 3
    err = capsys.readouterr().err
    assert "12 of 16 records were rejected (75.0 %), more than --max-reject-rate 0.5" in err
    assert not (tmp_path / "strict").exists()
    with caplog.at_level("WARNING", logger="im_data.prepare"):
        assert run_cli("prepare", BAD, "-o", tmp_path / "lenient", "-q", "--max-reject-rate", "0.8") == 0
    assert any("12 of 16 records were rejected (75.0 %)" in r.getMessage() and "rejects" in r.getMessage()
               for r in caplog.records)
    assert is_prepared_dir(tmp_path / "lenient")
    assert run_cli("prepare", BAD, "-o", tmp_path / "x", "--max-reject-rate", "1.5") == 2


def test_beam_metrics_count_read_written_and_rejected(tmp_path):
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter

    from pipelines.build import METRICS_NAMESPACE, build_pipeline
    from pipelines.config import PrepareConfig
    from pipelines.manifest import make_work_dir
    from pipelines.read import expand_inputs

    config = PrepareConfig(sources=expand_inputs([str(BAD)]), work_dir=make_work_dir(str(tmp_path / "out")),
                           num_shards=2)
    p = beam.Pipeline(runner="DirectRunner")
    build_pipeline(p, config)
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]}
    assert run_cli("prepare", BAD, "-o", tmp_path / "published", "-q") == 0
    counts = read_manifest(tmp_path / "published").counts
    expected = {"read": counts.read, "written": counts.written, "rejected": counts.rejected}
    expected.update({f"rejected_{reason}": n for reason, n in counts.rejected_by_reason.items()})
    assert counters == expected


def test_card_commands_work_from_a_moved_folder(tmp_path, monkeypatch):
    """The card's `im-sft` / `trl sft` commands and Python lines name the dataset by a path relative to the folder
    (``./NAME``, from the folder that holds it), so they still hold once the folder is moved or copied: no local
    path of the machine that made it."""
    import datasets

    from trl_plugin import load_prepared

    made = tmp_path / "made" / "out"
    assert run_cli("prepare", DATA / "bad.jsonl", "-o", made, "-q") == 0
    moved = tmp_path / "elsewhere" / "out"
    moved.parent.mkdir()
    shutil.move(str(made), str(moved))
    card = (moved / "README.md").read_text(encoding="utf-8")
    assert str(tmp_path) not in card
    commands = [line for line in card.splitlines() if line.startswith(("im-sft ", "trl sft "))]
    assert [c.split()[0] for c in commands] == ["im-sft", "trl"]
    names = {c.split("--dataset_name ", 1)[1].split()[0] for c in commands}
    names |= set(re.findall(r'(?:load_dataset|load_prepared)\("([^"]+)"\)', card))
    assert names == {"./out"} and "Run these commands in the folder that holds this one" in card
    monkeypatch.chdir(moved.parent)  # where the card says to run them
    for name in names:
        assert is_prepared_dir(name)  # what im-sft checks before training
        m = read_manifest(name)
        assert datasets.load_dataset(name, cache_dir=str(tmp_path / "cache"))["train"].num_rows == m.splits["train"]
        assert load_prepared(name).num_rows == m.splits["train"]


def test_card_names_hub_and_object_storage_datasets_as_published():
    from im_data.card import dataset_reference

    assert dataset_reference("hf://datasets/acme/im-mix") == ("acme/im-mix", "")
    assert dataset_reference("hf://datasets/acme/im-mix/sub") == ("acme/im-mix", "")
    assert dataset_reference("s3://bucket/runs/mix/") == ("s3://bucket/runs/mix", "")
    assert dataset_reference(None) == ("DIR", "")
    assert dataset_reference("/data/out")[0] == "./out" and dataset_reference("/data/out/")[0] == "./out"
