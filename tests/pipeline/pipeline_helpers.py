"""Helpers for the pipeline tests: run `im-data prepare` in-process and read its output."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

DATA = Path(__file__).resolve().parent / "data"


def run_cli(*argv: str) -> int:
    from pipelines.cli import main

    return main([str(a) for a in argv])


def read_output(out: Path) -> dict:
    """manifest, stats, rows (sorted by example_id) and rejects of an output directory."""
    manifest = json.loads((out / "manifest.json").read_text())
    stats = json.loads((out / "stats.json").read_text())
    tables = []
    for shard in manifest["shards"]:
        path = out / shard["path"]
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            tables.append(pq.read_table(path))
        else:
            with pa.memory_map(str(path)) as src:
                tables.append(pa.ipc.open_stream(src).read_all())
    table = pa.concat_tables(tables) if tables else None
    rows = sorted(table.to_pylist(), key=lambda r: r["example_id"]) if table is not None else []
    rejects = []
    for f in sorted((out / "rejects").glob("*.jsonl")):
        rejects.extend(json.loads(line) for line in f.read_text().splitlines())
    return {"manifest": manifest, "stats": stats, "rows": rows, "rejects": rejects, "table": table}
