"""A Dask worker plugin that keeps Beam's import-time chatter out of a run's output unless ``-v``.

Importing Beam on a worker logs ``WARNING:root:apitools not found…`` through the root logger (which, having no
handler there, configures one on the spot); the launcher drops that line with the CLI's log filter, but a Dask
worker process is a fresh interpreter. :class:`QuietBeamImports`, registered by :class:`pipelines.dask_runner.
DaskRunner` before any task runs, adds the same filter to each worker's root logger. This module must not import
Beam: workers unpickle the plugin before anything else.
"""

from __future__ import annotations

import logging

from distributed.diagnostics.plugin import WorkerPlugin

from .cli import _DropNoise


class QuietBeamImports(WorkerPlugin):
    """Drops the CLI's noise lines (``apitools not found``) from every worker's root logger."""

    name = "im-data-quiet-beam-imports"
    idempotent = True

    def setup(self, worker) -> None:  # noqa: ARG002 - the plugin interface
        root = logging.getLogger()
        if not any(isinstance(f, _DropNoise) for f in root.filters):
            root.addFilter(_DropNoise())
