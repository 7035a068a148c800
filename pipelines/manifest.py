"""Output directory life cycle (the writing side of :mod:`im_data.dataset`): checks, temporary run folder,
manifest, dataset card, publishing.

* **Checks, before any work** (:func:`check_output_dir`): ``DIR`` must be absent, empty, or (with ``--overwrite``)
  an earlier im-data output holding only files its manifest lists. Anything else is refused with one line naming
  the folder; so is an output inside an input or an input inside the output.
* **Run folder**: the pipeline writes into ``<parent>/.<name>.im-data-tmp-<id>`` (next to ``DIR``, so the final
  move is a rename), which holds ``_owner.json`` (host, pid, start time).
* **Stale run folders** of dead runs on the same output are removed by the next run (:func:`remove_stale_runs`):
  a folder named ``.<name>.im-data-tmp-*`` or ``.<name>.im-data-old-*`` whose owner is a process of this host
  that no longer exists, that has no owner file but a manifest (an old output being deleted), or that is older
  than :data:`STALE_AFTER_S` (24 h) whoever made it. The owner file stays in the run folder until it is in place.
  The folder of a run that failed on its reject rate (``_failed.json``) is kept: it holds the dead letters the
  error message names; only the newest :data:`KEEP_FAILED_RUNS` of an output are.
* **Publishing** (:func:`publish`): ``stats.json`` and ``README.md`` go into the run folder and ``manifest.json``
  last. Locally the run folder then replaces ``DIR`` in one atomic step (``renameat2(RENAME_EXCHANGE)`` on Linux;
  two renames elsewhere), so a reader, or a run killed at any point, sees the old complete output or the new
  complete one. The old output is then deleted file by file, only what its manifest lists. On object storage
  (no renames) the old manifest is deleted first, the files are copied into place and the manifest is written
  last: a failed run leaves no manifest at the final location.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from typing import Any, Iterable

from im_data import storage
from im_data.dataset import (CARD_FILE, FAILED_FILE, MANIFEST_FILE, OLD_MARK, OWNER_FILE, REJECTS_DIR, RUNS_DIR,
                             SHARDS_DIR, STATS_FILE, SUMMARY_FILE, TMP_MARK, Column, Counts, Manifest, ManifestError,
                             RejectFile, ShardInfo, read_manifest, reject_schema, reject_table_path,
                             rejects_to_record_batch, shard_format)
from im_data.packing import PACKED_SCHEMA
from im_data.shards import SHARD_SCHEMA

LOG = logging.getLogger("im_data.prepare")
STALE_AFTER_S = 24 * 3600
KEEP_FAILED_RUNS = 3   # the newest failed-run folders (exit 3) kept per output; older ones go at the next run
NAME_MAX = 255         # bytes in one path component (Linux, macOS, most object stores allow more)
_RUN_SUFFIX = len(TMP_MARK) + 12  # ".im-data-tmp-" + 12 hex digits


class OutputError(RuntimeError):
    """The output directory cannot be used (job-level; raised before any work starts)."""


# ------------------------------------------------------------------------------------------------- checks
def _nesting_error(output_dir: str, inputs: Iterable[str]) -> str | None:
    out = _real(output_dir)
    for path in inputs:
        if not path:
            continue
        src = _real(path)
        if storage.relative_to(out, src) is not None:
            return f"{output_dir}: the output is inside the input {path}; choose an output outside the inputs"
        if storage.relative_to(src, out) is not None:
            return f"{output_dir}: the input {path} is inside the output; choose another output folder"
    return None


def _real(path: str) -> str:
    """A URL as it is; a local path absolute, with its symbolic links resolved."""
    return storage.normalize(path) if storage.is_url(path) else os.path.realpath(storage.normalize(path))


def foreign_files(output_dir: str, manifest: Manifest | None) -> list[str]:
    """Files in ``DIR`` that im-data did not write (all of them when there is no manifest)."""
    owned = set(manifest.owned_files) if manifest is not None else set()
    owned.add(OWNER_FILE)  # left by a run killed just after publishing (removed right after the exchange)
    return [f for f in storage.list_files(output_dir) if f not in owned]


def resolve_output(output_dir: str) -> str:
    """The folder ``-o`` names: a URL as given; a local path made absolute with its symbolic links resolved (so
    that publishing replaces the real folder and the link keeps pointing at it). A link to nothing, or a link
    loop, is an :class:`OutputError`."""
    if len(os.fsencode(storage.basename(output_dir))) > NAME_MAX:
        raise OutputError(f"{output_dir}: the folder name is longer than {NAME_MAX} bytes; choose a shorter one")
    if storage.is_url(output_dir):
        return storage.normalize(output_dir)
    path = storage.normalize(output_dir)
    try:
        real = os.path.realpath(path, strict=True)
    except FileNotFoundError:
        real = os.path.realpath(path)
        if _dangling_link_on(path):
            raise OutputError(f"{output_dir}: a symbolic link to {real}, which does not exist; create it or pass "
                              "the real folder") from None
    except OSError as exc:
        raise OutputError(f"{output_dir}: cannot be resolved ({exc.strerror or exc}, a symbolic link loop?)"
                          ) from None
    return real


def _dangling_link_on(path: str) -> bool:
    """True when a component of ``path`` is a symbolic link whose target is missing."""
    head = path
    while head and head != os.path.dirname(head):
        if os.path.islink(head) and not os.path.exists(head):
            return True
        head = os.path.dirname(head)
    return False


def _symlinks_inside(folder: str) -> list[str]:
    """Symbolic links inside a local folder (relative paths): an output holding one is never overwritten, since
    deleting through it would delete files elsewhere."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                out.append(os.path.relpath(full, folder))
    return sorted(out)


