"""``im-data prepare``: tokenized shards with loss weights, manifest, statistics and dead letters.

Everything that can be checked is checked before the pipeline starts (inputs exist, the tokenizer and the chat
template load, the output directory is usable); such failures are one line on stderr and exit status 2.
Options this command does not know are Beam pipeline options and go to ``PipelineOptions`` unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from typing import Any

LOG = logging.getLogger("im_data.prepare")


class SetupError(RuntimeError):
    """A job-level problem found before any work starts."""


# ----------------------------------------------------------------------------------------------- arguments
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="JSONL (.jsonl/.jsonl.gz), JSON array (.json), Parquet files, globs, save_to_disk directories "
                        "or hub datasets (hf:NAME[:SPLIT]). Default: the embedded sample data.")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="output directory (must be empty or absent)")
    p.add_argument("--tokenizer", default=None, metavar="NAME_OR_PATH",
                   help="hub name or local directory of a fast tokenizer (default: the embedded tokenizer)")
    p.add_argument("--chat-template", default=None, metavar="NAME|FILE",
                   help="a built-in template name or a Jinja file (default: the tokenizer's own)")
    p.add_argument("--mode", choices=("it", "im", "wit"), default="im",
                   help="it: loss on responses only; im: loss on instructions too (default); wit: weighted")
    p.add_argument("--prompt-weight", type=float, default=None, metavar="X", help="wit: weight of prompt tokens")
    p.add_argument("--response-weight", type=float, default=None, metavar="Y", help="wit: weight of responses")
    p.add_argument("--weights", nargs="+", default=None, metavar="ROLE=W",
                   help="override single role weights (template, system, user, tool, assistant, assistant_end)")
    p.add_argument("--last-assistant-only", action="store_true",
                   help="only the final assistant turn keeps the assistant weights")
    p.add_argument("--max-length", type=int, default=None, metavar="N")
    p.add_argument("--truncation", choices=("keep_start", "drop"), default="keep_start")
    p.add_argument("--allow-special-tokens", action="store_true",
                   help="accept special-token strings inside message content (rejected by default)")
    p.add_argument("--input-format", choices=("auto", "messages", "prompt_completion", "alpaca", "sharegpt"),
                   default="auto", help="record format (default: detected per record)")
    p.add_argument("--columns", nargs="+", default=None, metavar="KEY=NAME",
                   help="column names for non-standard datasets, e.g. instruction=question output=answer "
                        "(KEY: messages, prompt, completion, instruction, input, output, system, conversations)")
    p.add_argument("--format", choices=("arrow", "parquet"), default="arrow", help="shard format (default arrow)")
    p.add_argument("--num-shards", type=int, default=1, metavar="N", help="number of shards (default 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier im-data output in DIR (only the files its manifest lists; a folder "
                        "holding anything else is refused)")
    p.add_argument("--eval-fraction", type=float, default=0.0, metavar="F",
                   help="put a fraction F of the examples into an evaluation split, chosen by a hash of the "
                        "example id (deterministic; default 0: none)")
    p.add_argument("--eval-split", default="test", metavar="NAME",
                   help="name of the evaluation split (default test, what `trl sft` evaluates on)")
    p.add_argument("--runner", default="direct",
                   help="direct (default), dask, or any Beam runner name (DataflowRunner, FlinkRunner, ...)")
    p.add_argument("--dask-address", default=None, metavar="ADDR",
                   help="with --runner dask: join this dask.distributed scheduler (default: start a LocalCluster)")
    p.add_argument("--dask-workers", type=int, default=None, metavar="N",
                   help="with --runner dask and no --dask-address: LocalCluster worker processes (default: CPUs)")
    p.add_argument("--batch-size", type=int, default=1024, metavar="N", help="max records per encode batch")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress and no summary table")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare", help="tokenize datasets into Arrow/Parquet shards with loss weights (a Beam pipeline)",
        description=__doc__.split("\n\n")[0],
        epilog="Any other option is a Beam pipeline option, e.g. --direct_num_workers 2 "
               "--direct_running_mode multi_processing, or --project/--region/--temp_location for Dataflow.")
    add_arguments(p)
    p.set_defaults(func=command, accepts_extra=True)


# ----------------------------------------------------------------------------------------------- planning
def make_policy(args: argparse.Namespace):
    from im_data import WeightPolicy, parse_weight_overrides

    if args.mode != "wit" and (args.prompt_weight is not None or args.response_weight is not None):
        raise SetupError("--prompt-weight/--response-weight need --mode wit")
    try:
        policy = WeightPolicy.preset(args.mode, prompt_weight=args.prompt_weight,
                                     response_weight=args.response_weight,
                                     last_assistant_only=args.last_assistant_only)
        return policy.with_weights(parse_weight_overrides(args.weights))
    except (ValueError, TypeError) as exc:
        raise SetupError(str(exc)) from None


def plan(args: argparse.Namespace):
    """Validate everything and build the run's config: ``(PrepareConfig, encoder metadata)``."""
    from im_data import ChatTemplate, FormatOptions, load_tokenizer, storage
    from im_data.tokenizer import SAMPLE_DATA, TokenizerLoadError

    from .config import PrepareConfig
    from .encode import build_encoder
    from .manifest import OutputError, check_output_dir
    from .read import InputError, expand_inputs

    inputs = list(args.inputs) or [str(SAMPLE_DATA)]
    try:
        sources = expand_inputs(inputs)
        if not args.inputs:  # a location-independent name, so example ids do not depend on the install path
            sources = tuple(dataclasses.replace(s, label="im_data/assets/sample.jsonl") for s in sources)
        check_output_dir(args.output, args.overwrite, [s.path for s in sources if s.kind != "hub"])
        policy = make_policy(args)
        tok = load_tokenizer(args.tokenizer)
        # resolve a template file here, so that remote workers get its text rather than a local path
        template = args.chat_template
        if template is not None:
            template = ChatTemplate.resolve(template, tok)
        config = PrepareConfig(
            sources=sources, work_dir="", output_dir=storage.normalize(args.output), tokenizer=args.tokenizer,
            chat_template=template, policy=policy.to_dict(), max_length=args.max_length,
            truncation=args.truncation, allow_special_tokens=args.allow_special_tokens, format=args.format,
            format_options=dataclasses.asdict(FormatOptions.from_cli(args.input_format, args.columns)),
            num_shards=args.num_shards, batch_size=args.batch_size, eval_fraction=args.eval_fraction,
            eval_split=args.eval_split)
        encoder = build_encoder(config)
    except (InputError, OutputError, TokenizerLoadError, SetupError, ValueError, OSError) as exc:
        raise SetupError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return config, encoder.metadata()


