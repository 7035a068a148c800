"""`im_data.torch_data`: the prepared folder as map-style and iterable PyTorch datasets (local and on S3), split by
rank and worker, and the weights-aware collator."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from im_data import storage
from im_data.dataset import PreparedDataset
from im_data.torch_data import PreparedIterableDataset, PreparedMapDataset, WeightedCollator
from shard_fixture import write_shard_dir


@pytest.fixture(scope="module")
def three_shards(tmp_path_factory, tok):
    return write_shard_dir(tmp_path_factory.mktemp("three"), tok, mode="im", n=10, num_shards=3)


def _expected(path) -> list[dict]:
    table = PreparedDataset.open(path).read_table("train", ["input_ids", "loss_weights", "roles"])
    return table.to_pylist()


def _plain(row: dict) -> dict:
    return {k: [float(x) if k == "loss_weights" else int(x) for x in v] for k, v in row.items()}


def test_map_dataset_reads_every_row_and_keeps_few_shards(three_shards):
    expected = _expected(three_shards)
    data = PreparedMapDataset(three_shards, max_cached_shards=1)
    assert len(data) == len(expected) == 10
    for i in [9, 0, 5, 3, -1]:  # random access across shards
        assert _plain(data[i]) == expected[i]
        assert len(data._cache) == 1
    with pytest.raises(IndexError):
        data[10]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_iterable_dataset_splits_the_rows_by_rank(three_shards, world):
    expected = _expected(three_shards)
    parts = [[_plain(r) for r in PreparedIterableDataset(three_shards, rank=r, world_size=world, batch_size=3)]
             for r in range(world)]
    seen = [row for part in parts for row in part]
    assert sorted(map(str, seen)) == sorted(map(str, expected))  # every row exactly once
    if world == 3:  # as many shards as ranks: whole shards
        bounds = [0, 3, 6, 10]
        assert parts == [expected[bounds[r]:bounds[r + 1]] for r in range(3)]
    if world == 2:  # 3 shards, 2 ranks: every other row
        assert parts == [expected[0::2], expected[1::2]]


def test_iterable_dataset_splits_between_dataloader_workers(three_shards, tok):
    expected = _expected(three_shards)
    loader = torch.utils.data.DataLoader(PreparedIterableDataset(three_shards, rank=1, world_size=2), batch_size=None,
                                         num_workers=2)
    rows = [_plain(r) for r in loader]
    assert sorted(map(str, rows)) == sorted(map(str, expected[1::2]))


def test_iterable_dataset_streams_shard_by_shard(tmp_path, tok):
    """Peak memory stays far below the size of all shards (Parquet shards: Arrow's pool allocates what it reads;
    Python objects traced after the first read's lazy imports)."""
    big = write_shard_dir(tmp_path / "big", tok, mode="im", n=400, num_shards=8, fmt="parquet")
    probe = (
        "import sys, tracemalloc\n"
        "import pyarrow as pa\n"
        "from im_data.torch_data import PreparedIterableDataset\n"
        "data = PreparedIterableDataset(sys.argv[1], batch_size=8)\n"
        "next(iter(data))  # the lazy imports of the first read\n"
        "tracemalloc.start()\n"
        "n = sum(1 for _ in data)\n"
        "print(n, tracemalloc.get_traced_memory()[1], pa.default_memory_pool().max_memory())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(big)], capture_output=True, text=True, check=True,
                         timeout=120).stdout.split()
    all_shards = PreparedDataset.open(big).read_table("train").nbytes
    assert int(out[0]) == 400
    assert int(out[1]) < all_shards / 4 and int(out[2]) < all_shards / 4, (out, all_shards)


def test_collator_pads_or_packs_with_labels_from_the_weights():
    rows = [{"input_ids": [5, 6, 7], "loss_weights": [0.0, 0.5, 2.0], "roles": [0, 2, 4]},
            {"input_ids": [8, 9], "loss_weights": [1.0, 0.25], "roles": [2, 4]}]
    padded = WeightedCollator(pad_token_id=0)(rows)
    assert padded["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert padded["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert padded["labels"].tolist() == [[-100, 6, 7], [8, 9, -100]]
    assert padded["loss_weights"].tolist() == [[0.0, 0.5, 2.0], [1.0, 0.25, 0.0]]
    assert padded["roles"].tolist() == [[0, 2, 4], [2, 4, -1]]
    flat = WeightedCollator(pad_token_id=0, padding_free=True, pad_to_multiple_of=4)(rows)
    assert flat["input_ids"].tolist() == [[5, 6, 7, 8, 9, 0, 0, 0]]
    assert flat["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 0, 0]]
    assert "attention_mask" not in flat
    # each document's first token is never a target: weight 0, label -100, role -1
    assert flat["loss_weights"].tolist() == [[0.0, 0.5, 2.0, 0.0, 0.25, 0.0, 0.0, 0.0]]
    assert flat["labels"].tolist() == [[-100, 6, 7, -100, 9, -100, -100, -100]]
    assert flat["roles"].tolist() == [[-1, 2, 4, -1, 4, -1, -1, -1]]
    # a pre-packed row: its documents restart the positions
    packed = WeightedCollator(padding_free=True)([{"input_ids": [1, 2, 3, 4], "loss_weights": [1.0] * 4,
                                                   "seq_lengths": [1, 3]}])
    assert packed["position_ids"].tolist() == [[0, 0, 1, 2]] and packed["labels"].tolist() == [[-100, -100, 3, 4]]
    with pytest.raises(ValueError, match="has 1 values, input_ids has 2"):
        WeightedCollator()([{"input_ids": [1, 2], "loss_weights": [1.0]}])


def test_datasets_read_a_prepared_folder_on_s3(s3_server, three_shards):
    url = "s3://im-data/torch-data/im"
    for rel in storage.list_files(str(three_shards)):
        storage.copy_file(str(three_shards / rel), f"{url}/{rel}")
    expected = _expected(three_shards)
    assert [_plain(PreparedMapDataset(url)[i]) for i in range(10)] == expected
    parts = [[_plain(r) for r in PreparedIterableDataset(url, rank=r, world_size=3)] for r in range(3)]
    assert [row for part in parts for row in part] == expected


def test_one_labels_rule_for_numpy_and_torch():
    import numpy as np

    from im_data.encode import labels_from_weights

    ids = np.array([5, 6, 7, 8], dtype=np.int32)
    w = np.array([0.0, 0.25, 1.0, 0.0], dtype=np.float32)
    labels = labels_from_weights(ids, w)
    assert labels.tolist() == [-100, 6, 7, -100] and labels.dtype == np.int32
    assert labels_from_weights(torch.from_numpy(ids).long(), torch.from_numpy(w)).tolist() == labels.tolist()