def _probe_writable(output_dir: str) -> None:
    """Object storage: write and delete one small object next to ``DIR`` (a missing bucket, wrong credentials or
    an unreachable endpoint are found now, not after the run)."""
    probe = storage.join(storage.parent(output_dir), f".im-data-probe-{uuid.uuid4().hex[:12]}")
    storage.write_bytes_atomic(probe, b"im-data write probe\n")
    storage.remove(probe)


def check_output_dir(output_dir: str, overwrite: bool, inputs: Iterable[str] = ()) -> None:
    """Refuse (:class:`OutputError`, one line naming the folder) anything but an absent or empty ``DIR`` or, with
    ``overwrite``, an earlier im-data output that holds nothing else."""
    try:
        _check_output_dir(output_dir, overwrite, inputs)
    except OutputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a missing bucket, no credentials, a dead endpoint (botocore), ...
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OutputError(f"{output_dir}: cannot be used as the output ({type(exc).__name__}: {text[:300]})"
                          ) from None


def _check_output_dir(output_dir: str, overwrite: bool, inputs: Iterable[str]) -> None:
    problem = _nesting_error(output_dir, inputs)
    if problem:
        raise OutputError(problem)
    if len(os.fsencode(storage.basename(output_dir))) > NAME_MAX:
        raise OutputError(f"{output_dir}: the folder name is longer than {NAME_MAX} bytes; choose a shorter one")
    if not storage.is_url(output_dir) and os.path.isdir(output_dir):
        links = _symlinks_inside(output_dir)
        if links:
            raise OutputError(f"{output_dir}: holds symbolic links ({', '.join(links[:3])}); refusing to write "
                              "there (deleting through a link would delete files elsewhere): choose another folder")
    if storage.exists(output_dir) and not storage.isdir(output_dir):
        raise OutputError(f"{output_dir}: exists and is not a directory")
    if storage.isdir(output_dir) and storage.list_files(output_dir):
        try:
            manifest = read_manifest(output_dir)
        except ManifestError:
            manifest = None
        if manifest is None:
            raise OutputError(f"{output_dir}: not empty and not an im-data output; refusing to write there "
                              "(--overwrite replaces only an earlier im-data output): choose a new or empty folder")
        foreign = foreign_files(output_dir, manifest)
        if foreign:
            raise OutputError(f"{output_dir}: holds files im-data did not write ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}); refusing to overwrite it: move them away or "
                              "choose another folder")
        if not overwrite:
            raise OutputError(f"{output_dir}: holds an earlier im-data output (pass --overwrite to replace it)")
    if storage.is_url(output_dir):
        _probe_writable(output_dir)
    else:
        parent = storage.parent(output_dir)
        try:  # like `mkdir -p`: create missing parents of DIR
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{parent}: cannot create the directory ({exc.strerror})") from None
        if not os.access(parent, os.W_OK):
            raise OutputError(f"{parent}: not writable")


