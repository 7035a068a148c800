"""The shard-format table of the output contract (``im_data.dataset.SHARD_FORMAT_TABLE``): every format writes
and reads back the same rows, and a name that is not in the table is an error everywhere it can be given."""

from __future__ import annotations

import io

import pyarrow as pa
import pytest

from im_data import dataset
from im_data.dataset import (FORMATS, SHARD_FORMAT_TABLE, Manifest, ManifestError, format_of_file,
                             iter_file_batches, reject_table_path, shard_format, shard_path)
from im_data.shards import SHARD_SCHEMA


def _rows() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "loss_weights": [0.0, 0.5, 1.0], "roles": [1, 4, 5],
          "example_id": "a", "num_instruction_tokens": 1, "num_output_tokens": 2, "num_output_tokens_kept": 2,
          "truncated": False},
         {"input_ids": [7], "labels": [7], "loss_weights": [1.0], "roles": [4], "example_id": "b",
          "num_instruction_tokens": 0, "num_output_tokens": 3, "num_output_tokens_kept": 1, "truncated": True}],
        schema=SHARD_SCHEMA)


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_writes_and_reads_back_the_same_rows(tmp_path, name):
    fmt = shard_format(name)
    path = tmp_path / shard_path(0, 1, name)
    assert path.name == f"part-00000-of-00001.{fmt.extension}"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as sink:
        writer = fmt.writer(sink, SHARD_SCHEMA)
        writer.write(_rows(), 1)
        writer.close()
    assert format_of_file(str(path)) is fmt
    back = pa.Table.from_batches(list(iter_file_batches(str(path))))
    assert back.to_pylist() == _rows().to_pylist()
    picked = list(iter_file_batches(str(path), name, columns=["example_id", "truncated"]))
    assert pa.Table.from_batches(picked).to_pylist() == [{"example_id": "a", "truncated": False},
                                                         {"example_id": "b", "truncated": True}]


def test_the_table_names_each_format_once_with_its_builder():
    assert FORMATS == ("arrow", "parquet")
    assert [(f.name, f.extension, f.builder) for f in SHARD_FORMAT_TABLE.values()] == [
        ("arrow", "arrow", "arrow"), ("parquet", "parquet", "parquet")]


@pytest.mark.parametrize("bad", ["orc", "Arrow", "", None])
def test_an_unknown_shard_format_is_an_error(bad):
    with pytest.raises(ValueError, match="unknown shard format .*arrow\\|parquet"):
        shard_format(bad)
    with pytest.raises(ValueError, match="unknown shard format"):
        shard_path(0, 1, bad)
    with pytest.raises(ValueError, match="unknown shard format"):
        reject_table_path("too_long", bad)
    if bad is not None:  # None: the format the file's name ends with
        with pytest.raises(ValueError, match="unknown shard format"):
            list(iter_file_batches("x.arrow", bad))


def test_a_manifest_with_an_unknown_format_is_refused():
    good = {"schema_version": 1, "tokenizer": {"name_or_path": "t", "fingerprint": "f"},
            "chat_template": {"name": "c", "sha256": "0"}, "policy": {}, "policy_fingerprint": "p",
            "role_codes": {}, "format": "parquet", "columns": [], "shards": [],
            "counts": {"read": 0, "written": 0, "rejected": 0}}
    assert Manifest.from_dict(good).format == "parquet"
    with pytest.raises(ManifestError, match="unknown shard format 'orc'"):
        Manifest.from_dict(dict(good, format="orc"))


def test_an_unknown_format_is_a_usage_error_of_prepare(tmp_path):
    from pipelines.options import PrepareOptions

    with pytest.raises(ValueError, match="--format must be one of arrow, parquet, got 'orc'"):
        PrepareOptions(output=str(tmp_path / "out"), format="orc")


def test_arrow_reader_takes_ipc_files_too(tmp_path):
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, SHARD_SCHEMA) as w:
        w.write_batch(_rows())
    path = tmp_path / "f.arrow"
    path.write_bytes(sink.getvalue())
    assert [b.num_rows for b in dataset.iter_file_batches(str(path))] == [2]
