"""``im-data audit``: is this dataset suited to Instruction Modelling (IM)?

Raw inputs go through the Beam pipeline in a statistics-only mode (read → encode → ComputeStats, no shard
writing); a prepared shard directory is read from its manifest and shards. Several inputs are compared side
by side, one row per dataset, with the recommendation of :mod:`im_data.recommend`. Bad input (unreadable,
empty, a shard directory without ``manifest.json``) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .options import (DEFAULT_SCATTER_SAMPLE, AuditOptions, UsageError, add_encoder_arguments, add_runner_arguments,
                      check_input_specs, encoder_options_from_args, plain_description, runner_options_from_args,
                      usage_error)
from .shard_dir import is_shard_dir, open_prepared, shard_dir_error

class AuditError(UsageError):
    """Bad input or setup: reported as one line on stderr with exit status 2."""


@dataclass(frozen=True)
class AuditResult:
    """What :func:`audit` returns: one :class:`pipelines.report.DatasetAudit` per dataset, and notes (rejects)."""

    audits: list
    notes: list


# --------------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="raw inputs in any format prepare reads (JSONL, JSON, Parquet, globs, save_to_disk "
                        "directories, hf:NAME[:SPLIT]) or prepared shard directories (with manifest.json)")
    p.add_argument("--input-name", action="append", default=None, metavar="NAME",
                   help="a label per INPUT, in order (repeat the option); inputs sharing a label are one dataset "
                        "(default: one dataset per INPUT, named after the file)")
    add_encoder_arguments(p, policy=False)
    p.add_argument("--report", default=None, metavar="DIR",
                   help="write stats.json, ratio_hist.png, lengths.png and report.md into DIR (default: none)")
    p.add_argument("--scatter-sample", type=int, default=DEFAULT_SCATTER_SAMPLE, metavar="N",
                   help=f"examples per dataset kept for lengths.png, a uniform sample above that "
                        f"(default: {DEFAULT_SCATTER_SAMPLE:,})")
    add_runner_arguments(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display (default: off)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "audit", help="is this dataset suited to instruction modelling? length statistics and a recommendation",
        description=plain_description(__doc__),
        epilog="The recommendation uses the fitted curves of Shi et al. (NeurIPS 2024), made on Llama-2-7B "
               "results: a guide, not a promise. Other options are Beam pipeline options.")
    add_arguments(p)
    p.set_defaults(func=command, accepts_extra=True)


def options_from_args(args: argparse.Namespace) -> AuditOptions:
    """The typed options of one audit from the command line (raises :class:`UsageError`)."""
    encoder = encoder_options_from_args(args)
    try:
        return AuditOptions(inputs=tuple(args.inputs), names=args.input_name, encoder=encoder,
                            scatter_sample=args.scatter_sample, batch_size=args.batch_size,
                            runner=runner_options_from_args(args))
    except (ValueError, TypeError) as exc:
        raise usage_error(exc) from None


def command(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    from rich.console import Console

    from .progress import ProgressDisplay

    progress = ProgressDisplay("im-data audit", mode="off" if args.quiet else "auto")
    result = audit(options_from_args(args), extra or [], progress=progress)
    from .report import print_audit, write_report

    console = Console()
    print_audit(result.audits, console)
    for note in result.notes:
        console.print(note, style="yellow", markup=False, highlight=False)
    if args.report:
        try:
            paths = write_report(result.audits, args.report, command=_command_line(args))
        except OSError as exc:
            raise UsageError(f"cannot write the report to {args.report}: {exc}") from None
        console.print(f"report: {paths['report.md']} (stats.json, ratio_hist.png, lengths.png)", markup=False,
                      highlight=False)
    return 0


def _command_line(args: argparse.Namespace) -> str:
    parts = ["im-data", "audit", *args.inputs]
    for name in args.input_name or []:
        parts += ["--input-name", name]
    for opt in ("tokenizer", "chat_template", "max_length"):
        value = getattr(args, opt)
        if value is not None:
            parts += [f"--{opt.replace('_', '-')}", str(value)]
    if args.report:
        parts += ["--report", args.report]
    return shlex.join(parts)


# --------------------------------------------------------------------------------------------- datasets
@dataclass
class DatasetSpec:
    name: str
    raw: list[str] = field(default_factory=list)      # raw input specs
    shard_dirs: list[str] = field(default_factory=list)


def _default_label(spec: str) -> str:
    base = os.path.basename(os.path.normpath(spec)) or spec
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".parquet", ".pq"):
        if base.lower().endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
    return base


def group_inputs(inputs: list[str], names: list[str] | None) -> list[DatasetSpec]:
    """One dataset per INPUT by default; with ``--input-name`` (one per INPUT) equal labels are merged."""
    if names is not None and len(names) != len(inputs):
        raise AuditError(f"--input-name was given {len(names)} time(s) for {len(inputs)} input(s); "
                         "give one label per INPUT")
    if names is None:
        labels, seen = [], {}
        for spec in inputs:
            label = _default_label(spec)
            seen[label] = seen.get(label, 0) + 1
            labels.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    else:
        labels = [n.strip() for n in names]
        if any(not n for n in labels):
            raise AuditError("--input-name labels must not be empty")
    datasets: dict[str, DatasetSpec] = {}
    for label, spec in zip(labels, inputs):
        ds = datasets.setdefault(label, DatasetSpec(label))
        (ds.shard_dirs if is_shard_dir(spec) else ds.raw).append(spec)
    return list(datasets.values())


# ---------------------------------------------------------------------------------------- shard dirs
def _list_column(batch, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, row lengths) of a list column, honouring slices."""
    arr = batch.column(name)
    offsets = np.asarray(arr.offsets)
    values = np.asarray(arr.values)[offsets[0]: offsets[-1]]
    return values, np.diff(offsets)


