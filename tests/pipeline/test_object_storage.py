"""Inputs, output and run folder on object storage: a real S3-compatible server (moto in server mode, started on
loopback by the ``s3_server`` fixture), the DirectRunner and a real Dask scheduler with workers. Same rows and
same checksums as a local run; the readers (audit, inspect, load_prepared) read the S3 output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from im_data import storage
from im_data.dataset import MANIFEST_FILE, PreparedDataset, is_prepared_dir, read_manifest
from pipeline_helpers import DATA, read_output, run_cli

REPO = Path(__file__).resolve().parents[2]
INPUTS = [DATA / "bad.jsonl", REPO / "im_data/assets/sample.jsonl"]
COMMON = ["--num-shards", "2", "--eval-fraction", "0.2", "-q"]
BUCKET = "s3://im-data"


@pytest.fixture(scope="module")
def local_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    assert run_cli("prepare", *INPUTS, "-o", out, *COMMON) == 0
    return read_output(out)


def _same_output(a: dict, b: dict) -> None:
    assert a["rows"] == b["rows"] and a["stats"] == b["stats"]
    assert a["manifest"]["counts"] == b["manifest"]["counts"]
    assert [(s["path"], s["sha256"]) for s in a["manifest"]["shards"]] == \
        [(s["path"], s["sha256"]) for s in b["manifest"]["shards"]]
    assert a["rejects"] == b["rejects"]


def _keys(prefix: str) -> list[str]:
    return storage.list_files(prefix)


def test_direct_runner_writes_to_s3(s3_server, local_out, tmp_path, capsys):
    url = f"{BUCKET}/direct/out"
    assert run_cli("prepare", *INPUTS, "-o", url, *COMMON) == 0
    _same_output(local_out, read_output(url))
    m = read_manifest(url)
    assert _keys(url) == sorted(m.owned_files)  # exactly the listed files, no run folder left behind
    assert not [k for k in storage.list_dir(f"{BUCKET}/direct") if "im-data-tmp" in k]
    # the readers: audit, inspect and the plugin's load_prepared
    capsys.readouterr()
    assert run_cli("audit", url) == 0
    ratio = read_output(url)["stats"]["dataset_ratio"]
    assert f"{ratio:.3f}" in capsys.readouterr().out
    first = PreparedDataset.open(url).read_shard(m.shards[0])
    assert run_cli("inspect", url, "--index", "0", "--tokens", "--color", "never") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    ids = first.column("input_ids")[0].as_py()
    assert len(lines) == 1 + len(ids) and [int(x.split()[-3]) for x in lines[1:]] == ids
    from trl_plugin import load_prepared

    ds = load_prepared(url, cache_dir=str(tmp_path / "cache"), verify_checksums=True)
    train = PreparedDataset.open(url).read_table("train")
    assert ds.data.table.to_pylist() == train.to_pylist() and ds.num_rows == m.splits["train"]


def test_overwrite_and_failures_on_s3(s3_server, capsys):
    url = f"{BUCKET}/overwrite/out"
    assert run_cli("prepare", *INPUTS, "-o", url, "-q", "--num-shards", "3") == 0
    assert run_cli("prepare", *INPUTS, "-o", url, "-q", "--num-shards", "1", "--overwrite") == 0
    m = read_manifest(url)
    assert _keys(url) == sorted(m.owned_files) and len(m.shards) == 1  # the three old shards are gone
    # a foreign object: refused, untouched
    storage.write_bytes_atomic(f"{url}/notes.txt", b"mine")
    before = {k: storage.read_bytes(f"{url}/{k}") for k in _keys(url)}
    capsys.readouterr()
    assert run_cli("prepare", *INPUTS, "-o", url, "-q", "--overwrite") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and url in err[0] and "notes.txt" in err[0]
    assert {k: storage.read_bytes(f"{url}/{k}") for k in _keys(url)} == before
    # an all-rejected run publishes no manifest at the final location
    junk = f"{BUCKET}/overwrite/junk.jsonl"
    storage.write_bytes_atomic(junk, b"not json\n[1]\n")
    failed = f"{BUCKET}/overwrite/failed"
    assert run_cli("prepare", junk, "-o", failed, "-q") == 3
    assert not is_prepared_dir(failed) and not storage.exists(f"{failed}/{MANIFEST_FILE}")


def test_s3_inputs(s3_server, local_out):
    for path in INPUTS:
        storage.write_bytes_atomic(f"{BUCKET}/raw/{path.name}", path.read_bytes())
    url = f"{BUCKET}/from-s3/out"
    assert run_cli("prepare", f"{BUCKET}/raw/*.jsonl", "-o", url, *COMMON) == 0
    got = read_output(url)
    # the example ids hash the source's name (here the URL), so compare everything else
    strip = lambda rows: sorted(json.dumps({k: v for k, v in r.items() if k != "example_id"}, sort_keys=True)  # noqa
                                for r in rows)
    assert strip(got["rows"]) == strip(local_out["rows"])
    assert got["manifest"]["counts"]["read"] == local_out["manifest"]["counts"]["read"]
    assert got["manifest"]["counts"]["rejected_by_reason"] == local_out["manifest"]["counts"]["rejected_by_reason"]
    assert {r["source"] for r in got["rejects"]} == {f"{BUCKET}/raw/bad.jsonl"}


def test_dask_workers_write_to_s3(s3_server, scheduler_address, local_out):
    url = f"{BUCKET}/dask/out"
    assert run_cli("prepare", *INPUTS, "-o", url, *COMMON, "--runner", "dask", "--dask-address",
                   scheduler_address) == 0
    _same_output(local_out, read_output(url))
    assert _keys(url) == sorted(read_manifest(url).owned_files)