# ------------------------------------------------------------------------------------------ run folders
def run_prefix(output_dir: str) -> str:
    """``.<name>``: what the run folders of ``DIR`` start with (then a mark and an id). A name too long for that
    is cut and given a hash of the whole name, so the run folder's name stays within :data:`NAME_MAX` bytes."""
    name = storage.basename(output_dir)
    raw = os.fsencode(name)
    if 1 + len(raw) + _RUN_SUFFIX <= NAME_MAX:
        return f".{name}"
    digest = hashlib.sha1(raw).hexdigest()[:12]
    keep = raw[:NAME_MAX - 1 - _RUN_SUFFIX - 1 - len(digest)].decode("utf-8", "ignore")
    return f".{keep}~{digest}"


def _sibling(output_dir: str, mark: str) -> str:
    return storage.join(storage.parent(output_dir), f"{run_prefix(output_dir)}{mark}{uuid.uuid4().hex[:12]}")


def make_work_dir(output_dir: str) -> str:
    """A fresh run folder next to ``DIR`` (same filesystem, so the final move is a rename), with its owner file."""
    work = _sibling(output_dir, TMP_MARK)
    storage.makedirs(work)
    _write_owner(work)  # first: a run folder without an owner file is treated as abandoned
    storage.makedirs(storage.join(work, SHARDS_DIR))
    storage.makedirs(storage.join(work, REJECTS_DIR))
    return work


def _write_owner(folder: str) -> None:
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()}
    storage.write_bytes_atomic(storage.join(folder, OWNER_FILE), json.dumps(owner).encode())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(folder: str, now: float) -> bool:
    if storage.exists(storage.join(folder, FAILED_FILE)):
        return False  # kept on purpose: the dead letters of a failed run, for the user to read (see below)
    owner_path = storage.join(folder, OWNER_FILE)
    if not storage.exists(owner_path) and storage.exists(storage.join(folder, MANIFEST_FILE)):
        return True  # an old output set aside while publishing (its owner died before deleting it)
    try:
        owner = json.loads(storage.read_bytes(owner_path))
        started = float(owner["started_at"])
        if owner.get("host") == socket.gethostname() and not _pid_alive(int(owner["pid"])):
            return True
    except (OSError, ValueError, KeyError, TypeError):
        started = storage.modified(folder) if not storage.is_url(folder) else None
        if started is None:
            return False
    return now - started > STALE_AFTER_S


def remove_stale_runs(output_dir: str) -> list[str]:
    """Delete the run folders of dead runs on ``DIR`` (see the module docstring for the rule); returns them."""
    parent = storage.parent(output_dir)
    try:
        entries = storage.list_dir(parent)
    except (OSError, ValueError):
        return []
    prefix = run_prefix(output_dir)
    removed, failed, now = [], [], time.time()
    for entry in entries:
        if not entry.startswith((f"{prefix}{TMP_MARK}", f"{prefix}{OLD_MARK}")):
            continue
        folder = storage.join(parent, entry)
        if _is_stale(folder, now):
            storage.remove_tree(folder)
            removed.append(folder)
            LOG.info("removed the run folder of a dead run: %s", folder)
        elif storage.exists(storage.join(folder, FAILED_FILE)):
            failed.append((_failed_at(folder), folder))
    for _, folder in sorted(failed, reverse=True)[KEEP_FAILED_RUNS:]:  # the newest failed runs are kept
        storage.remove_tree(folder)
        removed.append(folder)
        LOG.info("removed the run folder of an older failed run: %s", folder)
    return removed


