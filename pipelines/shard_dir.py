"""Prepared shard directories (the output of ``prepare``), read without Beam: used by ``audit`` and ``inspect``.

A thin shell over the output contract :mod:`im_data.dataset` (which reads local directories and URLs alike): it
only turns a :class:`~im_data.dataset.ManifestError` into a one-line :class:`ShardDirError` (exit status 2).
"""

from __future__ import annotations

import os

from im_data import storage
from im_data.dataset import ManifestError, PreparedDataset, is_prepared_dir

from .options import UsageError


class ShardDirError(UsageError):
    """A broken or missing shard directory: one line on stderr, exit status 2."""


def is_shard_dir(path: str) -> bool:
    """A directory (or URL) produced by ``prepare``: it has ``manifest.json``; or a local directory that is not a
    ``save_to_disk`` dataset (treated as a broken shard directory, so that the error names the manifest)."""
    if is_prepared_dir(path):
        return True
    if storage.is_url(path):
        return False
    path = storage.local_path(path)
    if not os.path.isdir(path):
        return False
    return not (os.path.isfile(os.path.join(path, "dataset_dict.json"))
                or os.path.isfile(os.path.join(path, "state.json")))


def shard_dir_error(exc: ManifestError) -> ShardDirError:
    return ShardDirError(str(exc).splitlines()[0])


def open_prepared(path: str) -> PreparedDataset:
    """The opened directory; :class:`ShardDirError` when it is not a complete prepared directory."""
    try:
        return PreparedDataset.open(path)
    except ManifestError as exc:
        raise shard_dir_error(exc) from None
