"""The output directory contract of ``im-data prepare``: the one place that knows its layout and its manifest.

Layout (``DIR`` is a local directory or a URL such as ``s3://bucket/prefix``)::

    DIR/README.md                                   dataset card (YAML ``configs`` for ``datasets.load_dataset(DIR)``)
    DIR/stats.json                                  LengthStats.to_dict() of the rows written
    DIR/shards/part-XXXXX-of-YYYYY.arrow|parquet    the ``train`` split (rows in input order within a shard)
    DIR/shards/<split>/part-00000-of-00001.arrow    an evaluation split (``--eval-fraction``), if any
    DIR/rejects/<reason>.jsonl                      dead letters, one file per reason code
    DIR/rejects/<reason>.arrow|parquet              the same dead letters as a typed table (REJECT_SCHEMA), for the
                                                    card's ``rejects`` config (`datasets` reads one format per folder)
    DIR/manifest.json                               written last: its presence means the rest is complete

While a run works, it writes into a run folder next to ``DIR`` (``.DIR.im-data-tmp-<id>``, holding ``_owner.json``,
``_runs/`` and ``_summary.json`` too), published by a rename; the folder of a run that failed on its reject rate is
kept, marked by ``_failed.json``; an output being replaced is moved aside to ``.DIR.im-data-old-<id>``.

Everyone who writes or reads such a directory goes through this module: :class:`Manifest` (typed, frozen,
validated: :meth:`Manifest.from_dict` / :meth:`Manifest.to_dict`), :class:`PreparedDataset` (opens ``DIR``,
lists and iterates shards, verifies checksums, reads ``stats.json``), :func:`is_prepared_dir`,
:func:`eval_split_of` (the deterministic evaluation split). Nothing else parses ``manifest.json``.
Pure: pyarrow and fsspec only (no Beam, no TRL, no ``datasets``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
from typing import Any, Callable, Iterator, Mapping, Sequence

from . import storage

MANIFEST_FILE = "manifest.json"
STATS_FILE = "stats.json"
CARD_FILE = "README.md"
SHARDS_DIR = "shards"
REJECTS_DIR = "rejects"
MANIFEST_SCHEMA_VERSION = 1
TRAIN_SPLIT = "train"
DEFAULT_EVAL_SPLIT = "test"  # the split `trl sft` evaluates on
# the run folder (see the module docstring); none of these names is in a published directory
RUNS_DIR = "_runs"              # sorted runs of shards and dead letters, merged and removed before publishing
UNPACKED_DIR = "_unpacked"      # with --pack-length: the merged shards before packing (pipelines/pack.py)
SUMMARY_FILE = "_summary.json"  # the pipeline's summary, turned into the manifest by the launcher
OWNER_FILE = "_owner.json"      # who works in the run folder (host, pid, start), so a dead run's folder is removed
FAILED_FILE = "_failed.json"    # marks the kept run folder of a run that failed on its reject rate
TMP_MARK = ".im-data-tmp-"      # .DIR<TMP_MARK><id>: the run folder
OLD_MARK = ".im-data-old-"      # .DIR<OLD_MARK><id>: an earlier output moved aside while publishing
#: The deterministic evaluation split, in words (also written into the dataset card).
EVAL_SPLIT_RECIPE = ("an example goes to the evaluation split when int(sha256('eval|' + example_id)[:16], 16) "
                     "< fraction * 2**64, i.e. by a hash of its example_id alone: the same examples for the same "
                     "inputs and fraction, whatever the runner, the worker count or the order of the records")


class ManifestError(ValueError):
    """A prepared directory is absent, incomplete, or its manifest is invalid or disagrees with its files."""


# ------------------------------------------------------------------------------------------ shard formats
class _ArrowWriter:
    """Arrow IPC stream: record batches as given (``rows`` is ignored)."""

    def __init__(self, sink, schema):
        import pyarrow as pa

        self._writer = pa.ipc.new_stream(sink, schema)

    def write(self, batch, rows: int | None = None) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


class _ParquetWriter:
    """Parquet, zstd: one row group of at most ``rows`` rows per batch (``None``: pyarrow's default)."""

    def __init__(self, sink, schema):
        import pyarrow.parquet as pq

        self._writer = pq.ParquetWriter(sink, schema, compression="zstd")

    def write(self, batch, rows: int | None = None) -> None:
        self._writer.write_batch(batch, row_group_size=rows)

    def close(self) -> None:
        self._writer.close()


def _read_arrow(path: str, columns: list[str] | None, batch_size: int) -> Iterator[Any]:
    """Record batches of an Arrow IPC stream (what ``prepare`` writes) or IPC file; ``batch_size`` is ignored."""
    import pyarrow as pa

    source = pa.memory_map(storage.local_path(path), "r") if not storage.is_url(path) else \
        storage.open_file(path, "rb")
    with source:
        try:
            batches = iter(pa.ipc.open_stream(source))
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        for batch in batches:
            yield batch.select(columns) if columns else batch


def _read_parquet(path: str, columns: list[str] | None, batch_size: int) -> Iterator[Any]:
    import pyarrow.parquet as pq

    with storage.open_file(path, "rb") as f:
        yield from pq.ParquetFile(f).iter_batches(columns=columns, batch_size=batch_size)


@dataclasses.dataclass(frozen=True)
class ShardFormat:
    """One file format of the shards and of the typed dead letters: everything that differs between formats.

    ``writer(sink, schema)`` opens a writer (``write(batch, rows=None)``, ``close()``) on a binary sink;
    ``reader(path, columns, batch_size)`` yields record batches; ``extension`` ends the file names;
    ``builder`` is the ``datasets`` builder that loads the files (``datasets.load_dataset(builder, ...)``)."""

    name: str
    extension: str
    builder: str
    writer: Callable[[Any, Any], Any]
    reader: Callable[[str, "list[str] | None", int], Iterator[Any]]


#: The shard formats, by name (``--format``): a new format is one entry here plus its writer and reader.
SHARD_FORMAT_TABLE: Mapping[str, ShardFormat] = {f.name: f for f in (
    ShardFormat("arrow", "arrow", "arrow", _ArrowWriter, _read_arrow),
    ShardFormat("parquet", "parquet", "parquet", _ParquetWriter, _read_parquet),
)}
FORMATS = tuple(SHARD_FORMAT_TABLE)


def shard_format(name: str) -> ShardFormat:
    """The :class:`ShardFormat` called ``name``; :class:`ValueError` for an unknown name.

    >>> shard_format("parquet").extension
    'parquet'
    """
    try:
        return SHARD_FORMAT_TABLE[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown shard format {name!r} ({'|'.join(FORMATS)})") from None


def format_of_file(path: str) -> ShardFormat:
    """The format a shard file's name ends with (Arrow when it ends with none of theirs)."""
    by_name = (f for f in SHARD_FORMAT_TABLE.values() if path.endswith(f".{f.extension}"))
    return next(by_name, SHARD_FORMAT_TABLE["arrow"])
class OutputReplaced(ManifestError):
    """The directory was replaced (``prepare --overwrite``) while it was being read: what was read may mix the old
    output and the new one, so it is refused; read it again (:meth:`PreparedDataset.read` does)."""


#: How many times :meth:`PreparedDataset.read` reads a directory that keeps being replaced before giving up.
READ_TRIES = 3


# ----------------------------------------------------------------------------------------------- helpers
def _require(d: Mapping[str, Any], key: str, kind, where: str):
    if key not in d:
        raise ManifestError(f"{where}lacks the {key!r} key")
    value = d[key]
    if kind is not None and not isinstance(value, kind) or isinstance(value, bool) and kind in (int, (int, float)):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ManifestError(f"{where}{key!r} must be {want}, got {type(value).__name__}")
    return value


def _check_rel_path(path: Any, where: str) -> str:
    if not isinstance(path, str) or not path:
        raise ManifestError(f"{where}a file path must be a non-empty string, got {path!r}")
    norm = posixpath.normpath(path)
    if path.startswith(("/", "\\")) or "://" in path or norm.startswith("..") or norm != path:
        raise ManifestError(f"{where}file path {path!r} must be relative to the directory and normalised")
    return path


def shard_path(shard: int, num_shards: int, fmt: str, split: str = TRAIN_SPLIT) -> str:
    """``shards/part-XXXXX-of-YYYYY.<fmt>`` for ``train``; ``shards/<split>/part-...`` for another split."""
    name = f"part-{shard:05d}-of-{num_shards:05d}.{shard_format(fmt).extension}"
    return f"{SHARDS_DIR}/{name}" if split == TRAIN_SPLIT else f"{SHARDS_DIR}/{split}/{name}"


def reject_path(reason: str) -> str:
    return f"{REJECTS_DIR}/{reason}.jsonl"


def reject_table_path(reason: str, fmt: str) -> str:
    return f"{REJECTS_DIR}/{reason}.{shard_format(fmt).extension}"


#: Columns of the typed copy of the dead letters: the keys every reject line has (``raw`` as text: a value that
#: is not a string is written as its JSON text), and the optional ones (null when absent).
REJECT_COLUMNS = (("reason", "string"), ("message", "string"), ("source", "string"), ("index", "int64"),
                  ("example_id", "string"), ("raw", "string"), ("raw_encoding", "string"), ("raw_truncated", "bool"))


def reject_schema():
    import pyarrow as pa

    return pa.schema([(name, pa.type_for_alias(kind)) for name, kind in REJECT_COLUMNS])


def rejects_to_record_batch(rejects: Sequence[Mapping[str, Any]]):
    """Dead-letter dicts (as in ``rejects/<reason>.jsonl``) → one record batch with :func:`reject_schema`."""
    import pyarrow as pa

    def value(rej: Mapping[str, Any], name: str, kind: str):
        v = rej.get(name)
        if v is None:
            return None
        if kind == "string":
            return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True, default=repr)
        if kind == "int64":
            return int(v)
        return bool(v)

    schema = reject_schema()
    return pa.RecordBatch.from_arrays(
        [pa.array([value(r, name, kind) for r in rejects], schema.field(name).type) for name, kind in REJECT_COLUMNS],
        schema=schema)


def eval_split_of(example_id: str, fraction: float) -> bool:
    """True when ``example_id`` belongs to the evaluation split for ``fraction`` (see :data:`EVAL_SPLIT_RECIPE`).

    >>> eval_split_of("0123456789abcdef", 0.0), eval_split_of("0123456789abcdef", 1.0)
    (False, True)
    """
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"eval|{example_id}".encode("utf-8")).hexdigest()
    return int(digest[:16], 16) < fraction * 2 ** 64