def _failed_at(folder: str) -> float:
    try:
        return float(json.loads(storage.read_bytes(storage.join(folder, FAILED_FILE)))["failed_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


# --------------------------------------------------------------------------------------------- manifest
REJECT_BATCH = 4096


def _write_reject_table(src: str, dst: str, fmt: str) -> None:
    """``rejects/<reason>.jsonl`` → its typed copy, streamed in batches of :data:`REJECT_BATCH` lines."""
    with storage.open_file(src, "rb") as lines, storage.open_file(dst, "wb") as sink:
        writer = shard_format(fmt).writer(sink, reject_schema())
        try:
            batch: list[dict[str, Any]] = []
            for line in lines:
                if line.strip():
                    batch.append(json.loads(line))
                if len(batch) >= REJECT_BATCH:
                    writer.write(rejects_to_record_batch(batch))
                    batch = []
            if batch:
                writer.write(rejects_to_record_batch(batch))
        finally:
            writer.close()


def add_reject_tables(work_dir: str, summary: dict[str, Any], fmt: str) -> dict[str, Any]:
    """Write the typed copy of every dead-letter file (for the card's ``rejects`` config); returns the summary
    with each reject entry's ``table``."""
    rejects = []
    for r in summary["rejects"]:
        table = reject_table_path(r["reason"], fmt)
        _write_reject_table(storage.join(work_dir, r["path"]), storage.join(work_dir, table), fmt)
        rejects.append(dict(r, table=table))
    return dict(summary, rejects=rejects)


def read_summary(work_dir: str) -> dict[str, Any]:
    path = storage.join(work_dir, SUMMARY_FILE)
    if not storage.isfile(path):
        raise RuntimeError(f"the pipeline finished without writing {SUMMARY_FILE}; nothing is published")
    return json.loads(storage.read_bytes(path))


def build_manifest(summary: dict[str, Any], encoder_meta: dict[str, Any], *, tokenizer_name: str | None,
                   fmt: str, inputs: list[str], package_version: str, eval_fraction: float = 0.0,
                   pack_length: int | None = None) -> Manifest:
    stats = summary["stats"]
    rejects = tuple(RejectFile(r["reason"], r["path"], int(r["count"]), r.get("table")) for r in summary["rejects"])
    shards = tuple(ShardInfo(s["path"], int(s["num_rows"]), s["sha256"], s.get("split", "train"))
                   for s in summary["shards"])
    written = sum(int(s.get("documents", s["num_rows"])) for s in summary["shards"])  # examples, packed or not
    by_reason = {r.reason: r.count for r in rejects}
    counts = Counts(read=int(summary["read"]), written=written, rejected=sum(by_reason.values()),
                    rejected_by_reason=by_reason, truncated=int(stats["truncated"]))
    if counts.read != counts.written + counts.rejected:
        raise RuntimeError(f"record counts do not add up: read {counts.read} != written {written} + rejected "
                           f"{counts.rejected}; nothing is published")
    if stats["count"] != written:
        raise RuntimeError(f"statistics cover {stats['count']} examples but {written} rows were written")
    files = sorted({s.path for s in shards} | {r.path for r in rejects} | {r.table for r in rejects if r.table}
                   | {STATS_FILE, CARD_FILE})
    return Manifest(
        tokenizer_name=tokenizer_name or "default",
        tokenizer_fingerprint=encoder_meta["tokenizer"]["fingerprint"],
        chat_template=encoder_meta["chat_template"],
        policy=encoder_meta["policy"],
        policy_fingerprint=encoder_meta["policy_fingerprint"],
        role_codes=encoder_meta["role_codes"],
        format=fmt,
        columns=tuple(Column(f.name, str(f.type)) for f in (PACKED_SCHEMA if pack_length else SHARD_SCHEMA)),
        pack_length=pack_length,
        sources=stats.get("sources") or {},
        counts=counts,
        shards=shards,
        rejects=rejects,
        files=tuple(files),
        inputs=tuple(inputs),
        tokens_per_role=stats["tokens_per_role"],
        weight_mass_per_role=stats["weight_mass_per_role"],
        dataset_ratio=stats["dataset_ratio"],
        max_length=encoder_meta["max_length"],
        truncation=encoder_meta["truncation"],
        allow_special_tokens=encoder_meta.get("allow_special_tokens", False),
        allow_unrendered=tuple(encoder_meta.get("allow_unrendered", ())),
        split_inline_reasoning=encoder_meta.get("split_inline_reasoning", False),
        eval_fraction=eval_fraction,
        package_version=package_version,
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


# -------------------------------------------------------------------------------------------- publishing
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem cannot exchange
        return False
    raise OSError(err, os.strerror(err), b)


def _delete_owned(folder: str, manifest: Manifest) -> list[str]:
    """Delete the files of an old output that its manifest lists, then empty folders; returns what is left.
    Locally a file is deleted only where its real folder is inside ``folder`` (never through a symbolic link)."""
    real = None if storage.is_url(folder) else os.path.realpath(folder)
    for rel in manifest.owned_files:
        path = storage.join(folder, rel)
        if real is not None and storage.relative_to(os.path.realpath(os.path.dirname(path)), real) is None:
            LOG.warning("kept %s: its folder is a symbolic link out of %s", path, folder)
            continue
        storage.remove(path)
    storage.remove(storage.join(folder, OWNER_FILE))
    left = storage.list_files(folder)
    if not left and not storage.is_url(folder):
        for dirpath, _, _ in sorted(os.walk(folder), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
    return left


def keep_failed_run(work_dir: str, stats: dict[str, Any]) -> str:
    """A run that failed on its reject rate: drop the shards, keep the dead letters and the statistics in the run
    folder (marked, so that later runs do not remove it) and return the folder."""
    for sub in (RUNS_DIR, SHARDS_DIR):
        storage.remove_tree(storage.join(work_dir, sub))
    storage.remove(storage.join(work_dir, SUMMARY_FILE))
    storage.write_bytes_atomic(storage.join(work_dir, STATS_FILE),
                               (json.dumps(stats, indent=2, sort_keys=True) + "\n").encode())
    storage.write_bytes_atomic(storage.join(work_dir, FAILED_FILE),
                               json.dumps({"failed_at": time.time(), "reason": "reject rate"}).encode())
    return work_dir


def _finish_work_dir(work_dir: str, manifest: Manifest, stats: dict[str, Any], card: str) -> None:
    """The run folder made ready to publish; its owner file stays until the folder is in place, so that a run
    killed while publishing leaves a folder the next run knows to be dead."""
    storage.remove_tree(storage.join(work_dir, RUNS_DIR))
    storage.remove(storage.join(work_dir, SUMMARY_FILE))
    storage.write_bytes_atomic(storage.join(work_dir, STATS_FILE),
                               (json.dumps(stats, indent=2, sort_keys=True) + "\n").encode())
    storage.write_bytes_atomic(storage.join(work_dir, CARD_FILE), card.encode("utf-8"))


def _old_output(output_dir: str, overwrite: bool) -> Manifest | None:
    """Check again, just before publishing, what ``DIR`` holds now."""
    if not storage.isdir(output_dir) or not storage.list_files(output_dir):
        return None
    try:
        old = read_manifest(output_dir)
    except ManifestError:
        old = None
    if old is None or not overwrite or foreign_files(output_dir, old) or (
            not storage.is_url(output_dir) and _symlinks_inside(output_dir)):
        raise OutputError(f"{output_dir}: changed during the run (it now holds other files); nothing was "
                          "published and nothing there was touched")
    return old


def _publish_local(work_dir: str, out: str, old: Manifest | None) -> None:
    if old is None:
        if os.path.isdir(out):
            os.rmdir(out)  # empty: fails (and keeps it) if a file appeared meanwhile
        os.rename(work_dir, out)
        storage.remove(storage.join(out, OWNER_FILE))
        return
    if not _exchange(work_dir, out):
        aside = _sibling(out, OLD_MARK)
        os.rename(out, aside)
        try:
            os.rename(work_dir, out)
        except BaseException:
            os.rename(aside, out)  # the old output back in place, untouched
            raise
        work_dir = aside
    storage.remove(storage.join(out, OWNER_FILE))
    left = _delete_owned(work_dir, old)
    if left:
        LOG.warning("kept %s: it holds files im-data did not write (%s)", work_dir, ", ".join(left[:3]))


def _publish_remote(work_dir: str, out: str, manifest: Manifest, old: Manifest | None) -> None:
    if old is not None:
        storage.remove(storage.join(out, MANIFEST_FILE))  # from now on readers see an unfinished output
    for rel in manifest.owned_files[:-1]:
        storage.copy_file(storage.join(work_dir, rel), storage.join(out, rel))
    if old is not None:
        for rel in set(old.owned_files) - set(manifest.owned_files):
            storage.remove(storage.join(out, rel))
    storage.write_bytes_atomic(storage.join(out, MANIFEST_FILE), manifest.to_json())
    storage.remove_tree(work_dir)


def publish(work_dir: str, output_dir: str, manifest: Manifest, stats: dict[str, Any], card: str,
            overwrite: bool) -> None:
    """``stats.json`` and ``README.md`` into the run folder, ``manifest.json`` last, then into place (see the
    module docstring)."""
    _finish_work_dir(work_dir, manifest, stats, card)
    old = _old_output(output_dir, overwrite)
    if storage.is_url(output_dir):
        _publish_remote(work_dir, output_dir, manifest, old)
        return
    storage.write_bytes_atomic(storage.join(work_dir, MANIFEST_FILE), manifest.to_json())
    _publish_local(work_dir, storage.normalize(output_dir), old)
