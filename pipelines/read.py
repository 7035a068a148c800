"""Reading inputs: specs → sources → splits → raw records ``(source, index, payload)``.

* JSONL (plain or ``.gz``): one record per non-blank line; ``index`` is the 0-based line number and the payload
  is the line's raw bytes (``im_data.parse_json_line`` decides invalid JSON / non-UTF-8).
* JSON arrays (``.json``, ``.json.gz``): ``index`` is the position in the array. A ``.json`` file that does not
  start with ``[`` is read as JSONL.
* Parquet: ``index`` is the row number in the file; payloads are row dicts.
* A ``datasets`` dataset saved with ``save_to_disk`` (a directory): rows of the dataset (every split of a
  ``DatasetDict``, each its own source ``DIR[split]``).
* ``hf:NAME[:SPLIT]`` (or a bare ``owner/name`` that is not a local path): ``datasets.load_dataset``.

Plain JSONL files and Parquet files are cut into splits (byte ranges at line starts / row-group ranges) when
the pipeline is built, so that several workers read one big file; gzip files, JSON arrays, saved datasets and
hub datasets are one split each. A file that cannot be read at all (a corrupt Parquet file, a broken JSON
array) yields one ``read_error`` record; a missing input is a job-level :class:`InputError` raised up front.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import json
import os
from typing import Any, Iterator

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
JSON_SUFFIXES = (".json", ".json.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
FILE_SUFFIXES = JSONL_SUFFIXES + JSON_SUFFIXES + PARQUET_SUFFIXES
ROWS_PER_BATCH = 1024


class InputError(RuntimeError):
    """An input spec names nothing readable (job-level; raised before the pipeline starts)."""


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str            # jsonl | json | parquet | disk | hub
    path: str            # file / directory / hub name
    label: str           # what records carry as their ``source`` (and what example_id hashes)
    split: str | None = None   # DatasetDict split (disk) or hub split

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Split:
    source: Source
    start: int = 0       # byte offset (jsonl) / row (parquet row-group index, disk row)
    end: int = -1        # exclusive; -1: to the end
    first_index: int = 0  # index of the first record of the split


@dataclasses.dataclass(frozen=True)
class RawRecord:
    source: str
    index: int | None    # None only for a read_error that concerns a whole file
    payload: Any         # bytes (a JSONL line, a JSON array element), a dict (a decoded row) or a RecordError
    raw: bytes | None = None  # with a RecordError: the prefix of the record that was read (e.g. too_large)


# --------------------------------------------------------------------------------------------------- specs
def _has_glob(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def _looks_local(spec: str) -> bool:
    """A spec that can only mean a local path (a hub name is ``owner/name`` without a file suffix)."""
    return (_has_glob(spec) or spec.startswith((".", "/", "~")) or spec.lower().endswith(FILE_SUFFIXES)
            or spec.count("/") > 1 or os.path.exists(spec))


def _file_kind(path: str) -> str | None:
    low = path.lower()
    if low.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if low.endswith(JSON_SUFFIXES):
        return "json"
    if low.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _disk_sources(path: str) -> list[Source]:
    label = os.path.normpath(path)
    if os.path.isfile(os.path.join(path, "dataset_dict.json")):
        with open(os.path.join(path, "dataset_dict.json")) as f:
            splits = json.load(f).get("splits", [])
        return [Source("disk", path, f"{label}[{s}]", split=s) for s in splits]
    if os.path.isfile(os.path.join(path, "state.json")):
        return [Source("disk", path, label)]
    raise InputError(f"{path}: a directory that is not a dataset saved with save_to_disk")


def expand_inputs(specs: list[str] | tuple[str, ...]) -> tuple[Source, ...]:
    """Turn CLI input specs into sources, failing (one line) on anything missing or unknown."""
    out: list[Source] = []
    for spec in specs:
        if spec.startswith(("hf:", "hub:")):
            name, _, split = spec.split(":", 1)[1].partition(":")
            if not name:
                raise InputError(f"{spec}: empty hub dataset name")
            out.append(Source("hub", name, f"hf:{name}:{split or 'train'}", split=split or "train"))
            continue
        expanded = os.path.expanduser(spec)
        if _has_glob(expanded):
            matches = sorted(glob.glob(expanded, recursive=True))
            if not matches:
                raise InputError(f"{spec}: no file matches this pattern")
        elif os.path.exists(expanded):
            matches = [expanded]
        elif not _looks_local(spec):
            out.append(Source("hub", spec, f"hf:{spec}:train", split="train"))
            continue
        else:
            raise InputError(f"{spec}: no such file or directory")
        for path in matches:
            if os.path.isdir(path):
                out.extend(_disk_sources(path))
                continue
            kind = _file_kind(path)
            if kind is None:
                if _has_glob(expanded):
                    continue  # a glob may match unrelated files; only explicit paths must be readable
                raise InputError(f"{path}: unknown input type (expected {', '.join(FILE_SUFFIXES)} or a "
                                 "save_to_disk directory)")
            if not os.access(path, os.R_OK):
                raise InputError(f"{path}: not readable")
            out.append(Source(kind, path, os.path.normpath(path)))
    # the same file named twice would give duplicate example ids
    unique = list(dict.fromkeys(out))
    if not unique:
        raise InputError("no input files found in " + " ".join(specs))
    return tuple(unique)


# -------------------------------------------------------------------------------------------------- splits
def _count_newlines(f, start: int, end: int) -> int:
    f.seek(start)
    n, left = 0, end - start
    while left > 0:
        chunk = f.read(min(left, 8 << 20))
        if not chunk:
            break
        n += chunk.count(b"\n")
        left -= len(chunk)
    return n


def _jsonl_splits(source: Source, split_bytes: int) -> list[Split]:
    """Byte ranges that start at line starts, each with the index of its first line."""
    size = os.path.getsize(source.path)
    if size <= split_bytes:
        return [Split(source)]
    splits: list[Split] = []
    start = first = 0
    with open(source.path, "rb") as f:
        while start < size:
            if start + split_bytes >= size:
                end = size
            else:
                f.seek(start + split_bytes)
                f.readline()  # finish the line that crosses the boundary
                end = f.tell()
            splits.append(Split(source, start, end, first))
            first += _count_newlines(f, start, end)
            start = end
    return splits


def _parquet_splits(source: Source, split_bytes: int) -> list[Split]:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(source.path).metadata
    except Exception:  # noqa: BLE001 - a corrupt file becomes one read_error record at read time
        return [Split(source)]
    splits, group_start, first, rows, size = [], 0, 0, 0, 0
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        rows += rg.num_rows
        size += rg.total_byte_size
        if size >= split_bytes or i == meta.num_row_groups - 1:
            splits.append(Split(source, group_start, i + 1, first))
            first += rows
            group_start, rows, size = i + 1, 0, 0
    return splits or [Split(source)]


def plan_splits(sources: tuple[Source, ...], split_bytes: int) -> list[Split]:
    out: list[Split] = []
    for src in sources:
        if src.kind == "jsonl" and not src.path.lower().endswith(".gz"):
            out.extend(_jsonl_splits(src, split_bytes))
        elif src.kind == "parquet":
            out.extend(_parquet_splits(src, split_bytes))
        else:
            out.append(Split(src))
    return out


# ------------------------------------------------------------------------------------------------- reading
def _read_error(source: str, index: int | None, exc: BaseException) -> RawRecord:
    from im_data.errors import RecordError

    msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    return RawRecord(source, index, RecordError("read_error", msg))


def _iter_lines(f, first_index: int, label: str, limit: int | None) -> Iterator[RawRecord]:
    index = first_index
    consumed = 0
    for line in f:
        consumed += len(line)
        if line.strip():
            yield RawRecord(label, index, line.rstrip(b"\r\n"))
        index += 1
        if limit is not None and consumed >= limit:
            break


def read_jsonl(split: Split) -> Iterator[RawRecord]:
    src = split.source
    if src.path.lower().endswith(".gz"):
        try:
            with gzip.open(src.path, "rb") as f:
                yield from _iter_lines(f, 0, src.label, None)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            yield _read_error(src.label, None, exc)
        return
    with open(src.path, "rb") as f:
        f.seek(split.start)
        limit = None if split.end < 0 else split.end - split.start
        if limit == 0:
            return
        yield from _iter_lines(f, split.first_index, src.label, limit)


def read_json_array(split: Split) -> Iterator[RawRecord]:
    src = split.source
    opener = gzip.open if src.path.lower().endswith(".gz") else open
    try:
        with opener(src.path, "rb") as f:
            head = f.read(4096).lstrip()
    except (OSError, EOFError) as exc:
        yield _read_error(src.label, None, exc)
        return
    if not head:
        return  # an empty file holds no records
    if not head.startswith(b"["):
        # JSON Lines in a .json file
        try:
            with opener(src.path, "rb") as f:
                yield from _iter_lines(f, 0, src.label, None)
        except (OSError, EOFError) as exc:
            yield _read_error(src.label, None, exc)
        return
    from im_data.errors import RecordError
    from im_data.formats import parse_json_line

    try:
        with opener(src.path, "rb") as f:
            data = parse_json_line(f.read())
    except RecordError as exc:
        yield RawRecord(src.label, None, exc)
        return
    except (OSError, EOFError) as exc:
        yield _read_error(src.label, None, exc)
        return
    if not isinstance(data, list):
        yield RawRecord(src.label, None, RecordError("unknown_format", "a .json input must hold an array of records"))
        return
    for i, rec in enumerate(data):
        yield RawRecord(src.label, i, rec)


def read_parquet(split: Split) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    src = split.source
    index = split.first_index
    try:
        pf = pq.ParquetFile(src.path)
        groups = list(range(pf.metadata.num_row_groups))
        if split.end >= 0:
            groups = groups[split.start:split.end]
        for batch in pf.iter_batches(batch_size=ROWS_PER_BATCH, row_groups=groups):
            for row in batch.to_pylist():
                yield RawRecord(src.label, index, row)
                index += 1
    except Exception as exc:  # noqa: BLE001 - corrupt/unreadable parquet: one read_error for the rest
        yield _read_error(src.label, None if index == split.first_index else index, exc)


def _iter_dataset(ds, label: str) -> Iterator[RawRecord]:
    index = 0
    for batch in ds.with_format("arrow").iter(batch_size=ROWS_PER_BATCH):
        for row in batch.to_pylist():
            yield RawRecord(label, index, row)
            index += 1


def read_disk(split: Split) -> Iterator[RawRecord]:
    import datasets

    src = split.source
    try:
        ds = datasets.load_from_disk(src.path)
        if src.split is not None:
            ds = ds[src.split]
    except Exception as exc:  # noqa: BLE001
        yield _read_error(src.label, None, exc)
        return
    yield from _iter_dataset(ds, src.label)


def read_hub(split: Split) -> Iterator[RawRecord]:  # pragma: no cover - needs the network
    import datasets

    src = split.source
    ds = datasets.load_dataset(src.path, split=src.split or "train")
    yield from _iter_dataset(ds, src.label)


READERS = {"jsonl": read_jsonl, "json": read_json_array, "parquet": read_parquet, "disk": read_disk,
           "hub": read_hub}


def read_split(split: Split) -> Iterator[RawRecord]:
    yield from READERS[split.source.kind](split)


def __getattr__(name: str):
    """The Beam transform lives in :mod:`pipelines.read_beam`, so that reading one record (``inspect``) does not
    import Beam; ``from pipelines.read import ReadExamples`` still works."""
    if name in ("ReadExamples", "_ReadSplitFn"):
        from . import read_beam

        return getattr(read_beam, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
