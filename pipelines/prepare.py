"""``im-data prepare``: tokenized shards with loss weights, manifest, statistics and dead letters.

Everything that can be checked is checked before the pipeline starts (inputs exist, the tokenizer and the chat
template load, the output directory is usable); such failures are one line on stderr and exit status 2.
Options this command does not know are Beam pipeline options and go to ``PipelineOptions`` unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from typing import Any

from im_data.dataset import DEFAULT_EVAL_SPLIT, REJECTS_DIR
from im_data.limits import DEFAULT_MAX_RECORD_BYTES

from .options import (DEFAULT_MAX_REJECT_RATE, DEFAULT_NUM_SHARDS, DEFAULT_SHARD_FORMAT, SHARD_FORMATS, PrepareSpec,
                      UsageError, add_encoder_arguments, add_runner_arguments, check_input_specs,
                      encoder_options_from_args, parse_size, plain_description, runner_options_from_args, usage_error)

LOG = logging.getLogger("im_data.prepare")


@dataclasses.dataclass(frozen=True)
class PrepareResult:
    """What :func:`prepare` returns: the published manifest and statistics, and timings."""

    manifest: dict
    stats: dict
    output_dir: str
    wall_s: float
    pipeline_s: float
    tokens_per_s: float


# ----------------------------------------------------------------------------------------------- arguments
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="JSONL (.jsonl/.jsonl.gz), JSON array (.json), Parquet files, globs, save_to_disk directories "
                        "or hub datasets (hf:NAME[:SPLIT]); INPUT@R samples a mixture: R <= 1 a fraction of its "
                        "records, R > 1 a number of records (repeating the input when larger) (default: the "
                        "embedded sample data)")
    p.add_argument("--output", "-o", required=True, metavar="DIR",
                   help="output directory or URL (s3://, gs://, ...): absent, empty, or with --overwrite an earlier "
                        "im-data output")
    add_encoder_arguments(p)
    p.add_argument("--format", choices=SHARD_FORMATS, default=DEFAULT_SHARD_FORMAT,
                   help=f"shard format (default: {DEFAULT_SHARD_FORMAT})")
    p.add_argument("--num-shards", type=int, default=DEFAULT_NUM_SHARDS, metavar="N",
                   help=f"number of shards (default: {DEFAULT_NUM_SHARDS})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier im-data output in DIR, deleting only the files its manifest lists; a "
                        "folder holding anything else is refused (default: off)")
    p.add_argument("--eval-fraction", type=float, default=0.0, metavar="F",
                   help="put a fraction F of the examples into an evaluation split, chosen by a hash of the example "
                        "id: deterministic (default: 0, none)")
    p.add_argument("--eval-split", default=DEFAULT_EVAL_SPLIT, metavar="NAME",
                   help=f"name of the evaluation split (default: {DEFAULT_EVAL_SPLIT}, the split trl sft evaluates on)")
    p.add_argument("--max-reject-rate", type=float, default=DEFAULT_MAX_REJECT_RATE, metavar="R",
                   help="fail (exit 3, no manifest) when more than this share of the records is rejected; a run "
                        "that writes no example always fails; above 5 %% a warning "
                        f"(default: {DEFAULT_MAX_REJECT_RATE})")
    p.add_argument("--max-record-bytes", type=parse_size, default=DEFAULT_MAX_RECORD_BYTES, metavar="SIZE",
                   help="reject a raw record (a line, an array element) larger than this as too_large, while reading "
                        f"and before parsing; e.g. 4096, 64K, 16M (default: {DEFAULT_MAX_RECORD_BYTES >> 20}M)")
    p.add_argument("--pack-length", type=int, default=None, metavar="N",
                   help="pack each shard's examples into rows of at most N tokens (best-fit decreasing, as TRL's "
                        "bfd packing), with TRL's seq_lengths column; longer examples follow --truncation "
                        "(default: no packing)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the mixture's sampling (INPUT@R): a record is taken by a hash of N and its example "
                        "id, never a shuffle (default: 0)")
    p.add_argument("--dedup", choices=("exact",), default=None,
                   help="exact: reject a record whose conversation (after format conversion, whitespace normalised) "
                        "equals an earlier one in input order, as duplicate naming the example kept (default: off)")
    p.add_argument("--decontaminate", nargs="+", default=None, metavar="FILE_OR_hf:NAME",
                   help="benchmark inputs (files, globs, hf:NAME[:SPLIT]): reject a record whose instruction or "
                        "output side shares a word n-gram with any benchmark record, as contaminated naming the "
                        "benchmark, its record and the n-gram (default: none)")
    p.add_argument("--decontaminate-ngram", type=int, default=13, metavar="N",
                   help="n-gram length in words for --decontaminate (default: 13)")
    add_runner_arguments(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress and no summary table (default: off)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare", help="tokenize datasets into Arrow/Parquet shards with loss weights (a Beam pipeline)",
        description=plain_description(__doc__),
        epilog="Any other option is a Beam pipeline option, e.g. --direct_num_workers 2 "
               "--direct_running_mode multi_processing, or --project/--region/--temp_location for Dataflow.")
    add_arguments(p)
    p.set_defaults(func=command, accepts_extra=True)


def options_from_args(args: argparse.Namespace) -> PrepareSpec:
    """The run spec from the command line (raises :class:`UsageError`)."""
    encoder = encoder_options_from_args(args)
    try:
        return PrepareSpec(inputs=tuple(args.inputs), output=args.output, encoder=encoder, format=args.format,
                           num_shards=args.num_shards, batch_size=args.batch_size, overwrite=args.overwrite,
                           runner=runner_options_from_args(args), eval_fraction=args.eval_fraction,
                           eval_split=args.eval_split, max_reject_rate=args.max_reject_rate,
                           max_record_bytes=args.max_record_bytes, pack_length=args.pack_length,
                           dedup=args.dedup, seed=args.seed, decontaminate=tuple(args.decontaminate or ()),
                           decontaminate_ngram=args.decontaminate_ngram)
    except (ValueError, TypeError) as exc:
        raise usage_error(exc) from None


# ----------------------------------------------------------------------------------------------- planning
def plan(spec: PrepareSpec):
    """Validate everything and resolve the spec: ``(spec with sources, template and output resolved, encoder
    metadata)``.

    Raises :class:`UsageError` (one line) for anything the user must fix: inputs, output directory, tokenizer,
    chat template."""
    from im_data import storage
    from im_data.tokenizer import SAMPLE_DATA, TokenizerLoadError

    from .manifest import OutputError, check_output_dir, resolve_output
    from .mixture import input_ratios, mixture_plan
    from .pack import packing_limit
    from .read import InputError, expand_inputs

    if not spec.output:
        raise UsageError("an output directory is needed (--output DIR)")
    try:
        inputs = input_ratios(spec.inputs)
    except ValueError as exc:
        raise usage_error(exc) from None
    check_input_specs([given for given, _ in inputs] + list(spec.decontaminate))
    try:
        sources = expand_inputs([given for given, _ in inputs] or [str(SAMPLE_DATA)])
        mixture = mixture_plan(inputs, sources, spec.max_record_bytes, spec.seed)
        for bench in spec.decontaminate:
            expand_inputs([bench])  # a benchmark that names nothing readable fails here (exit 2)
        if not spec.inputs:  # a location-independent name, so example ids do not depend on the install path
            sources = tuple(dataclasses.replace(s, label="im_data/assets/sample.jsonl") for s in sources)
        output = resolve_output(spec.output)  # a symbolic link: its target; a dangling one: refused
        check_output_dir(output, spec.overwrite, [s.path for s in sources if s.kind != "hub"])
        tok = spec.encoder.load_tokenizer()
        encoder_options = packing_limit(spec.encoder, spec.pack_length).resolved(tok)
        encoder = encoder_options.build(tok)
        resolved = dataclasses.replace(spec, sources=sources, mixture=mixture, encoder=encoder_options, output=output)
    except (InputError, OutputError, TokenizerLoadError, UsageError, ValueError, OSError) as exc:
        raise usage_error(exc) from None
    from .encode import remember_encoder

    remember_encoder(encoder_options, encoder)  # the in-process runner's workers reuse it
    return resolved, encoder.metadata()


def add_stage_stats(summary: dict[str, Any], config, inputs, index) -> None:
    """The ``stats.json`` blocks of issue 18's stages (``sources``; ``decontamination``, ``packing`` when on), and
    their scratch folders removed from the run folder."""
    from im_data import storage

    from .mixture import mixture_ratios
    from .sources import source_accounting

    if index is not None:
        from .decontam import INDEX_DIR, decontamination_stats

        summary["stats"]["decontamination"] = decontamination_stats(index, summary.get("contamination") or {})
        storage.remove_tree(storage.join(config.work_dir, INDEX_DIR))
    summary["stats"]["sources"] = source_accounting(summary, [s.label for s in config.sources],
                                                    mixture_ratios(inputs))
    if config.pack_length:
        from .pack import packing_stats
        from .write import UNPACKED_DIR

        summary["stats"]["packing"] = packing_stats(summary["shards"], config.pack_length)
        storage.remove_tree(storage.join(config.work_dir, UNPACKED_DIR))  # emptied folders of the packed shards


# ----------------------------------------------------------------------------------------------- running
def execute(spec: PrepareSpec, pipeline_options: Any = None) -> None:
    """Run the Beam pipeline into ``spec.work_dir``."""
    from .build import build_pipeline
    from .runner import run_beam

    run_beam(spec.runner, pipeline_options, lambda p: build_pipeline(p, spec))


def prepare(spec: PrepareSpec, pipeline_options: Any = None, *, progress=None) -> PrepareResult:
    """Plan, run and publish one ``prepare`` run; the public library entry point.

    ``pipeline_options``: Beam pipeline options, as a ``PipelineOptions`` or a list of flags
    (``["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]``). ``progress``: a
    :class:`pipelines.progress.ProgressDisplay` (default: none). Raises :class:`pipelines.options.UsageError` for
    anything the user must fix before the run starts, and :class:`RejectRateError` (nothing published) when too
    many records were rejected."""
    import im_data
    from im_data import storage
    from im_data.card import render_card

    from .manifest import (OutputError, add_reject_tables, build_manifest, keep_failed_run, make_work_dir, publish,
                           read_summary, remove_stale_runs)
    from .progress import watching
    from .signals import remove_on_signal

    start = time.perf_counter()
    spec, meta = plan(spec)
    remove_stale_runs(spec.output)
    work_dir = make_work_dir(spec.output)
    remove_on_signal(work_dir)
    spec = dataclasses.replace(spec, work_dir=work_dir)
    keep = False
    try:
        index = None
        if spec.decontaminate:
            from .decontam import write_index

            index = write_index(spec.decontaminate, spec.decontaminate_ngram, spec.max_record_bytes, work_dir)
        started = time.perf_counter()
        with watching(progress, spec.sources, num_shards=spec.num_shards) as progress_dir:
            execute(dataclasses.replace(spec, progress_dir=progress_dir), pipeline_options)
        pipeline_s = time.perf_counter() - started
        summary = add_reject_tables(work_dir, read_summary(work_dir), spec.format)
        add_stage_stats(summary, spec, spec.inputs, index)
        manifest = build_manifest(summary, meta, tokenizer_name=spec.encoder.tokenizer, fmt=spec.format,
                                  inputs=[s.label for s in spec.sources], package_version=im_data.__version__,
                                  eval_fraction=spec.eval_fraction, pack_length=spec.pack_length)
        result = _result(manifest.to_dict(), summary["stats"], spec.output, start, pipeline_s)
        problem = reject_rate_problem(manifest.counts, spec.max_reject_rate)
        if problem:
            keep = True
            if progress is not None:  # the failure first, before the summary table
                progress.phase(f"failed: {problem}; nothing was published")
            kept = keep_failed_run(work_dir, summary["stats"])
            rejects = storage.join(kept, REJECTS_DIR)
            why = explain_rejects(manifest.counts, kept)
            raise RejectRateError(f"{problem}{'; ' + why if why else ''}; nothing was published. The rejected "
                                  f"records are in {rejects}", result, rejects)
        if progress is not None:
            progress.phase(f"publishing to {spec.output}")
        warn_reject_rate(manifest.counts, storage.join(spec.output, REJECTS_DIR))
        warn_read_errors(manifest.counts, storage.join(spec.output, REJECTS_DIR))
        card = render_card(manifest, summary["stats"], location=spec.output)
        try:
            publish(work_dir, spec.output, manifest, summary["stats"], card, spec.overwrite)
        except OutputError as exc:
            raise usage_error(exc) from None
    except BaseException:
        if not keep:
            try:
                storage.remove_tree(work_dir)
            except Exception as exc:  # noqa: BLE001 - the run's own error matters; the next run removes it
                LOG.warning("could not remove the run folder %s (%s); the next run removes it", work_dir,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    return _result(manifest.to_dict(), summary["stats"], spec.output, start, pipeline_s)


def _result(manifest: dict, stats: dict, output_dir: str, start: float, pipeline_s: float) -> PrepareResult:
    wall = time.perf_counter() - start
    tokens = sum(manifest["tokens_per_role"].values())
    return PrepareResult(manifest=manifest, stats=stats, output_dir=output_dir, wall_s=wall, pipeline_s=pipeline_s,
                         tokens_per_s=tokens / wall if wall > 0 else 0.0)


# ----------------------------------------------------------------------------------------------- rejects
REJECT_WARNING_RATE = 0.05


class RejectRateError(RuntimeError):
    """Too many records were rejected (``--max-reject-rate``): exit status 3, no manifest published. Holds the
    run's summary (``result``) and where its dead letters were kept (``rejects``)."""

    def __init__(self, message: str, result: PrepareResult, rejects: str):
        super().__init__(message)
        self.result, self.rejects = result, rejects


def reject_rate_problem(counts, max_reject_rate: float) -> str | None:
    """Why the run must fail, or None: no example written, or a reject rate above ``max_reject_rate``."""
    if counts.written == 0:
        return (f"no example was written: all {counts.read:,} records were rejected" if counts.read
                else "no example was written: the inputs hold no records")
    if counts.reject_rate > max_reject_rate:
        return (f"{counts.rejected:,} of {counts.read:,} records were rejected ({100 * counts.reject_rate:.1f} %), "
                f"more than --max-reject-rate {max_reject_rate:g}")
    return None


#: What the user can change when most records are rejected for a reason: the flags of ``im-data prepare`` (None:
#: the records themselves must change). ``tests/pipeline/test_failed_runs.py`` checks that every flag exists.
REASON_FIXES: dict[str, str | None] = {
    "invalid_json": None,
    "unknown_format": "name the format and its columns with --input-format FORMAT --columns KEY=NAME, e.g. "
                      "--input-format alpaca --columns instruction=question output=answer",
    "missing_field": "name the column that holds it with --columns KEY=NAME",
    "not_a_string": None,
    "bad_role": None,
    "empty_conversation": "name the column that holds the conversation with --columns KEY=NAME",
    "no_assistant_turn": None,
    "empty_output": "name the column that holds the output with --columns KEY=NAME",
    "template_error": "use a chat template that renders these records with --chat-template NAME|FILE (the built-in "
                      "chatml_tools renders tools, tool calls and reasoning)",
    "unrendered_field": "use a chat template that renders the field with --chat-template NAME|FILE (the built-in "
                        "chatml_tools renders tools, tool calls and reasoning), or accept it with "
                        "--allow-unrendered FIELD",
    "invariant_violation": "use a chat template whose turns label exactly with --chat-template NAME|FILE (the message "
                           "names the message, field and rule; im-data check-template lists every violation)",
    "special_token_in_content": "accept such content with --allow-special-tokens",
    "too_long": "raise --max-length N, or cut long records with --truncation keep_start",
    "no_trainable_tokens": "choose a policy that trains these records' tokens with --mode or --weights ROLE=W",
    "read_error": None,
    "too_large": "raise the limit with --max-record-bytes SIZE",
    "duplicate": "keep duplicates by leaving out --dedup, or check that the inputs do not repeat one another",
    "contaminated": "check the --decontaminate benchmarks, or lengthen the n-grams with --decontaminate-ngram N",
    "reserved_template_variable": "remove the special-token and render variables (eos_token, messages, ...) from the "
                                  "records' chat_template_kwargs; set template options with --chat-template-kwargs",
    "template_timeout": "use a chat template that renders in bounded time with --chat-template NAME|FILE, or raise "
                        "the limit with the IM_DATA_TEMPLATE_TIMEOUT_S environment variable",
    "internal_error": None,
}


def first_reject(run_dir: str, reason: str) -> dict[str, Any] | None:
    """The first dead letter of ``rejects/<reason>.jsonl`` in ``run_dir`` (None if it cannot be read)."""
    import json

    from im_data import storage
    from im_data.dataset import reject_path

    try:
        with storage.open_file(storage.join(run_dir, reject_path(reason)), "rb") as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None


def explain_rejects(counts, run_dir: str, max_message: int = 200) -> str:
    """The top reject reason, one example message and what fixes it, for the last line of a failed run:
    ``top reason unknown_format (2 of 2 rejects), e.g. qa.jsonl record 0: no messages/... (keys: answer,
    question); fix: name the format ... --input-format FORMAT ...``. Empty when nothing was rejected."""
    by_reason = counts.rejected_by_reason
    if not by_reason:
        return ""
    reason, n = max(sorted(by_reason.items()), key=lambda kv: kv[1])
    out = f"top reason {reason} ({n:,} of {counts.rejected:,} rejects)"
    example = first_reject(run_dir, reason)
    if example:
        message = " ".join(str(example.get("message", "")).split())
        if len(message) > max_message:
            message = message[:max_message - 1] + "…"
        where = example.get("source") or "?"
        if example.get("index") is not None:
            where += f" record {example['index']}"
        out += f", e.g. {where}: {message}"
    fix = REASON_FIXES.get(reason)
    return out + (f"; fix: {fix}" if fix else "; fix the records (the messages say how)")


def warn_reject_rate(counts, rejects: str) -> None:
    if counts.reject_rate > REJECT_WARNING_RATE:
        LOG.warning("%s of %s records were rejected (%.1f %%): see %s (--max-reject-rate R makes this an error)",
                    f"{counts.rejected:,}", f"{counts.read:,}", 100 * counts.reject_rate, rejects)


def warn_read_errors(counts, rejects: str) -> None:
    """Inputs that could not be read completely (unreadable, corrupt, shrunk or deleted while read) are
    ``read_error`` rejects; say so even when the reject rate is low."""
    n = counts.rejected_by_reason.get("read_error", 0)
    if n:
        LOG.warning("%s read_error reject(s): part of the input could not be read (unreadable, corrupt, or changed "
                    "while being read); see %s", f"{n:,}", rejects)


def describe_policy(policy: dict[str, Any]) -> str:
    """``im (system 1, user 1, tool 1, assistant 1, assistant_end 1)``: the policy name and its non-zero weights."""
    from im_data import ROLE_LABELS

    weights = ", ".join(f"{r} {policy[r]:g}" for r in ROLE_LABELS if policy.get(r))
    last = "; last assistant turn only" if policy.get("last_assistant_only") else ""
    return f"{policy.get('name', '?')} ({weights}{last})"


def print_summary(result: PrepareResult, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    m, stats = result.manifest, result.stats
    c = m["counts"]
    table = Table(title=f"im-data prepare → {result.output_dir}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    policy = m.get("policy") or {}
    table.add_row("output", result.output_dir)
    table.add_row("mode / policy", describe_policy(policy))
    table.add_row("tokenizer", str((m.get("tokenizer") or {}).get("name_or_path", "?")))
    table.add_row("chat template", str((m.get("chat_template") or {}).get("name", "?")))
    table.add_row("read", f"{c['read']:,}")
    table.add_row("written", f"{c['written']:,}")
    table.add_row("rejected", f"{c['rejected']:,}")
    for reason, n in sorted(c["rejected_by_reason"].items()):
        table.add_row(f"  {reason}", f"{n:,}")
    table.add_row("truncated", f"{c['truncated']:,}")
    from im_data import ROLE_LABELS

    for role in ROLE_LABELS:
        table.add_row(f"tokens: {role}", f"{m['tokens_per_role'].get(role, 0):,}")
    ratio = stats.get("dataset_ratio")
    table.add_row("dataset ratio (instr/output)", "n/a" if ratio is None else f"{ratio:.4f}")
    table.add_row("shards", f"{len(m['shards'])} × {m['format']}")
    table.add_row("wall time", f"{result.wall_s:.2f} s")
    table.add_row("tokens/s", f"{result.tokens_per_s:,.0f}")
    Console(file=file or sys.stdout, width=100).print(table)


def command(args: argparse.Namespace, beam_args: list[str]) -> int:
    from .progress import ProgressDisplay

    if args.quiet:
        logging.getLogger("im_data.prepare").setLevel(logging.WARNING)
    from .signals import stop_on_signals

    progress = ProgressDisplay("im-data prepare", mode="off" if args.quiet else "auto")
    try:
        with stop_on_signals("im-data prepare"):  # SIGTERM/SIGINT: temporary folder removed, one line, 143/130
            result = prepare(options_from_args(args), beam_args, progress=progress)
    except RejectRateError as exc:
        if not args.quiet:
            print_summary(exc.result, file=sys.stderr)
        print(f"im-data prepare: error: {exc}", file=sys.stderr)
        return 3
    if not args.quiet:
        print_summary(result)
    return 0