# ----------------------------------------------------------------------------------------------- running
def runner_and_options(args: argparse.Namespace, beam_args: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions

    name = (args.runner or "direct").strip()
    beam_args = list(beam_args)
    cluster = None
    if name.lower() in ("direct", "directrunner"):
        runner: Any = "DirectRunner"
    elif name.lower() in ("dask", "daskrunner"):
        from .dask_runner import DaskRunner

        runner = DaskRunner()
        if not any(a.startswith(("--dask_npartitions", "--dask_partition_size")) for a in beam_args):
            beam_args.append("--dask_partition_size=1")  # one read split per Dask partition
        address = args.dask_address
        if address is None and not any(a.startswith(("--dask_client_address", "--dask_scheduler_file"))
                                       for a in beam_args):
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=args.dask_workers or os.cpu_count() or 1, threads_per_worker=1,
                                   processes=True, host="127.0.0.1", dashboard_address=None)
            address = cluster.scheduler_address
        if address is not None:
            beam_args.append(f"--dask_client_address={address}")
    else:
        runner = name
    return runner, PipelineOptions(beam_args), cluster


def run_beam(args: argparse.Namespace, beam_args: list[str], build) -> None:
    """Make the runner and options from the flags, apply ``build(pipeline)``, run it to completion and tear
    down what was started for it (a Dask client or LocalCluster). Shared by ``prepare`` and ``audit``."""
    import apache_beam as beam

    runner, options, cluster = runner_and_options(args, beam_args)
    try:
        p = beam.Pipeline(runner=runner, options=options)
        build(p)
        result = p.run()
        try:
            result.wait_until_finish()
        finally:
            client = getattr(result, "client", None)
            if client is not None:
                client.close()
    finally:
        if cluster is not None:
            cluster.close()


def execute(config, args: argparse.Namespace, beam_args: list[str]) -> None:
    """Run the Beam pipeline into ``config.work_dir``."""
    from .build import build_pipeline

    run_beam(args, beam_args, lambda p: build_pipeline(p, config))


def prepare(args: argparse.Namespace, beam_args: list[str] | None = None) -> dict[str, Any]:
    """Plan, run and publish. Returns ``{"manifest", "stats", "wall_s", "tokens_per_s", "output_dir"}``."""
    import im_data
    from im_data import storage
    from im_data.card import render_card

    from .manifest import OutputError, add_reject_tables, build_manifest, make_work_dir, publish, read_summary, remove_stale_runs

    start = time.perf_counter()
    config, meta = plan(args)
    remove_stale_runs(config.output_dir)
    work_dir = make_work_dir(config.output_dir)
    config = dataclasses.replace(config, work_dir=work_dir)
    try:
        started = time.perf_counter()
        execute(config, args, beam_args or [])
        pipeline_s = time.perf_counter() - started
        summary = add_reject_tables(work_dir, read_summary(work_dir), config.format)
        manifest = build_manifest(summary, meta, tokenizer_name=args.tokenizer, fmt=config.format,
                                  inputs=[s.label for s in config.sources], package_version=im_data.__version__,
                                  eval_fraction=config.eval_fraction)
        card = render_card(manifest, summary["stats"], location=config.output_dir)
        try:
            publish(work_dir, config.output_dir, manifest, summary["stats"], card, args.overwrite)
        except OutputError as exc:
            raise SetupError(str(exc)) from None
    except BaseException:
        storage.remove_tree(work_dir)
        raise
    manifest = manifest.to_dict()
    wall = time.perf_counter() - start
    tokens = sum(manifest["tokens_per_role"].values())
    return {"manifest": manifest, "stats": summary["stats"], "wall_s": wall, "pipeline_s": pipeline_s,
            "tokens_per_s": tokens / wall if wall > 0 else 0.0, "output_dir": config.output_dir}


def print_summary(result: dict[str, Any], file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    m, stats = result["manifest"], result["stats"]
    c = m["counts"]
    table = Table(title=f"im-data prepare → {result['output_dir']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
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
    table.add_row("wall time", f"{result['wall_s']:.2f} s")
    table.add_row("tokens/s", f"{result['tokens_per_s']:,.0f}")
    Console(file=file or sys.stdout, width=100).print(table)


def command(args: argparse.Namespace, beam_args: list[str]) -> int:
    if args.quiet:
        logging.getLogger("im_data.prepare").setLevel(logging.WARNING)
    try:
        result = prepare(args, beam_args)
    except SetupError as exc:
        print(f"im-data prepare: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print_summary(result)
    return 0
