"""Dead letters: every rejected record goes to ``rejects/<reason>.jsonl``, sorted by (source, index).

Streamed, never held: each worker buffers at most ``buffer_bytes`` of reject lines, spills them as a sorted run
(``_runs/rejects/<reason>/<uuid>.jsonl``) and passes on only a small descriptor; after a GroupByKey on the reason,
one k-way merge per reason (``heapq.merge`` over the open runs, line by line) writes the final file.

Each line is strict JSON (no ``NaN``/``Infinity``, valid UTF-8): ``reason``, ``message``, ``source``, ``index``,
``example_id`` and ``raw``, the record's original bytes as a UTF-8 string (with ``raw_encoding: "base64"`` when
they are not UTF-8; ``raw_truncated: true`` when only a prefix is kept, e.g. for ``too_large``).
"""

from __future__ import annotations

import base64
import heapq
import json
import uuid
from typing import Any, Iterator

import apache_beam as beam
import orjson
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from im_data import storage
from im_data.dataset import REJECTS_DIR, RUNS_DIR, reject_path
from im_data.shards import example_id

REJECTS = "rejects"  # the tagged output of the dead letters (EncodeExamples and the stages before it)
REJECT_RUNS_DIR = f"{RUNS_DIR}/{REJECTS_DIR}"  # removed with the shard runs when the output is published
REJECT_BUFFER_BYTES = 8 << 20


def raw_for_reject(payload: Any) -> dict[str, Any]:
    """The raw record as strict-JSON fields: ``raw``, the original bytes as a UTF-8 string, or base64 with
    ``raw_encoding: "base64"`` where they are not UTF-8; a decoded row (Parquet, datasets) as its JSON text."""
    if payload is None or isinstance(payload, str):
        return {"raw": payload}
    if isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
        try:
            return {"raw": data.decode("utf-8")}
        except UnicodeDecodeError:
            return {"raw": base64.b64encode(data).decode("ascii"), "raw_encoding": "base64"}
    try:
        return {"raw": orjson.dumps(payload, default=repr, option=orjson.OPT_NON_STR_KEYS
                                    | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS).decode("utf-8")}
    except (TypeError, orjson.JSONEncodeError):
        return {"raw": repr(payload)[:1 << 20]}


def make_reject(rec, error, raw: Any) -> dict[str, Any]:
    """One dead letter of a :class:`pipelines.read.RawRecord`: reason code, message, source, index and the raw record (``rec.raw`` if the reader kept
    only a prefix of it, e.g. for ``too_large``)."""
    out = {"reason": error.reason, "message": error.message, "source": rec.source, "index": rec.index,
           "example_id": example_id(rec.source, rec.index) if rec.index is not None else None}
    if rec.raw is not None:
        raw, out["raw_truncated"] = rec.raw, True
    out.update(raw_for_reject(raw))
    return out


def _sort_key(rej: dict[str, Any]) -> list:
    idx = rej.get("index")
    return [str(rej.get("source")), -1 if idx is None else int(idx), str(rej.get("message"))]


def reject_line(rej: dict[str, Any]) -> str:
    """One strict JSON line for a reject, whatever it holds (never raises)."""
    try:
        text = json.dumps(rej, ensure_ascii=False, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        safe = {k: v if isinstance(v, (str, int, bool, type(None))) else repr(v) for k, v in rej.items()}
        text = json.dumps(safe, ensure_ascii=False, sort_keys=True)
    # lone surrogates (e.g. from a file name that is not UTF-8) cannot be written as UTF-8
    return text.encode("utf-8", "replace").decode("utf-8")


class _SpillRejectsFn(beam.DoFn):
    def __init__(self, work_dir: str, buffer_bytes: int = REJECT_BUFFER_BYTES):
        self.work_dir = work_dir
        self.buffer_bytes = buffer_bytes

    def start_bundle(self) -> None:
        self.buffers: dict[str, list[tuple[list, str]]] = {}
        self.buffered = 0

    def process(self, rej: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        line = reject_line(rej)
        self.buffers.setdefault(str(rej["reason"]), []).append((_sort_key(rej), line))
        self.buffered += len(line)
        if self.buffered >= self.buffer_bytes:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for out in self._flush():
            yield WindowedValue(out, MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self) -> Iterator[tuple[str, dict[str, Any]]]:
        buffers, self.buffers, self.buffered = self.buffers, {}, 0
        for reason in sorted(buffers):
            items = sorted(buffers[reason], key=lambda kv: kv[0])
            rel = f"{REJECT_RUNS_DIR}/{reason}/{uuid.uuid4().hex}.jsonl"
            path = storage.join(self.work_dir, rel)
            storage.makedirs(storage.parent(path))
            with storage.open_file(path, "w", encoding="utf-8") as f:
                for key, line in items:
                    f.write(json.dumps(key, ensure_ascii=False) + "\t" + line + "\n")
            yield reason, {"path": rel, "count": len(items)}


def _run_lines(path: str) -> Iterator[tuple[list, str]]:
    with storage.open_file(path, "r", encoding="utf-8") as f:
        for line in f:
            key, _, rest = line.partition("\t")
            yield json.loads(key), rest


def merge_reject_runs(run_paths: list[str], out_path: str) -> int:
    """k-way merge of sorted runs into one reject file, one line in memory per run. Returns the line count."""
    storage.makedirs(storage.parent(out_path))
    n = 0
    with storage.open_file(out_path, "w", encoding="utf-8") as out:
        for _, line in heapq.merge(*(_run_lines(p) for p in run_paths), key=lambda kv: kv[0]):
            out.write(line)
            n += 1
    return n


class _MergeRejectsFn(beam.DoFn):
    def __init__(self, work_dir: str):
        self.work_dir = work_dir

    def process(self, element) -> Iterator[dict[str, Any]]:
        reason, runs = element
        runs = sorted(runs, key=lambda r: r["path"])
        rel = reject_path(reason)
        count = merge_reject_runs([storage.join(self.work_dir, r["path"]) for r in runs],
                                  storage.join(self.work_dir, rel))
        expected = sum(r["count"] for r in runs)
        if count != expected:
            raise RuntimeError(f"rejects {reason}: merged {count} lines, runs hold {expected}")
        storage.remove_tree(storage.join(self.work_dir, REJECT_RUNS_DIR, reason))
        yield {"reason": reason, "count": count, "path": rel}


@beam.typehints.with_output_types(dict[str, Any])
class WriteRejects(beam.PTransform):
    """``PCollection[reject dict]`` → one ``{"reason", "count", "path"}`` per reason, files written."""

    def __init__(self, work_dir: str, buffer_bytes: int = REJECT_BUFFER_BYTES):
        super().__init__()
        self.work_dir = work_dir
        self.buffer_bytes = buffer_bytes

    def expand(self, rejects):
        return (rejects
                | "SpillRuns" >> beam.ParDo(_SpillRejectsFn(self.work_dir, self.buffer_bytes))
                | "GroupRuns" >> beam.GroupByKey()
                | "Merge" >> beam.ParDo(_MergeRejectsFn(self.work_dir)))