def shard_dir_stats(path: str, sample_size: int, seed: int = 0) -> tuple[Any, np.ndarray, Any]:
    """``(LengthStats, sampled (instruction, output) lengths, manifest)`` from a prepared shard directory.

    Lengths come from the ``num_*`` columns (before truncation, as in ``prepare``); tokens and weight mass per role
    from the ``roles``/``loss_weights`` columns (after truncation). Template tokens are counted from the rows,
    i.e. after truncation."""
    from im_data import LengthStats
    from im_data.roles import TEMPLATE_COUNT_MASK, count_per_role

    from im_data.dataset import ManifestError

    prepared = open_prepared(path)
    if prepared.manifest.pack_length:  # packed rows hold no per-example columns: the statistics prepare wrote
        try:
            return LengthStats.from_dict(prepared.read_stats()), np.zeros((0, 2), dtype=np.int64), prepared.manifest
        except (ManifestError, KeyError, ValueError) as exc:
            raise shard_dir_error(exc) from None
    stats = LengthStats()
    lengths: list[np.ndarray] = []
    cols = ["roles", "loss_weights", "num_instruction_tokens", "num_output_tokens", "truncated"]
    try:
        batches = list(prepared.iter_batches(split=None, columns=cols))
    except ManifestError as exc:
        raise shard_dir_error(exc) from None
    for batch in batches:
        n = batch.num_rows
        if n == 0:
            continue
        roles, row_len = _list_column(batch, "roles")
        weights, _ = _list_column(batch, "loss_weights")
        rows = np.repeat(np.arange(n), row_len)
        counts = count_per_role(rows, roles, n)
        mass = count_per_role(rows, roles, n, weights.astype(np.float64))
        ins = np.asarray(batch.column("num_instruction_tokens"), dtype=np.int64)
        out = np.asarray(batch.column("num_output_tokens"), dtype=np.int64)
        trunc = np.asarray(batch.column("truncated").to_pylist(), dtype=bool)
        template = counts[:, TEMPLATE_COUNT_MASK].sum(axis=1)
        for i in range(n):
            stats.add({"num_instruction_tokens": int(ins[i]), "num_output_tokens": int(out[i]),
                       "num_template_tokens": int(template[i]), "truncated": bool(trunc[i]),
                       "role_token_counts": counts[i].tolist(), "weight_mass": mass[i].tolist()})
        lengths.append(np.stack([ins, out], axis=1))
    pairs = np.concatenate(lengths) if lengths else np.zeros((0, 2), dtype=np.int64)
    if len(pairs) > sample_size:
        pairs = pairs[np.random.default_rng(seed).choice(len(pairs), sample_size, replace=False)]
    return stats, pairs, prepared.manifest