# ------------------------------------------------------------------------------------------ manifest
def _plain(value: Any) -> Any:
    """A manifest field as JSON data: entries by their ``to_dict``, tuples as lists, mappings as dicts."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    path: str                 # relative to the directory
    num_rows: int
    sha256: str
    split: str = TRAIN_SPLIT

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> "ShardInfo":
        if not isinstance(d, Mapping):
            raise ManifestError(f"{where}a shard entry must be an object, got {type(d).__name__}")
        rows = _require(d, "num_rows", int, where)
        if rows < 0:
            raise ManifestError(f"{where}num_rows must be >= 0, got {rows}")
        return cls(path=_check_rel_path(_require(d, "path", str, where), where), num_rows=rows,
                   sha256=str(d.get("sha256") or ""), split=str(d.get("split") or TRAIN_SPLIT))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RejectFile:
    reason: str
    path: str                 # rejects/<reason>.jsonl
    count: int
    table: str | None = None  # rejects/<reason>.<format>: the typed copy (REJECT_SCHEMA)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> "RejectFile":
        if not isinstance(d, Mapping):
            raise ManifestError(f"{where}a rejects entry must be an object")
        table = d.get("table")
        return cls(reason=_require(d, "reason", str, where), path=_check_rel_path(_require(d, "path", str, where),
                                                                                   where),
                   count=_require(d, "count", int, where),
                   table=None if table is None else _check_rel_path(table, where))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Counts:
    read: int
    written: int
    rejected: int
    rejected_by_reason: Mapping[str, int]
    truncated: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> "Counts":
        if not isinstance(d, Mapping):
            raise ManifestError(f"{where}'counts' must be an object")
        by_reason = d.get("rejected_by_reason") or {}
        if not isinstance(by_reason, Mapping):
            raise ManifestError(f"{where}counts.rejected_by_reason must be an object")
        return cls(read=_require(d, "read", int, where), written=_require(d, "written", int, where),
                   rejected=_require(d, "rejected", int, where),
                   rejected_by_reason={str(k): int(v) for k, v in sorted(by_reason.items())},
                   truncated=int(d.get("truncated", 0)))

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "written": self.written, "rejected": self.rejected,
                "rejected_by_reason": dict(self.rejected_by_reason), "truncated": self.truncated}

    @property
    def reject_rate(self) -> float:
        return self.rejected / self.read if self.read else 0.0


@dataclasses.dataclass(frozen=True)
class Manifest:
    """``manifest.json``, typed. Build one with the constructor (the writer) or :meth:`from_dict` (readers, which
    validate); :meth:`to_dict` is the JSON document. ``files`` lists every file the run wrote (relative paths,
    the manifest itself excluded): what ``--overwrite`` may delete and nothing else."""

    tokenizer_name: str
    tokenizer_fingerprint: str
    chat_template: Mapping[str, Any]          # {"name", "sha256"}
    policy: Mapping[str, Any]                 # WeightPolicy.to_dict()
    policy_fingerprint: str
    role_codes: Mapping[str, int]
    format: str
    columns: tuple[Column, ...]
    counts: Counts
    shards: tuple[ShardInfo, ...]
    rejects: tuple[RejectFile, ...] = ()
    files: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    tokens_per_role: Mapping[str, int] = dataclasses.field(default_factory=dict)
    weight_mass_per_role: Mapping[str, float] = dataclasses.field(default_factory=dict)
    dataset_ratio: float | None = None
    max_length: int | None = None
    truncation: str = "keep_start"
    allow_special_tokens: bool = False
    allow_unrendered: tuple[str, ...] = ()
    split_inline_reasoning: bool = False
    eval_fraction: float = 0.0
    pack_length: int | None = None            # --pack-length: rows are packed (im_data.packing.PACKED_SCHEMA)
    sources: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # per-source counts (stats.json sources)
    stats: str = STATS_FILE
    card: str | None = CARD_FILE
    package_version: str = ""
    created_at: str = ""
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def __post_init__(self) -> None:
        try:
            shard_format(self.format)
        except ValueError as exc:
            raise ManifestError(str(exc)) from None
        if not self.tokenizer_fingerprint:
            raise ManifestError("the manifest has no tokenizer fingerprint")
        paths = [s.path for s in self.shards]
        if len(set(paths)) != len(paths):
            raise ManifestError("the manifest lists a shard twice")
        for path in self.files:
            _check_rel_path(path, "")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ManifestError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")

    # -- reading
    @classmethod
    def from_dict(cls, d: Any, where: str = "") -> "Manifest":
        """Validate a parsed ``manifest.json``; ``where`` prefixes error messages (e.g. the file's path)."""
        w = f"{where}: " if where else ""
        if not isinstance(d, Mapping):
            raise ManifestError(f"{w}not an im-data manifest (a JSON object is expected)")
        version = _require(d, "schema_version", int, w)
        if version > MANIFEST_SCHEMA_VERSION:
            raise ManifestError(f"{w}schema_version {version} is newer than this im-data understands "
                                f"({MANIFEST_SCHEMA_VERSION}); upgrade im-data")
        tok = _require(d, "tokenizer", Mapping, w)
        shards = _require(d, "shards", list, w)
        columns = _require(d, "columns", list, w)
        for c in columns:
            if not isinstance(c, Mapping) or not isinstance(c.get("name"), str) or not isinstance(c.get("type"), str):
                raise ManifestError(f"{w}'columns' must be a list of {{name, type}} objects, got {c!r}")
        rejects = d.get("rejects") or []
        if not isinstance(rejects, list):
            raise ManifestError(f"{w}'rejects' must be a list")
        default = {f.name: f.default for f in dataclasses.fields(cls)}
        try:
            return cls(
                tokenizer_name=str(tok.get("name_or_path") or "default"),
                tokenizer_fingerprint=str(tok.get("fingerprint") or ""),
                chat_template=dict(_require(d, "chat_template", Mapping, w)),
                policy=dict(_require(d, "policy", Mapping, w)),
                policy_fingerprint=_require(d, "policy_fingerprint", str, w),
                role_codes={str(k): int(v) for k, v in _require(d, "role_codes", Mapping, w).items()},
                format=_require(d, "format", str, w),
                columns=tuple(Column(c["name"], c["type"]) for c in columns),
                counts=Counts.from_dict(_require(d, "counts", Mapping, w), w),
                shards=tuple(ShardInfo.from_dict(s, w) for s in shards),
                rejects=tuple(RejectFile.from_dict(r, w) for r in rejects),
                files=tuple(d.get("files") or ()),
                inputs=tuple(str(x) for x in d.get("inputs") or ()),
                tokens_per_role={str(k): int(v) for k, v in (d.get("tokens_per_role") or {}).items()},
                weight_mass_per_role={str(k): float(v) for k, v in (d.get("weight_mass_per_role") or {}).items()},
                dataset_ratio=d.get("dataset_ratio"),
                max_length=d.get("max_length"),
                truncation=str(d.get("truncation", default["truncation"])),
                allow_special_tokens=bool(d.get("allow_special_tokens", default["allow_special_tokens"])),
                allow_unrendered=tuple(str(f) for f in d.get("allow_unrendered") or ()),
                split_inline_reasoning=bool(d.get("split_inline_reasoning", default["split_inline_reasoning"])),
                eval_fraction=float(d.get("eval_fraction", default["eval_fraction"])),
                pack_length=d.get("pack_length"),
                sources=dict(d.get("sources") or {}),
                stats=_check_rel_path(d.get("stats", default["stats"]), w),
                card=d.get("card"),
                package_version=str(d.get("package_version", "")),
                created_at=str(d.get("created_at", "")),
                schema_version=version,
            )
        except ManifestError as exc:
            msg = str(exc)
            raise ManifestError(msg if msg.startswith(w) else f"{w}{msg}") from None
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"{w}invalid manifest: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: every field under its own name, but the tokenizer's two as ``tokenizer``."""
        d = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        d["tokenizer"] = {"name_or_path": d.pop("tokenizer_name"), "fingerprint": d.pop("tokenizer_fingerprint")}
        return d

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode("utf-8")

    # -- views
    @property
    def splits(self) -> dict[str, int]:
        """``{split: rows}``, ``train`` first."""
        out: dict[str, int] = {}
        for s in sorted(self.shards, key=lambda s: s.split != TRAIN_SPLIT):
            out[s.split] = out.get(s.split, 0) + s.num_rows
        return out

    def shards_of(self, split: str | None = TRAIN_SPLIT) -> tuple[ShardInfo, ...]:
        """The shards of one split (``None``: every shard), in manifest order."""
        return tuple(s for s in self.shards if split is None or s.split == split)

    @property
    def num_rows(self) -> int:
        return sum(s.num_rows for s in self.shards)

    @property
    def policy_is_binary(self) -> bool | None:
        """True when every role weight is 0 or 1; None when the policy is unreadable."""
        from .policy import WeightPolicy

        try:
            return WeightPolicy.from_dict(self.policy).is_binary
        except (TypeError, ValueError):
            return None

    @property
    def owned_files(self) -> tuple[str, ...]:
        """Every file of the directory that im-data wrote, the manifest included."""
        listed = set(self.files) | {s.path for s in self.shards} | {r.path for r in self.rejects} | {self.stats}
        listed |= {r.table for r in self.rejects if r.table}
        if self.card:
            listed.add(self.card)
        return tuple(sorted(listed)) + (MANIFEST_FILE,)


# ------------------------------------------------------------------------------------ directories
def manifest_location(root: str | os.PathLike) -> str:
    return storage.join(os.fspath(root), MANIFEST_FILE)


def is_prepared_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` (a directory or URL) holds a ``manifest.json`` (its presence means the run finished)."""
    try:
        return storage.isfile(manifest_location(path))
    except (OSError, ValueError, ImportError):
        return False


def read_manifest(root: str | os.PathLike) -> Manifest:
    """The validated manifest of a prepared directory; :class:`ManifestError` when absent or invalid."""
    return _load_manifest(root)[0]


def manifest_digest(root: str | os.PathLike) -> str | None:
    """sha256 of the bytes of ``DIR/manifest.json`` now; None when it is absent or unreadable. A new run that
    replaces the directory writes a new manifest (its ``created_at``, counts and checksums), so a changed digest
    means the files may have changed under a reader."""
    try:
        return hashlib.sha256(storage.read_bytes(manifest_location(os.fspath(root)))).hexdigest()
    except (OSError, ValueError):
        return None


def _load_manifest(root: str | os.PathLike) -> tuple[Manifest, str]:
    """The validated manifest and the sha256 of its bytes."""
    root = os.fspath(root)
    location = manifest_location(root)
    try:
        data = storage.read_bytes(location)
    except FileNotFoundError:
        raise ManifestError(
            f"{root}: no {MANIFEST_FILE}: not an `im-data prepare` output directory, or the run did not finish "
            "(the manifest is written last)") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{location}: unreadable manifest: {str(exc).splitlines()[0] if str(exc) else exc!r}"
                            ) from None
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{location}: not valid JSON: {str(exc).splitlines()[0]}") from None
    return Manifest.from_dict(parsed, where=location), hashlib.sha256(data).hexdigest()


def iter_file_batches(path: str, fmt: str | None = None, columns: Sequence[str] | None = None,
                      batch_size: int = 4096) -> Iterator[Any]:
    """Record batches of one shard file: Parquet, Arrow IPC stream (what ``prepare`` writes) or IPC file.
    ``fmt`` defaults to the file's suffix. Raises :class:`ManifestError` for an unreadable file."""
    import pyarrow as pa

    reader = format_of_file(path).reader if fmt is None else shard_format(fmt).reader
    try:
        yield from reader(path, list(columns) if columns else None, batch_size)
    except GeneratorExit:  # a reader stopped early (also at interpreter exit, when `pa` may be torn down)
        raise
    except FileNotFoundError:
        raise ManifestError(f"{path}: listed by the manifest but missing") from None
    except (OSError, pa.ArrowException, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ManifestError(f"{path}: unreadable shard: {msg}") from None


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
    """An opened prepared directory: ``PreparedDataset.open(DIR)`` reads and validates the manifest.

    Old or new, never a mix: files are read by path, so a run that replaces ``DIR`` (``--overwrite``) while this
    object reads it could hand it new files under the old manifest. Every read that returns data checks, once
    it has read the files, that ``manifest.json`` is still the one this object was opened with (and that each
    shard holds the rows the manifest says), and raises :class:`OutputReplaced` otherwise;
    :meth:`read` opens the directory again and retries."""

    root: str
    manifest: Manifest
    manifest_sha256: str = ""  # of the manifest's bytes when opened ("": not known, no replacement check)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "PreparedDataset":
        root = os.fspath(root)
        manifest, digest = _load_manifest(root)
        return cls(root if storage.is_url(root) else storage.local_path(root), manifest, digest)

    @classmethod
    def read(cls, root: str | os.PathLike, fn, tries: int = READ_TRIES):
        """``fn(PreparedDataset.open(root))``, opened and read again when the directory was replaced meanwhile
        (up to ``tries`` times; then :class:`OutputReplaced`): the result comes from one complete output."""
        for _ in range(tries):
            prepared = cls.open(root)
            try:
                result = fn(prepared)
                prepared.check_unchanged()
                return result
            except ManifestError as exc:
                if not isinstance(exc, OutputReplaced) and not prepared.replaced():
                    raise
        raise OutputReplaced(f"{os.fspath(root)}: replaced {tries} times while being read; read it again when no "
                             "run is replacing it")

    def replaced(self) -> bool:
        """True when ``manifest.json`` is no longer the one this object was opened with."""
        return bool(self.manifest_sha256) and manifest_digest(self.root) != self.manifest_sha256

    def check_unchanged(self) -> None:
        """:class:`OutputReplaced` when the directory was replaced since it was opened."""
        if self.replaced():
            raise OutputReplaced(f"{self.root}: replaced by another run (--overwrite) while being read; what was "
                                 "read may mix two outputs: read it again")

    def _shard_mismatch(self, error: str) -> ManifestError:
        """The error for a shard that disagrees with the manifest: :class:`OutputReplaced` when the directory
        was replaced meanwhile, else ``error`` (the shard was modified)."""
        return OutputReplaced(f"{self.root}: replaced by another run (--overwrite) while being read; read it "
                              "again") if self.replaced() else ManifestError(error)

    def path(self, rel: str) -> str:
        """The full path / URL of a file named relative to the directory."""
        return storage.join(self.root, rel)

    @property
    def stats_path(self) -> str:
        return self.path(self.manifest.stats)

    @property
    def manifest_path(self) -> str:
        return self.path(MANIFEST_FILE)

    def shard_files(self, split: str | None = TRAIN_SPLIT) -> list[str]:
        return [self.path(s.path) for s in self.manifest.shards_of(split)]

    def local_shard_files(self, split: str | None = TRAIN_SPLIT, cache_dir: str | os.PathLike | None = None
                          ) -> list[str]:
        """Local paths of a split's shards: the files themselves for a local directory; for a URL, copies in
        ``cache_dir`` named by their sha256 (downloaded once, checked against the manifest while copying, so a
        second call costs nothing). Works whatever ``HF_HUB_OFFLINE`` says."""
        if not storage.is_url(self.root):
            return self.shard_files(split)
        if cache_dir is None:
            raise ValueError("a cache directory is needed to read shards from a URL")
        os.makedirs(cache_dir, exist_ok=True)
        out = []
        for shard in self.manifest.shards_of(split):
            url = self.path(shard.path)
            name = shard.sha256 or hashlib.sha256(url.encode()).hexdigest()
            target = os.path.join(os.fspath(cache_dir), f"{name}.{shard_format(self.manifest.format).extension}")
            if not os.path.isfile(target):
                tmp = f"{target}.tmp-{os.getpid()}"
                try:
                    storage.copy_file(url, tmp)
                except FileNotFoundError:
                    raise self._shard_mismatch(f"{url}: listed by the manifest but missing") from None
                if shard.sha256 and storage.sha256_file(tmp) != shard.sha256:
                    os.remove(tmp)
                    raise self._shard_mismatch(f"{url}: sha256 differs from the manifest; the shard was modified "
                                               "or truncated")
                os.replace(tmp, target)
            out.append(target)
        return out

    def reject_files(self) -> dict[str, str]:
        """``{reason: path}`` of the dead-letter files."""
        return {r.reason: self.path(r.path) for r in self.manifest.rejects}

    def read_stats(self) -> dict[str, Any]:
        try:
            return json.loads(storage.read_bytes(self.stats_path).decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{self.stats_path}: unreadable statistics: {exc}") from None

    def iter_batches(self, split: str | None = TRAIN_SPLIT, columns: Sequence[str] | None = None,
                     batch_size: int = 4096) -> Iterator[Any]:
        """Record batches of the given columns, shard by shard in manifest order. Each shard must hold the rows
        the manifest says, and the directory must not have been replaced meanwhile (checked after the last
        batch): else :class:`ManifestError` / :class:`OutputReplaced`."""
        for shard in self.manifest.shards_of(split):
            rows = 0
            for batch in self._file_batches(shard, columns, batch_size):
                rows += batch.num_rows
                yield batch
            self._check_rows(shard, rows)
        self.check_unchanged()

    def _file_batches(self, shard: ShardInfo, columns: Sequence[str] | None, batch_size: int = 4096):
        try:
            yield from iter_file_batches(self.path(shard.path), self.manifest.format, columns, batch_size)
        except ManifestError as exc:
            raise self._shard_mismatch(str(exc)) from None

    def _check_rows(self, shard: ShardInfo, rows: int) -> None:
        if rows != shard.num_rows:
            raise self._shard_mismatch(f"{self.path(shard.path)}: holds {rows} rows, the manifest says "
                                       f"{shard.num_rows}")

    def read_shard(self, shard: ShardInfo, columns: Sequence[str] | None = None):
        """One shard as a ``pyarrow.Table`` (the shard schema, or the chosen columns, also when it is empty)."""
        import pyarrow as pa

        from .shards import SHARD_SCHEMA

        batches = list(self._file_batches(shard, columns))
        if shard.path in {s.path for s in self.manifest.shards}:
            self._check_rows(shard, sum(b.num_rows for b in batches))
            self.check_unchanged()
        if batches:
            return pa.Table.from_batches(batches)
        schema = SHARD_SCHEMA if not columns else pa.schema([SHARD_SCHEMA.field(c) for c in columns])
        return schema.empty_table()

    def read_table(self, split: str | None = TRAIN_SPLIT, columns: Sequence[str] | None = None):
        import pyarrow as pa

        tables = [self.read_shard(s, columns) for s in self.manifest.shards_of(split)]
        return pa.concat_tables(tables) if tables else self.read_shard(ShardInfo("x", 0, ""), columns)

    def verify(self, checksums: bool = True) -> None:
        """Every shard exists (and, with ``checksums``, matches its sha256); :class:`ManifestError` otherwise."""
        for shard in self.manifest.shards:
            where = self.path(shard.path)
            if not storage.isfile(where):
                raise self._shard_mismatch(f"{self.manifest_path} lists {shard.path}, which does not exist")
            if checksums and shard.sha256 and storage.sha256_file(where) != shard.sha256:
                raise self._shard_mismatch(f"{where}: sha256 differs from the manifest; the shard was modified "
                                           "or truncated")
        self.check_unchanged()
