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
    from .args import make_parser

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


def launch(all_args: list[str], debug: bool) -> int:
    """Parse like `trl sft` (``-h`` prints every field and exits), then ``accelerate launch -m trl_plugin.train``."""
    from .args import make_parser

    parser = make_parser(prog=PROG)
    # unknown strings go to `accelerate launch`
    *_, config_remaining, cli_remaining = parser.parse_args_and_config(
        all_args, return_remaining_strings=True, separate_remaining_strings=True
    )
    from accelerate.commands.launch import launch_command, launch_command_parser
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    launch_args = resolve_accelerate_config_argument(config_remaining + cli_remaining)
    training_args = _subtract_subsequence(all_args, cli_remaining)

    # The launched process must import trl_plugin even when it is not installed (a source checkout)
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    if debug:
        os.environ[DEBUG_ENV] = "1"
    accelerate_args = launch_command_parser().parse_args(launch_args + ["-m", "trl_plugin.train"] + training_args)
    launch_command(accelerate_args)
    return 0


def main(argv: list[str] | None = None) -> int:
    args, debug = split_debug(sys.argv[1:] if argv is None else argv)
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
    return guarded(lambda: launch(args, debug), debug)


if __name__ == "__main__":
    raise SystemExit(main())
