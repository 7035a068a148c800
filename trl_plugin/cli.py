"""`im-sft`: `trl sft` with per-token loss weights.

Accepts every `trl sft` argument, the `WeightedSFTConfig` fields (`--loss_weights_column`, `--loss_normalization`,
`--segment_metrics`, `--roles_column`) and the `accelerate launch` arguments, and launches `trl_plugin.train` the way
`trl sft` launches its script: through `accelerate launch` (`--num_processes`, `--config_file`, `--accelerate_config
zero2`, ...).

    im-sft --model_name_or_path MODEL --dataset_name OUT_DIR --output_dir RUN [--loss_normalization sequence]

`--dataset_name` may be an `im-data prepare` output directory, local or a URL such as `s3://bucket/prepared` (found
through its manifest.json).

Errors end on one line, ``im-sft: error: <the exception's message>``, with exit status 2 for a user error (a bad
option or value, a dataset or model that cannot be used) and 1 otherwise; ``--debug`` shows the traceback instead.
``--version`` and the usage (no arguments) import nothing heavy; ``--help`` imports only what the option tables
need (TRL's config dataclasses), not the trainer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

PROG = "im-sft"
#: set for the launched training processes, so that they show tracebacks too
DEBUG_ENV = "IM_SFT_DEBUG"
USAGE = (f"usage: {PROG} --model_name_or_path MODEL --dataset_name DATA [--output_dir DIR] [--debug] [--version]\n"
         f"              [any trl sft option] [any accelerate launch option]")


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the command line or its inputs are wrong" (exit 2): bad values (ValueError, which our
    WeightsError / ManifestError / TokenizerMismatchError subclass), unusable files or models (OSError) and a
    tokenizer that does not load. Imported when an error is being reported, never at start-up."""
    from im_data.tokenizer import TokenizerLoadError

    return ValueError, OSError, TokenizerLoadError


def version_line() -> str:
    """``im-sft X (trl Y, transformers Z, torch W)``, from package metadata: nothing is imported."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    deps = ", ".join(f"{dist} {installed(dist)}" for dist in ("trl", "transformers", "torch"))
    return f"{PROG} {installed('im-data')} ({deps})"


class UsageError(ValueError):
    """A mistake on the command line (an unknown option, a bad value): one line, exit 2."""


#: modules whose warnings `im-sft` prints as one line, ``im-sft: <Category>: <message>``
OUR_MODULES = ("trl_plugin", "im_data", "pipelines")


def one_line_warnings() -> None:
    """Print our warnings (``TruncationWarning``, ``FloatWeightsWarning``, ...) as one clean line, without the
    file path and source line Python puts in front; other warnings keep Python's format."""
    import warnings

    if getattr(warnings.formatwarning, "_im_sft", False):
        return
    python_format = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        if category.__module__.split(".")[0] in OUR_MODULES:
            return f"{PROG}: {category.__name__}: {' '.join(str(message).split())}\n"
        return python_format(message, category, filename, lineno, line)

    formatwarning._im_sft = True
    warnings.formatwarning = formatwarning
    # TRL's own SFTConfig default sets the field transformers deprecates: nothing the user can act on
    warnings.filterwarnings("ignore", message="`gradient_checkpointing` is deprecated", category=FutureWarning)


def usage_error(message: str) -> int:
    print(USAGE, file=sys.stderr)
    print(f"{PROG}: error: {message} ({PROG} --help lists every option)", file=sys.stderr)
    return 2


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (TRL and transformers messages sometimes span several)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = repr(exc.args[0])
    return text or type(exc).__name__


