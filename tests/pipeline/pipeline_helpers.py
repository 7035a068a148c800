"""Helpers for the pipeline tests: run `im-data prepare` in-process and read its output."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def run_cli(*argv: str) -> int:
    from pipelines.cli import main

    return main([str(a) for a in argv])


def read_output(out) -> dict:
    """manifest (as a dict), stats, rows of every split (sorted by example_id) and rejects of an output directory
    (local or a URL), read through the output contract :class:`im_data.dataset.PreparedDataset`."""
    from im_data import storage
    from im_data.dataset import PreparedDataset

    prepared = PreparedDataset.open(str(out))
    table = prepared.read_table(split=None) if prepared.manifest.shards else None
    rows = sorted(table.to_pylist(), key=lambda r: r["example_id"]) if table is not None else []
    rejects = []
    for path in sorted(prepared.reject_files().values()):
        rejects.extend(json.loads(line) for line in storage.read_bytes(path).decode().splitlines())
    return {"manifest": prepared.manifest.to_dict(), "stats": prepared.read_stats(), "rows": rows,
            "rejects": rejects, "table": table}
