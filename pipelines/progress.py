"""Live progress of ``prepare`` and ``audit``: workers write small count files, the launcher polls them.

Beam metrics cannot be read mid-run on every runner, so the encode step counts each batch it finishes (records
and bytes read per source, tokens, rejects) and pass-through steps (:func:`report_progress`) mark finished phases,
in a per-process :class:`_Reporter`, which rewrites one small JSON file per worker process
in a temporary progress directory (atomically, at most every :data:`FLUSH_S` seconds and at the end of each
bundle). The launcher's :class:`ProgressDisplay` sums those files: a rich bar on a terminal, plain periodic lines
otherwise (every ``IM_DATA_PROGRESS_INTERVAL`` seconds, default 10, and at every phase change).

This works wherever the workers see the launcher's file system: the DirectRunner (in-process or
``multi_processing``) and Dask on one host. Elsewhere the directory does not exist on the worker, nothing is
written and the display shows no counts: no progress, no error. This module imports Beam only for the tap.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Iterable

FLUSH_S = 0.5
PLAIN_INTERVAL_S = 10.0
PHASES = ("encode_done", "merged")   # counters of phase markers that taps report
SHOW_CURSOR = b"\x1b[?25h"


# ------------------------------------------------------------------------------------------- worker side
class _Reporter:
    """Cumulative counts of one worker process for one progress directory."""

    _instances: dict[str, "_Reporter"] = {}
    _lock = threading.Lock()

    def __init__(self, progress_dir: str):
        self.enabled = bool(progress_dir) and os.path.isdir(progress_dir)  # not on remote workers
        self.path = os.path.join(progress_dir, f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json")
        self.counts: dict[str, Any] = {"records": 0, "bytes": 0, "tokens": 0, "rejected": 0,
                                       "by_source": {}, **{p: 0 for p in PHASES}}
        self.lock = threading.Lock()
        self.last_flush = 0.0

    @classmethod
    def get(cls, progress_dir: str) -> "_Reporter":
        with cls._lock:
            if progress_dir not in cls._instances:
                cls._instances[progress_dir] = cls(progress_dir)
            return cls._instances[progress_dir]

    def add_records(self, records: Iterable[Any]) -> None:
        with self.lock:
            by_source = self.counts["by_source"]
            for rec in records:
                payload = getattr(rec, "payload", None)
                size = len(payload) + 1 if isinstance(payload, (bytes, bytearray)) else 0  # + the newline
                entry = by_source.setdefault(str(getattr(rec, "source", "")), [0, 0])
                entry[0] += 1
                entry[1] += size
                self.counts["records"] += 1
                self.counts["bytes"] += size

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last_flush < FLUSH_S):
            return
        with self.lock:
            self.last_flush = now
            text = json.dumps(self.counts)
        try:
            tmp = f"{self.path}.{threading.get_ident()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except OSError:
            self.enabled = False  # progress is best effort; the run goes on


def _tap_classes():
    import apache_beam as beam

    class _ReportFn(beam.DoFn):
        def __init__(self, progress_dir: str, kind: str):
            self.progress_dir, self.kind = progress_dir, kind

        def setup(self) -> None:
            self.reporter = _Reporter.get(self.progress_dir)

        def process(self, element):
            self.reporter.add(self.kind)  # a phase marker: encode_done, merged
            self.reporter.flush()
            yield element

        def finish_bundle(self) -> None:
            self.reporter.flush(force=True)

    T = beam.typehints.TypeVariable("T")

    @beam.typehints.with_input_types(T)
    @beam.typehints.with_output_types(T)
    class ReportProgress(beam.PTransform):
        """Passes its input through unchanged, counting it for the progress display. A pass-through rather than
        a side branch: an extra consumer would be an extra leaf, and the Dask runner may then compute shared
        upstream stages twice."""

        def __init__(self, progress_dir: str, kind: str):
            super().__init__()
            self.progress_dir, self.kind = progress_dir, kind

        def expand(self, pcoll):
            # a pass-through: what it emits is of the type its input states
            return pcoll | beam.ParDo(_ReportFn(self.progress_dir, self.kind)).with_output_types(pcoll.element_type)

    return ReportProgress


_REPORT_PROGRESS = None


def report_progress(pcoll, progress_dir: str, kind: str, label: str):
    """``pcoll`` passed through a counting step labelled ``label``; ``pcoll`` itself when ``progress_dir`` is
    empty (no progress display)."""
    global _REPORT_PROGRESS  # pylint: disable=global-statement
    if not progress_dir:
        return pcoll
    if _REPORT_PROGRESS is None:
        _REPORT_PROGRESS = _tap_classes()
    return pcoll | label >> _REPORT_PROGRESS(progress_dir, kind)


# ------------------------------------------------------------------------------------------- launcher side
def read_counts(progress_dir: str) -> dict[str, Any]:
    """The sum of every worker's counts (missing or half-written files are skipped)."""
    total: dict[str, Any] = {"records": 0, "bytes": 0, "tokens": 0, "rejected": 0, "by_source": {},
                             **{p: 0 for p in PHASES}}
    try:
        names = [n for n in os.listdir(progress_dir) if n.endswith(".json")]
    except OSError:
        return total
    for name in names:
        try:
            with open(os.path.join(progress_dir, name), encoding="utf-8") as f:
                counts = json.load(f)
        except (OSError, ValueError):
            continue
        for key, value in counts.items():
            if key == "by_source":
                for src, (n, b) in value.items():
                    entry = total["by_source"].setdefault(src, [0, 0])
                    entry[0] += n
                    entry[1] += b
            elif key in total:
                total[key] += value
    return total