def guarded(fn: Callable[[], int | None], debug: bool) -> int:
    """Run ``fn``; turn an exception into one line on stderr and an exit status (unless ``debug``)."""
    if debug:
        return fn() or 0
    try:
        return fn() or 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except subprocess.CalledProcessError as exc:
        # a launched training process failed; it has printed its own one-line error already
        if exc.returncode < 0:
            print(f"{PROG}: error: the training process was killed by signal {-exc.returncode}", file=sys.stderr)
            return 1
        return exc.returncode or 1
    except Exception as exc:  # noqa: BLE001 - the message is the report; --debug shows the traceback
        if isinstance(exc, user_errors()):
            print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
            return 2
        print(f"{PROG}: error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1


def split_debug(args: Sequence[str]) -> tuple[list[str], bool]:
    """Remove ``--debug`` from ``args``; debug is also on when the launcher set :data:`DEBUG_ENV`."""
    rest = [a for a in args if a != "--debug"]
    return rest, len(rest) != len(args) or os.environ.get(DEBUG_ENV) == "1"


def _given(args: Sequence[str], *flags: str) -> bool:
    return any(a in flags or a.split("=", 1)[0] in flags for a in args)


def missing_required(args: Sequence[str]) -> list[str]:
    """Required options absent from the command line (a ``--config`` YAML file may hold them instead)."""
    if _given(args, "--config"):
        return []
    missing = []
    if not _given(args, "--model_name_or_path", "--model-name-or-path"):
        missing.append("--model_name_or_path")
    if not _given(args, "--dataset_name", "--dataset-name", "--datasets"):
        missing.append("--dataset_name")
    return missing


def option_value(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name`` (or ``--name-with-dashes``; ``--name v`` or ``--name=v``; the last one wins)."""
    spellings = {f"--{name}", f"--{name.replace('_', '-')}"}
    value = None
    for i, arg in enumerate(args):
        flag, eq, inline = arg.partition("=")
        if flag in spellings:
            value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
    return value


def early_checks(args: Sequence[str]) -> None:
    """The data and tokenizer checks of :func:`trl_plugin.train.check_inputs`, on the values written on the
    command line, before TRL (and torch) are imported: a missing dataset folder, a broken manifest, a tokenizer
    that does not match the shards or the model's embeddings end here in a second or two. (With ``--config``
    they run after the options are parsed, still before the launch.)"""
    if _given(args, "--config", "--datasets", "-h", "--help"):
        return
    from .train import check_inputs

    eval_on = (option_value(args, "eval_strategy") or "no") != "no"
    check_inputs({"train": option_value(args, "dataset_name"),
                  "eval": option_value(args, "eval_dataset_name") if eval_on else None},
                 option_value(args, "model_name_or_path"), option_value(args, "tokenizer_name_or_path"),
                 local_only=True)


def _help_cache_file() -> Path:
    """Where the help text of this exact set-up is kept: keyed by the versions of the packages that define the
    options, the source of our option dataclasses and the terminal width (argparse wraps to it)."""
    import hashlib
    import shutil
    from importlib.metadata import PackageNotFoundError, version

    key = hashlib.sha256()
    for dist in ("im-data", "trl", "transformers", "accelerate", "torch"):
        try:
            key.update(f"{dist}={version(dist)};".encode())
        except PackageNotFoundError:
            key.update(f"{dist}=-;".encode())
    here = Path(__file__).resolve().parent
    for source in ("config.py", "train.py", "cli.py"):
        key.update((here / source).read_bytes())
    key.update(str(shutil.get_terminal_size().columns).encode())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "im-data"
    return cache / f"im-sft-help-{key.hexdigest()[:20]}.txt"


def print_help() -> int:
    """``im-sft --help``: every `trl sft` field and ours. Building it imports TRL's config classes (and with them
    transformers and torch, several seconds), so the text is kept in the user's cache after the first call."""
    cached = _help_cache_file()
    try:
        print(cached.read_text(encoding="utf-8"), end="")
        return 0
    except OSError:
        pass
    from .train import make_parser

    text = make_parser(prog=PROG).format_help()
    print(text, end="")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(cached)
    except OSError:
        pass  # a read-only home: no cache, same text
    return 0


def _subtract_subsequence(items: list[str], subsequence: list[str]) -> list[str]:
    from trl.cli.commands.training import _subtract_subsequence as trl_subtract

    return trl_subtract(items, subsequence)


def _raise_usage_error(message: str):
    raise UsageError(f"{message} ({PROG} --help lists every option)")


def _option_strings(parser) -> set[str]:
    return {s for s in parser._option_string_actions if s.startswith("--")}


def check_launch_options(launch_args: list[str], ours: set[str], accelerate_parser) -> None:
    """Every option left for `accelerate launch` must be one of its own: an unknown one is a typo of ours, of
    TRL's or of accelerate's, reported in one line with the closest option names."""
    import difflib

    known = _option_strings(accelerate_parser)
    for arg in launch_args:
        if not arg.startswith("--") or arg == "--":
            continue
        flag = arg.split("=", 1)[0]
        if flag in known:
            continue
        # one spelling per option (`--num_processes` and `--num-processes` are the same): the underscore one
        names = {o.replace("-", "_")[2:]: o for o in sorted(ours | known)}
        close = difflib.get_close_matches(flag.replace("-", "_")[2:], sorted(names), n=2, cutoff=0.75)
        hint = f": did you mean {' or '.join(names[c] for c in close)}?" if close else ""
        _raise_usage_error(f"unrecognized option {flag}{hint}")


def launch(all_args: list[str], debug: bool) -> int:
    """Parse like `trl sft` (``-h`` prints every field and exits), check the options left for accelerate and the
    data (:func:`trl_plugin.train.preflight`), then ``accelerate launch -m trl_plugin.train``."""
    from .train import make_parser, preflight

    parser = make_parser(prog=PROG)
    parser.error = _raise_usage_error  # argparse's own errors: one line too
    # unknown strings go to `accelerate launch`
    *parsed, config_remaining, cli_remaining = parser.parse_args_and_config(
        all_args, return_remaining_strings=True, separate_remaining_strings=True
    )
    from accelerate.commands.launch import launch_command, launch_command_parser
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    launch_args = resolve_accelerate_config_argument(config_remaining + cli_remaining)
    accelerate_parser = launch_command_parser()
    accelerate_parser.error = _raise_usage_error
    check_launch_options(launch_args, _option_strings(parser), accelerate_parser)
    training_args = _subtract_subsequence(all_args, cli_remaining)
    preflight(*parsed)

    # The launched process must import trl_plugin even when it is not installed (a source checkout)
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    if debug:
        os.environ[DEBUG_ENV] = "1"
    accelerate_args = accelerate_parser.parse_args(launch_args + ["-m", "trl_plugin.train"] + training_args)
    launch_command(accelerate_args)
    return 0


def main(argv: list[str] | None = None) -> int:
    args, debug = split_debug(sys.argv[1:] if argv is None else argv)
    one_line_warnings()
    if not args:
        return usage_error("no arguments given")
    if "--version" in args:
        print(version_line())
        return 0
    if args in (["-h"], ["--help"]):
        try:
            return print_help()
        except BrokenPipeError:  # `im-sft --help | head`: the reader went away
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
    if "-h" not in args and "--help" not in args:  # with other options (e.g. --config), TRL's parser prints it
        missing = missing_required(args)
        if missing:
            return usage_error(f"the following arguments are required: {', '.join(missing)}")
    def checked_launch() -> int:
        early_checks(args)
        return launch(args, debug)

    return guarded(checked_launch, debug)


if __name__ == "__main__":
    raise SystemExit(main())
