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
import errno
import glob
import gzip
import io
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any, Iterator

from im_data import storage
from im_data.errors import RecordError
from im_data.limits import DEFAULT_MAX_RECORD_BYTES

from .json_stream import RAW_PREFIX_BYTES, iter_array_elements, skip_whitespace

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
JSON_SUFFIXES = (".json", ".json.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
FILE_SUFFIXES = JSONL_SUFFIXES + JSON_SUFFIXES + PARQUET_SUFFIXES
UNSUPPORTED_COMPRESSION = (".bz2", ".zst", ".xz", ".lz4", ".zip", ".7z")
ROWS_PER_BATCH = 1024
LOG = logging.getLogger("im_data.prepare")


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


def _dataset_dict_splits(path: str) -> list[str]:
    """The split names of a saved ``DatasetDict``; a malformed ``dataset_dict.json`` is an :class:`InputError`."""
    meta = os.path.join(path, "dataset_dict.json")
    try:
        with open(meta, "rb") as f:
            data = json.loads(f.read(1 << 20))
    except (OSError, ValueError) as exc:
        raise InputError(f"{meta}: cannot be read as JSON ({exc})") from None
    splits = data.get("splits") if isinstance(data, dict) else None
    if not isinstance(splits, list) or not all(isinstance(s, str) and s and s not in (".", "..") and "/" not in s
                                               and "\\" not in s for s in splits):
        raise InputError(f'{meta}: expected {{"splits": [names of split folders]}}, found '
                         f"{json.dumps(data)[:80]}; re-save the dataset with save_to_disk")
    return splits


def source_label(path: str) -> str:
    """What records of a local file carry as their ``source``: the normalised path, as valid UTF-8 text (a file
    name that is not UTF-8, which Python holds with surrogate escapes, shows its bytes as ``\\xNN``)."""
    text = os.path.normpath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def _disk_sources(path: str) -> list[Source]:
    label = source_label(path)
    if os.path.isfile(os.path.join(path, "dataset_dict.json")):
        return [Source("disk", path, f"{label}[{s}]", split=s) for s in _dataset_dict_splits(path)]
    if os.path.isfile(os.path.join(path, "state.json")):
        return [Source("disk", path, label)]
    raise InputError(f"{path}: a directory that is not a dataset saved with save_to_disk")


def _glob(pattern: str) -> list[str]:
    """Sorted matches of a glob. ``**`` is expanded by pathlib, which does not follow symbolic links to
    directories (``glob.glob`` does, and a symlink loop makes it run for ever)."""
    if "**" not in pattern:
        return sorted(glob.glob(pattern))
    parts = Path(pattern).parts
    k = next(i for i, part in enumerate(parts) if _has_glob(part))
    base = Path(*parts[:k]) if k else Path(".")
    return sorted(str(p) if k else os.path.normpath(str(p)) for p in base.glob("/".join(parts[k:])))


def _stat_input(path: str) -> os.stat_result:
    """``os.stat`` (following links) with one-line errors; refuses FIFOs, devices and sockets up front (reading
    them would hang or never end)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{path}: a symbolic link loop") from None
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise InputError(f"{path}: not a regular file or directory (a FIFO, device or socket); "
                         "copy the data to a file first")
    return st


def _matches(spec: str) -> list[str] | None:
    """Paths a local spec names (None: not local, a hub dataset); raises :class:`InputError` if none."""
    expanded = os.path.expanduser(spec)
    if _has_glob(expanded):
        matches = _glob(expanded)
        if not matches:
            raise InputError(f"{spec}: no file matches this pattern")
        return matches
    if os.path.lexists(expanded):
        return [expanded]
    if not _looks_local(spec):
        return None
    raise InputError(f"{spec}: no such file or directory")


def _open(path: str):
    """A local file or a URL (``s3://``, ``gs://``, ...: see :mod:`im_data.storage`), opened for binary reading
    (a URL's file behind an ``io.BufferedReader``, for ``readline(limit)``)."""
    if storage.is_url(path):
        return io.BufferedReader(storage.open_file(path, "rb"), buffer_size=1 << 20)
    return open(path, "rb")


def _gzip_open(path: str, mode: str = "rb"):
    return gzip.GzipFile(fileobj=_open(path), mode=mode) if storage.is_url(path) else gzip.open(path, mode)


def _url_sources(spec: str) -> list[Source]:
    """Files on object storage: a URL, or a glob of URLs (``s3://bucket/raw/*.jsonl``); labelled by their URL."""
    fs, path = storage.filesystem(spec)
    fs.invalidate_cache()
    try:
        if _has_glob(spec):
            matches = [fs.unstrip_protocol(m) for m in sorted(fs.glob(path))]
            if not matches:
                raise InputError(f"{spec}: no file matches this pattern")
        elif fs.isfile(path):
            matches = [spec]
        else:
            raise InputError(f"{spec}: no such file")
    except (OSError, ValueError) as exc:
        raise InputError(f"{spec}: cannot be listed ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
    out = []
    for url in matches:
        kind = _file_kind(url)
        if kind is None:
            if _has_glob(spec):
                continue
            raise InputError(f"{url}: unknown input type (expected {', '.join(FILE_SUFFIXES)})")
        out.append(Source(kind, url, url))
    return out


def expand_inputs(specs: list[str] | tuple[str, ...]) -> tuple[Source, ...]:
    """Turn CLI input specs into sources, failing (one line) on anything missing, unknown or special.

    The same file named twice (by another path, a symlink or overlapping globs) is read once, with a warning."""
    out: list[Source] = []
    seen: dict[tuple, str] = {}
    duplicates: list[tuple[str, str]] = []
    skipped: list[str] = []
    for spec in specs:
        if spec.startswith(("hf:", "hub:")):
            name, _, split = spec.split(":", 1)[1].partition(":")
            if not name:
                raise InputError(f"{spec}: empty hub dataset name")
            out.append(Source("hub", name, f"hf:{name}:{split or 'train'}", split=split or "train"))
            continue
        if storage.is_url(spec):
            out.extend(_url_sources(spec))
            continue
        matches = _matches(spec)
        if matches is None:
            out.append(Source("hub", spec, f"hf:{spec}:train", split="train"))
            continue
        for path in matches:
            kind = None if os.path.isdir(path) else _file_kind(path)
            if kind is None and not os.path.isdir(path):
                if _has_glob(spec):
                    skipped.append(path)  # a glob may match unrelated files: reported, not read
                    continue
                raise InputError(f"{path}: unknown input type (expected {', '.join(FILE_SUFFIXES)} or a "
                                 "save_to_disk directory)")
            st = _stat_input(path)
            key = (st.st_dev, st.st_ino)
            if key in seen:
                duplicates.append((path, seen[key]))
                continue
            seen[key] = path
            if stat.S_ISDIR(st.st_mode):
                out.extend(_disk_sources(path))
                continue
            if not os.access(path, os.R_OK):
                raise InputError(f"{path}: not readable")
            out.append(Source(kind, path, source_label(path)))
    for dup, first in duplicates:
        LOG.warning("input %s is the same file as %s: read once", dup, first)
    if skipped:
        LOG.warning("skipped %d file(s) a pattern matched that are not inputs im-data reads (%s; it reads %s, and "
                    "save_to_disk folders): %s", len(skipped), "compressed other than gzip" if any(
                        p.lower().endswith(UNSUPPORTED_COMPRESSION) for p in skipped) else "unknown type",
                    ", ".join(FILE_SUFFIXES), ", ".join(source_label(p) for p in skipped[:5])
                    + (", ..." if len(skipped) > 5 else ""))
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
    size = storage.size(source.path)
    if size == 0:
        return [Split(source)]  # empty, or a special file whose size says nothing (/proc): read to its end
    if size <= split_bytes:
        return [Split(source, 0, size, 0)]  # the size now: a file that shrinks while read is a read_error
    splits: list[Split] = []
    start = first = 0
    with _open(source.path) as f:
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
        with _open(source.path) as f:
            meta = pq.ParquetFile(f).metadata
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
def _read_error(source: str, index: int | None, exc: BaseException, what: str = "") -> RawRecord:
    msg = f"{what}{type(exc).__name__}: {exc}".splitlines()[0][:500]
    return RawRecord(source, index, RecordError("read_error", msg))


def _too_large(source: str, index: int, size: int, max_bytes: int, prefix: bytes) -> RawRecord:
    return RawRecord(source, index, RecordError("too_large", f"record of {size} bytes > --max-record-bytes "
                                                             f"{max_bytes}; not parsed"), raw=prefix)


def _iter_lines(f, first_index: int, label: str, limit: int | None, max_bytes: int) -> Iterator[RawRecord]:
    """Non-blank lines as raw records; a line longer than ``max_bytes`` is skipped while reading (``too_large``),
    never held; an I/O error ends the split with one ``read_error`` at the line it hit, and so does an end of
    file before ``limit`` bytes (the file shrank, or was replaced, since the splits were planned)."""
    index, consumed = first_index, 0
    try:
        while limit is None or consumed < limit:
            line = f.readline(max_bytes + 1)
            if not line:
                if limit is not None:
                    yield RawRecord(label, index, RecordError(
                        "read_error", f"line {index} and after could not be read: the file ended {limit - consumed} "
                                      f"bytes early (it shrank or was replaced while being read)"))
                break
            consumed += len(line)
            if len(line) > max_bytes and not line.endswith(b"\n"):
                prefix, size = line[:RAW_PREFIX_BYTES], len(line)
                while not line.endswith(b"\n"):  # skip the rest of the line, holding 1 MiB at most
                    line = f.readline(1 << 20)
                    if not line:
                        break
                    consumed += len(line)
                    size += len(line)
                yield _too_large(label, index, size - line.endswith(b"\n"), max_bytes, prefix)
            elif line.strip():
                yield RawRecord(label, index, line.rstrip(b"\r\n"))
            index += 1
    except (OSError, EOFError) as exc:
        yield _read_error(label, index, exc, f"line {index} and after could not be read: ")


def _starts_with_bom(f) -> bool:
    try:
        return f.peek(3)[:3] == b"\xef\xbb\xbf"
    except OSError:  # the read that follows reports it, with its line
        return False


def read_jsonl(split: Split, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    src = split.source
    gz = src.path.lower().endswith(".gz")
    try:
        f = _gzip_open(src.path) if gz else _open(src.path)
    except OSError as exc:  # a part of a file (split.start > 0) that vanished: its first line is the index
        yield _read_error(src.label, split.first_index if split.start > 0 else None, exc)
        return
    with f:
        if gz:
            yield from _iter_lines(f, 0, src.label, None, max_bytes)
            return
        limit = None if split.end < 0 else split.end - split.start
        if limit == 0:
            return
        f.seek(split.start)
        if split.start == 0 and _starts_with_bom(f):  # a UTF-8 byte order mark starts the file: not data
            f.seek(3)
            limit = None if limit is None else limit - 3
        yield from _iter_lines(f, split.first_index, src.label, limit, max_bytes)


def read_json_array(split: Split, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    """A ``.json`` file: an array read element by element (see :mod:`pipelines.json_stream`), or JSON Lines
    when its first non-blank byte is not ``[`` (however much whitespace comes first)."""
    src = split.source
    opener = _gzip_open if src.path.lower().endswith(".gz") else lambda path, mode: _open(path)
    try:
        with opener(src.path, "rb") as f:
            head = skip_whitespace(f)
            if not head:
                return  # a blank file holds no records
            if not head.startswith(b"["):
                f.seek(0)
                yield from _iter_lines(f, 0, src.label, None, max_bytes)
                return
            f.seek(f.tell() - len(head) + 1)  # just after the [
            for index, payload, prefix in iter_array_elements(f, max_bytes):
                yield RawRecord(src.label, index, payload, raw=prefix if isinstance(payload, RecordError) else None)
    except (OSError, EOFError) as exc:
        yield _read_error(src.label, None, exc)


def read_parquet(split: Split, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    """Rows, one row group at a time: a row group that cannot be read is one ``read_error`` naming its rows,
    and the other row groups are kept. A file whose footer is unreadable is one ``read_error``."""
    import pyarrow.parquet as pq

    src = split.source
    try:
        pf = pq.ParquetFile(_open(src.path))
        meta = pf.metadata
    except Exception as exc:  # noqa: BLE001 - corrupt/unreadable parquet: one read_error
        yield _read_error(src.label, None, exc)
        return
    groups = list(range(meta.num_row_groups))
    if split.end >= 0:
        groups = groups[split.start:split.end]
    first = split.first_index
    for g in groups:
        n = meta.row_group(g).num_rows
        index = first
        try:
            for batch in pf.iter_batches(batch_size=ROWS_PER_BATCH, row_groups=[g]):
                for row in batch.to_pylist():
                    yield RawRecord(src.label, index, row)
                    index += 1
        except Exception as exc:  # noqa: BLE001 - a corrupt row group
            yield _read_error(src.label, index, exc, f"rows {index}-{first + n - 1} (row group {g}) could not "
                                                     "be read: ")
        first += n


def _iter_dataset(ds, label: str) -> Iterator[RawRecord]:
    index = 0
    try:
        for batch in ds.with_format("arrow").iter(batch_size=ROWS_PER_BATCH):
            for row in batch.to_pylist():
                yield RawRecord(label, index, row)
                index += 1
    except Exception as exc:  # noqa: BLE001 - corrupt arrow data
        yield _read_error(label, index, exc, f"rows {index} and after could not be read: ")


def read_disk(split: Split, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    """A ``save_to_disk`` dataset; each split of a ``DatasetDict`` is loaded on its own, so one missing or
    corrupt split is one ``read_error`` and the others are read."""
    import datasets

    src = split.source
    try:
        ds = datasets.load_from_disk(src.path if src.split is None else os.path.join(src.path, src.split))
    except Exception as exc:  # noqa: BLE001
        yield _read_error(src.label, None, exc)
        return
    yield from _iter_dataset(ds, src.label)


def read_hub(split: Split, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord]:  # pragma: no cover
    import datasets

    src = split.source
    ds = datasets.load_dataset(src.path, split=src.split or "train")
    yield from _iter_dataset(ds, src.label)


READERS = {"jsonl": read_jsonl, "json": read_json_array, "parquet": read_parquet, "disk": read_disk,
           "hub": read_hub}


def read_split(split: Split, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    yield from READERS[split.source.kind](split, max_record_bytes)


def __getattr__(name: str):
    """The Beam transform lives in :mod:`pipelines.read_beam`, so that reading one record (``inspect``) does not
    import Beam; ``from pipelines.read import ReadExamples`` still works."""
    if name in ("ReadExamples", "_ReadSplitFn"):
        from . import read_beam

        return getattr(read_beam, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
