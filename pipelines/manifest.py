"""Output directory life cycle: refuse/overwrite, temporary work dir, final move, atomic manifest.

The pipeline writes into ``<parent>/.<name>.im-data-tmp-<uuid>``; at the end the launcher writes
``stats.json`` there, moves the directory into place and writes ``manifest.json`` last, atomically
(temp file + ``os.replace``). A run that dies leaves no ``manifest.json`` in DIR.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
from typing import Any

from .build import SUMMARY_FILE
from .write import RUNS_DIR, SCHEMA

MANIFEST_SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
STATS = "stats.json"


class OutputError(RuntimeError):
    """The output directory cannot be used (job-level; raised before any work starts)."""


def check_output_dir(output_dir: str, overwrite: bool) -> None:
    if os.path.exists(output_dir):
        if not os.path.isdir(output_dir):
            raise OutputError(f"{output_dir}: exists and is not a directory")
        if os.listdir(output_dir) and not overwrite:
            raise OutputError(f"{output_dir}: not empty (pass --overwrite to replace it)")
    parent = os.path.dirname(os.path.abspath(output_dir))
    try:  # like `mkdir -p`: create missing parents of DIR
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{parent}: cannot create the directory ({exc.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{parent}: not writable")


def make_work_dir(output_dir: str) -> str:
    """A fresh temporary directory next to DIR (same filesystem, so the final move is a rename)."""
    out = os.path.abspath(output_dir)
    work = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.im-data-tmp-{uuid.uuid4().hex[:12]}")
    os.makedirs(os.path.join(work, "shards"))
    os.makedirs(os.path.join(work, "rejects"))
    return work


def write_json_atomic(path: str, data: Any) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_summary(work_dir: str) -> dict[str, Any]:
    path = os.path.join(work_dir, SUMMARY_FILE)
    if not os.path.isfile(path):
        raise RuntimeError(f"the pipeline finished without writing {SUMMARY_FILE}; nothing is published")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def build_manifest(summary: dict[str, Any], encoder_meta: dict[str, Any], *, tokenizer_name: str | None,
                   fmt: str, inputs: list[str], package_version: str) -> dict[str, Any]:
    stats = summary["stats"]
    rejected_by_reason = {r["reason"]: r["count"] for r in summary["rejects"]}
    written = sum(s["num_rows"] for s in summary["shards"])
    counts = {"read": summary["read"], "written": written, "rejected": sum(rejected_by_reason.values()),
              "rejected_by_reason": rejected_by_reason, "truncated": stats["truncated"]}
    if counts["read"] != counts["written"] + counts["rejected"]:
        raise RuntimeError(f"record counts do not add up: read {counts['read']} != written {written} + rejected "
                           f"{counts['rejected']}; nothing is published")
    if stats["count"] != written:
        raise RuntimeError(f"statistics cover {stats['count']} examples but {written} rows were written")
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "package_version": package_version,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": inputs,
        "tokenizer": {"name_or_path": tokenizer_name or "default",
                      "fingerprint": encoder_meta["tokenizer"]["fingerprint"]},
        "chat_template": encoder_meta["chat_template"],
        "policy": encoder_meta["policy"],
        "policy_fingerprint": encoder_meta["policy_fingerprint"],
        "role_codes": encoder_meta["role_codes"],
        "max_length": encoder_meta["max_length"],
        "truncation": encoder_meta["truncation"],
        "allow_special_tokens": encoder_meta.get("allow_special_tokens", False),
        "allow_unrendered": encoder_meta.get("allow_unrendered", []),
        "split_inline_reasoning": encoder_meta.get("split_inline_reasoning", False),
        "format": fmt,
        "columns": [{"name": f.name, "type": str(f.type)} for f in SCHEMA],
        "counts": counts,
        "tokens_per_role": stats["tokens_per_role"],
        "weight_mass_per_role": stats["weight_mass_per_role"],
        "dataset_ratio": stats["dataset_ratio"],
        "stats": STATS,
        "shards": [{"path": s["path"], "num_rows": s["num_rows"], "sha256": s["sha256"]} for s in summary["shards"]],
        "rejects": [{"reason": r["reason"], "path": r["path"], "count": r["count"]} for r in summary["rejects"]],
    }


def publish(work_dir: str, output_dir: str, manifest: dict[str, Any], stats: dict[str, Any],
            overwrite: bool) -> None:
    """stats.json into the work dir, move it to DIR, then manifest.json (last, atomic)."""
    shutil.rmtree(os.path.join(work_dir, RUNS_DIR), ignore_errors=True)
    for leftover in (SUMMARY_FILE,):
        try:
            os.remove(os.path.join(work_dir, leftover))
        except FileNotFoundError:
            pass
    write_json_atomic(os.path.join(work_dir, STATS), stats)
    out = os.path.abspath(output_dir)
    old = None
    if os.path.exists(out):
        if os.listdir(out):
            if not overwrite:
                raise OutputError(f"{output_dir}: became non-empty during the run; the result stays in {work_dir}")
            old = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.im-data-old-{uuid.uuid4().hex[:12]}")
            os.rename(out, old)
        else:
            os.rmdir(out)
    os.rename(work_dir, out)
    write_json_atomic(os.path.join(out, MANIFEST), manifest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