# ------------------------------------------------------------------------------------------ Beam part
def _write_result(out_dir: str):
    """Each tagged single result becomes one JSON file in ``out_dir`` (read back by the driver)."""
    def write(item):
        kind, idx, value = item
        path = os.path.join(out_dir, f"{idx}-{kind}-{uuid.uuid4().hex}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(value, f)
        os.replace(path + ".tmp", path)
        return path
    return write


Tagged = tuple[str, int, Any]
"""An audit result: (kind, dataset index, value); the value is pickled (``Any``)."""


def _tag(kind: str, idx: int):
    return lambda value: (kind, idx, value)


def build_audit_pipeline(p, configs: list[Any], results_dir: str, sample_size: int) -> None:
    """For each dataset (one ``PrepareSpec`` each): read → encode → stats, in a statistics-only mode.

    Uses the public stages of the prepare pipeline (``ReadExamples``, ``EncodeExamples``, ``ComputeStats``,
    ``CountRecords``); the shard rows are produced by ``EncodeExamples`` but consumed by nothing."""
    import apache_beam as beam
    from apache_beam.transforms.combiners import SampleCombineFn

    from .encode import EncodeExamples
    from .progress import report_progress
    from .read_beam import ReadExamples
    from .stats import ComputeStats, CountRecords, SampleRowsFn

    tagged = []
    for idx, config in enumerate(configs):
        d = f"D{idx}"
        records = p | f"{d}/ReadExamples" >> ReadExamples(config)
        encoded = records | f"{d}/EncodeExamples" >> EncodeExamples(config)
        progress = config.progress_dir
        stats = report_progress(encoded.stats | f"{d}/ComputeStats" >> ComputeStats(), progress, "encode_done",
                                f"{d}/ProgressEncoded")
        rows, dead = encoded.rows, encoded.rejects  # their progress is reported by EncodeExamples itself
        read = records | f"{d}/CountRecords" >> CountRecords()
        rejects = (dead
                   | f"{d}/RejectReason" >> beam.Map(lambda r: r["reason"]).with_output_types(str)
                   | f"{d}/CountRejects" >> beam.combiners.Count.PerElement())
        unreadable = (dead
                      | f"{d}/ReadErrors" >> beam.Filter(lambda r: r["reason"] == "read_error").with_output_types(dict[str, Any])
                      | f"{d}/ReadErrorText" >> beam.Map(lambda r: f"{r['source']}: {r['message']}").with_output_types(str)
                      | f"{d}/SomeReadErrors" >> beam.CombineGlobally(SampleCombineFn(3)).without_defaults()
                      .with_output_types(list[str]))
        lengths = (rows
                   | f"{d}/Lengths" >> beam.Map(_length_pairs)
                   | f"{d}/SampleLengths" >> beam.CombineGlobally(SampleRowsFn(sample_size)).without_defaults()
                   .with_output_types(list[tuple[int, int]]))
        tagged += [stats | f"{d}/TagStats" >> beam.Map(_tag("stats", idx)).with_output_types(Tagged),
                   read | f"{d}/TagRead" >> beam.Map(_tag("read", idx)).with_output_types(Tagged),
                   rejects | f"{d}/TagRejects" >> beam.Map(_tag("rejects", idx)).with_output_types(Tagged),
                   unreadable | f"{d}/TagUnreadable" >> beam.Map(_tag("unreadable", idx)).with_output_types(Tagged),
                   lengths | f"{d}/TagLengths" >> beam.Map(_tag("lengths", idx)).with_output_types(Tagged)]
    _ = tagged | "AllResults" >> beam.Flatten().with_output_types(Tagged) | "WriteResults" >> beam.Map(_write_result(results_dir)).with_output_types(str)


def _length_pairs(batch) -> list[tuple[int, int]]:
    """(instruction, output) token counts of every row of a shard record batch."""
    return list(zip(batch.column("num_instruction_tokens").to_pylist(), batch.column("num_output_tokens").to_pylist()))


def collect_results(results_dir: str, n: int) -> list[dict[str, Any]]:
    out = [{"stats": None, "read": 0, "rejects": {}, "unreadable": [], "lengths": []} for _ in range(n)]
    for name in sorted(os.listdir(results_dir)):
        if not name.endswith(".json"):
            continue
        idx_s, kind, _ = name.split("-", 2)
        with open(os.path.join(results_dir, name), encoding="utf-8") as f:
            value = json.load(f)
        slot = out[int(idx_s)]
        if kind == "stats":
            slot["stats"] = value
        elif kind == "read":
            slot["read"] += int(value)
        elif kind == "rejects":
            reason, count = value
            slot["rejects"][reason] = slot["rejects"].get(reason, 0) + int(count)
        elif kind == "unreadable":
            slot["unreadable"] += list(value)
        elif kind == "lengths":
            slot["lengths"] += [tuple(v) for v in value]
    return out


def _configs(datasets: list[DatasetSpec], options: AuditOptions) -> list[tuple[int, Any]]:
    """Validate inputs, tokenizer and template before any work; one PrepareSpec per dataset with raw inputs."""
    from im_data.tokenizer import TokenizerLoadError

    from .options import PrepareSpec
    from .read import InputError, expand_inputs

    out = []
    encoder = None
    for i, ds in enumerate(datasets):
        if not ds.raw:
            continue
        try:
            sources = expand_inputs(ds.raw)
            if encoder is None:  # fail fast on a bad tokenizer/template, before Beam starts
                tok = options.encoder.load_tokenizer()
                encoder = options.encoder.resolved(tok)
                from .encode import remember_encoder

                remember_encoder(encoder, encoder.build(tok))  # the in-process runner's workers reuse it
            config = PrepareSpec(sources=sources, encoder=encoder, batch_size=options.batch_size)
        except (InputError, TokenizerLoadError, ValueError, OSError) as exc:
            raise usage_error(exc) from None
        out.append((i, config))
    return out


def _run_beam(configs: list[Any], options: AuditOptions, pipeline_options: Any, progress=None
              ) -> list[dict[str, Any]]:
    from .progress import watching
    from .runner import run_beam

    results_dir = tempfile.mkdtemp(prefix="im-data-audit-")
    sources = [s for c in configs for s in c.sources]
    try:
        with watching(progress, sources, stages=len(configs)) as progress_dir:
            configs = [replace(c, progress_dir=progress_dir) for c in configs]
            run_beam(options.runner, pipeline_options,
                     lambda p: build_audit_pipeline(p, configs, results_dir, max(int(options.scatter_sample), 1)))
        return collect_results(results_dir, len(configs))
    finally:
        shutil.rmtree(results_dir, ignore_errors=True)


def _reason_list(rejects: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(rejects.items(), key=lambda kv: (-kv[1], kv[0])))


def audit(options: AuditOptions, pipeline_options: Any = None, *, progress=None) -> AuditResult:
    """Compute every dataset's statistics and recommendation; the public library entry point.

    ``pipeline_options``: Beam pipeline options, as a ``PipelineOptions`` or a list of flags. ``progress``: a
    :class:`pipelines.progress.ProgressDisplay` for the Beam part (default: none). Raises
    :class:`pipelines.options.UsageError` for bad input (unreadable, empty, a directory without a manifest)."""
    from im_data import LengthStats
    from im_data.recommend import recommend

    from .report import DatasetAudit

    datasets = group_inputs(list(options.inputs), None if options.names is None else list(options.names))
    check_input_specs(options.inputs)
    stats = {ds.name: LengthStats() for ds in datasets}
    lengths: dict[str, list[np.ndarray]] = {ds.name: [] for ds in datasets}
    extra_info: dict[str, dict[str, Any]] = {ds.name: {"read": 0, "rejected_by_reason": {}, "shard_dirs": []}
                                              for ds in datasets}
    # shard directories first: cheap, and a missing manifest should fail before the pipeline runs
    for ds in datasets:
        for spec in ds.shard_dirs:
            s, pairs, manifest = shard_dir_stats(spec, options.scatter_sample)
            stats[ds.name].merge(s)
            lengths[ds.name].append(pairs)
            info = extra_info[ds.name]
            info["shard_dirs"].append(spec)
            info["max_length"] = manifest.max_length
            info["read"] += manifest.counts.read
            for reason, c in manifest.counts.rejected_by_reason.items():
                info["rejected_by_reason"][reason] = info["rejected_by_reason"].get(reason, 0) + int(c)
            from .sources import source_lines  # imports Beam: not at module level (audit --help stays light)

            info.setdefault("source_lines", []).extend(source_lines(manifest.sources))
    configs = _configs(datasets, options)
    if configs:
        results = _run_beam([c for _, c in configs], options, pipeline_options, progress)
        for (i, _), res in zip(configs, results):
            ds = datasets[i]
            if res["unreadable"]:
                raise AuditError(f"unreadable input: {res['unreadable'][0]}".splitlines()[0])
            if res["stats"] is not None:
                stats[ds.name].merge(LengthStats.from_dict(res["stats"]))
            if res["lengths"]:
                lengths[ds.name].append(np.asarray(res["lengths"], dtype=np.int64).reshape(-1, 2))
            info = extra_info[ds.name]
            info["read"] += res["read"]
            for reason, c in res["rejects"].items():
                info["rejected_by_reason"][reason] = info["rejected_by_reason"].get(reason, 0) + c
    audits, notes = [], []
    for ds in datasets:
        s, info = stats[ds.name], extra_info[ds.name]
        rejected = info["rejected_by_reason"]
        if s.count == 0:
            detail = (f"{info['read']:,} record(s) read, all rejected ({_reason_list(rejected)})" if info["read"]
                      else "no records")
            raise AuditError(f"dataset {ds.name!r} ({', '.join(ds.raw + ds.shard_dirs)}) is empty: {detail}")
        if s.dataset_ratio is None:
            raise AuditError(f"dataset {ds.name!r} has no output tokens: the dataset ratio is undefined")
        d = s.to_dict()
        d["read"] = info["read"]
        d["max_length"] = info.get("max_length", options.encoder.max_length)
        d["rejected"] = {"count": sum(rejected.values()), "by_reason": dict(sorted(rejected.items()))}
        if rejected:
            notes.append(f"{ds.name}: {sum(rejected.values()):,} of {info['read']:,} records rejected and not "
                         f"counted ({_reason_list(rejected)})")
        notes.extend(f"{ds.name}: {line}" for line in info.get("source_lines", ()))
        pairs = np.concatenate(lengths[ds.name]) if lengths[ds.name] else np.zeros((0, 2), dtype=np.int64)
        if len(pairs) > options.scatter_sample:
            pairs = pairs[np.random.default_rng(0).choice(len(pairs), options.scatter_sample, replace=False)]
        audits.append(DatasetAudit(name=ds.name, stats=d, recommendation=recommend(s.dataset_ratio, s.count),
                                   lengths=pairs, source=", ".join(ds.raw + ds.shard_dirs)))
    return AuditResult(audits=audits, notes=notes)