def source_sizes(sources) -> list[dict[str, Any]]:
    """What is known up front about each source: ``label``, ``bytes`` (file size) and how its progress is
    measured: ``unit`` ``bytes`` (plain JSONL: payload bytes), ``rows`` (Parquet: row count from the metadata)
    or ``None`` (compressed files, JSON arrays, datasets: done only at the end)."""
    out = []
    for src in sources:
        size = 0
        if src.kind in ("jsonl", "json", "parquet"):
            try:
                size = os.path.getsize(src.path)
            except OSError:
                size = 0
        info = {"label": src.label, "bytes": size, "unit": None, "rows": None}
        if src.kind == "jsonl" and not src.path.lower().endswith(".gz"):
            info["unit"] = "bytes"
        elif src.kind == "parquet":
            try:
                import pyarrow.parquet as pq

                info["rows"] = pq.ParquetFile(src.path).metadata.num_rows
                info["unit"] = "rows"
            except Exception:  # pylint: disable=broad-except - an unreadable file is reported by the reader
                pass
        out.append(info)
    return out


def bytes_done(sizes: list[dict[str, Any]], counts: dict[str, Any]) -> int:
    """Bytes of input read so far: exact for plain JSONL, row share × file size for Parquet."""
    done = 0
    for info in sizes:
        n, b = counts["by_source"].get(info["label"], (0, 0))
        if info["unit"] == "bytes":
            done += min(b, info["bytes"])
        elif info["unit"] == "rows" and info["rows"]:
            done += int(info["bytes"] * min(n / info["rows"], 1.0))
    return done


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressDisplay:
    """The launcher's view of a run's progress; ``mode``: ``rich`` (a live bar), ``plain`` (a line every
    ``interval`` seconds and at every phase change) or ``off``; ``auto``: rich on a terminal, else plain."""

    def __init__(self, label: str, mode: str = "auto", interval: float | None = None, file=None):
        self.label = label
        self.file = file or sys.stderr
        if mode == "auto":
            mode = "rich" if getattr(self.file, "isatty", lambda: False)() else "plain"
        self.mode = mode
        self.interval = float(os.environ.get("IM_DATA_PROGRESS_INTERVAL", PLAIN_INTERVAL_S) if interval is None
                              else interval)
        self.progress_dir = ""
        self.sizes: list[dict[str, Any]] = []
        self.total_bytes = 0
        self._phase = "starting"
        self.num_shards: int | None = None
        self.stages = 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rich = None
        self._task = None
        self._start = time.monotonic()
        self._unregister = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, progress_dir: str, sources, num_shards: int | None = None, stages: int = 1) -> None:
        """Start polling ``progress_dir``; ``num_shards``: shards to merge (prepare), ``stages``: datasets whose
        encoding must finish before the next phase (audit)."""
        if self.mode == "off":
            return
        self.progress_dir, self.num_shards, self.stages = progress_dir, num_shards, stages
        self.sizes = source_sizes(sources)
        self.total_bytes = sum(i["bytes"] for i in self.sizes)
        self._start = time.monotonic()
        self._phase = "encoding"
        known = sum(1 for i in self.sizes if i["unit"])
        self._line(f"reading {len(self.sizes)} input(s), {_mb(self.total_bytes)}"
                   + ("" if known == len(self.sizes) else f" ({len(self.sizes) - known} measured only at the end)"))
        from .signals import restore_on_signal

        self._unregister = restore_on_signal(self.abort)  # before the cursor is hidden
        if self.mode == "rich":
            self._start_rich()
        self._thread = threading.Thread(target=self._poll, name="im-data-progress", daemon=True)
        self._thread.start()

    def phase(self, name: str) -> None:
        """A launcher-side phase (``publishing``); shown at once."""
        if self.mode == "off" or name == self._phase:
            return
        self._phase = name
        if self.mode == "rich" and self._rich is not None:
            self._update_rich(read_counts(self.progress_dir) if self.progress_dir else None)
        else:
            self._line(name)

    def abort(self) -> None:
        """Stop drawing at once and give the terminal back (cursor shown, the live line ended by a newline); for a
        signal handler, which prints its own closing line next."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        self._close_rich()

    def stop(self, counts_final: bool = True) -> None:
        if self._unregister is not None:
            self._unregister()
            self._unregister = None
        if self.mode == "off":
            return
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        elif self._rich is None:
            return  # never started
        counts = read_counts(self.progress_dir)
        if counts_final:
            self._phase_from(counts)  # phases the last poll did not see
        if self.mode == "rich" and self._rich is not None:
            if self._task is not None:
                self._update_rich(counts, final=counts_final)
            self._close_rich()
        elif counts_final and self._phase == "encoding":  # later phases printed it already
            self._line(self._status(counts, final=True))

    def _close_rich(self) -> None:
        """Stop the live display: its last state, a newline, the cursor shown. An interruption (a signal, Ctrl-C)
        may have come in the middle of rich's own start or drawing, so the cursor is also shown by a direct write to
        the terminal."""
        rich, self._rich = self._rich, None
        if rich is None:
            return
        live = rich.live
        refresh = getattr(live, "_refresh_thread", None)
        if refresh is not None:  # rich's own redraw thread: stopped before the last draw
            refresh.done.set()
            refresh.join(timeout=1.0)
        drawn = False
        try:
            rich.stop()
        except Exception:  # noqa: BLE001 - interrupted half-way through rich's start: undo what it did by hand
            drawn = bool(getattr(getattr(live, "_live_render", None), "last_render_height", 0))
            with contextlib.suppress(Exception):
                live._disable_redirect_io()  # pylint: disable=protected-access
        with contextlib.suppress(Exception):
            self.file.flush()
        with contextlib.suppress(Exception):
            os.write(self.file.fileno(), SHOW_CURSOR + (b"\n" if drawn else b""))

    # -- rendering ----------------------------------------------------------------------------
    def _line(self, text: str) -> None:
        if self.mode == "rich" and self._rich is not None:
            self._rich.console.print(f"{self.label}: {text}", markup=False, highlight=False)
        else:
            print(f"{self.label}: {text}", file=self.file, flush=True)

    def _figures(self, counts: dict[str, Any], final: bool = False) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        done = self.total_bytes if final else bytes_done(self.sizes, counts)
        rate = done / elapsed
        eta = (self.total_bytes - done) / rate if rate > 0 and self.total_bytes else None
        return {"done": done, "elapsed": elapsed, "eta": eta, "tokens_per_s": counts["tokens"] / elapsed}

    def _status(self, counts: dict[str, Any], final: bool = False) -> str:
        f = self._figures(counts, final)
        pct = f" {100 * f['done'] / self.total_bytes:3.0f}%" if self.total_bytes else ""
        parts = [f"{'read' if final else self._phase}{pct}", f"{counts['records']:,} records",
                 f"{_mb(f['done'])} of {_mb(self.total_bytes)}", f"{f['tokens_per_s']:,.0f} tokens/s",
                 f"{counts['rejected']:,} rejected"]
        if not final:
            parts.append(f"ETA {_eta(f['eta'])}")
        return " · ".join(parts)

    def _phase_from(self, counts: dict[str, Any]) -> None:
        if self._phase == "encoding" and counts.get("encode_done", 0) >= self.stages:
            if self.mode == "plain":
                self._line(self._status(counts, final=True))
            self._phase = "merging shards" if self.num_shards else "computing statistics"
            if self.mode == "plain":
                self._line(self._phase)
        if self.num_shards and self._phase == "merging shards" and counts.get("merged", 0) >= self.num_shards:
            self._phase = "shards merged"
            if self.mode == "plain":
                self._line(f"{self.num_shards} shard(s) merged")

    def _poll(self) -> None:
        last_line = time.monotonic()
        step = 0.25 if self.mode == "rich" else min(0.5, self.interval)
        while not self._stop.wait(step):
            counts = read_counts(self.progress_dir)
            self._phase_from(counts)
            if self.mode == "rich":
                self._update_rich(counts)
            elif time.monotonic() - last_line >= self.interval and self._phase == "encoding":
                last_line = time.monotonic()
                self._line(self._status(counts))

    def _start_rich(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn

        self._rich = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
                              TaskProgressColumn(), TextColumn("{task.fields[status]}"),
                              console=Console(file=self.file), transient=False, refresh_per_second=4)
        self._rich.start()
        self._task = self._rich.add_task(self._phase, total=self.total_bytes or None, status="")

    def _update_rich(self, counts: dict[str, Any] | None, final: bool = False) -> None:
        if counts is None:
            counts = read_counts(self.progress_dir)
        f = self._figures(counts, final)
        status = (f"{counts['records']:,} rec · {f['done'] / 1e6:,.1f}/{_mb(self.total_bytes)} · "
                  f"{f['tokens_per_s']:,.0f} tok/s · {counts['rejected']:,} rej"
                  + ("" if final or self._phase != "encoding" else f" · ETA {_eta(f['eta'])}"))
        self._rich.update(self._task, completed=f["done"] if self.total_bytes else None,
                          description="done" if final else self._phase, status=status)


@contextlib.contextmanager
def watching(display: ProgressDisplay | None, sources, **kwargs):
    """A temporary progress directory watched by ``display`` for the duration of the block; yields its path
    (``""`` when there is no display: the pipeline then carries no progress branches)."""
    if display is None or display.mode == "off":
        yield ""
        return
    progress_dir = tempfile.mkdtemp(prefix="im-data-progress-")
    from .signals import remove_on_signal

    remove_on_signal(progress_dir)  # SIGTERM/SIGINT remove it too
    ok = False
    try:
        display.start(progress_dir, sources, **kwargs)  # inside: Ctrl-C during the start still stops the display
        yield progress_dir
        ok = True
    finally:
        display.stop(counts_final=ok)
        shutil.rmtree(progress_dir, ignore_errors=True)
