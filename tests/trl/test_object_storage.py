"""The plugin reads a prepared directory on object storage (a real S3-compatible server on loopback: the
``s3_server`` fixture): ``load_prepared("s3://...")`` and ``WeightedSFTTrainer(train_dataset="s3://...")``, which
is what ``im-sft --dataset_name s3://...`` does."""

from __future__ import annotations

from helpers import make_trainer, rows_of
from im_data import storage
from im_data.dataset import read_manifest
from trl_plugin import load_prepared


def _upload(local, url: str) -> None:
    for rel in storage.list_files(str(local)):
        storage.copy_file(str(local / rel), f"{url}/{rel}")


def test_load_prepared_and_trainer_from_s3(s3_server, tok, make_model, tmp_path, im_dir):
    url = "s3://im-data/trl/im"
    _upload(im_dir, url)
    assert read_manifest(url) == read_manifest(im_dir)
    remote = load_prepared(url, tok, verify_checksums=True, cache_dir=str(tmp_path / "cache"))
    local = load_prepared(im_dir, tok, cache_dir=str(tmp_path / "cache-local"))
    assert rows_of(remote) == rows_of(local)
    trainer = make_trainer(make_model(), url, tok, tmp_path)
    assert trainer.train_dataset.num_rows == local.num_rows
    trainer.train()
    assert trainer.state.global_step > 0
