"""``im-data``: the console entry point. Subcommands live in their own modules.

Each module in :data:`SUBCOMMAND_MODULES` defines ``register(subparsers)``, which adds its subparser and sets
``func=callable(args, extra_argv) -> int``. A subcommand that hands options it does not know to Beam
(``prepare``, ``audit``) sets ``accepts_extra=True``; only registered Beam pipeline options pass, any other
unknown option is a user error.

Errors: a :class:`pipelines.options.UsageError` (and any argparse error) is one line on stderr and exit status 2;
an unexpected exception is one line and exit status 1; ``--debug`` shows the traceback instead. Importing this
module and building the parser import neither Beam nor torch.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys

from .options import UsageError

SUBCOMMAND_MODULES = ("pipelines.prepare", "pipelines.audit", "pipelines.inspect_cmd", "pipelines.check_template_cmd")
GLOBAL_FLAGS = {"--debug": "debug", "--verbose": "verbose", "-v": "verbose"}
# loggers whose INFO/WARNING chatter is hidden unless -v
NOISY_LOGGERS = ("apache_beam", "distributed", "dask", "datasets", "fsspec", "urllib3", "filelock",
                 "huggingface_hub")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


class _DropNoise(logging.Filter):
    """Drops known chatter; without -v/--debug also the errors other libraries log while a run fails (Beam logs
    each failed bundle with its traceback): the failure itself ends the command with one line."""

    def __init__(self, quiet_errors: bool = True):
        super().__init__()
        self.quiet_errors = quiet_errors

    def filter(self, record: logging.LogRecord) -> bool:
        if self.quiet_errors and record.name.split(".")[0] in NOISY_LOGGERS:
            return False
        return "apitools not found" not in record.getMessage()


def setup_logging(verbose: bool = False, debug: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_DropNoise(quiet_errors=not (verbose or debug)))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.INFO if verbose else logging.WARNING)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    logging.getLogger("im_data").setLevel(logging.INFO if verbose else logging.WARNING)


def version() -> str:
    from im_data import __version__

    return f"im-data {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="im-data", description="Instruction-modelling data tools.", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=version(), help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of one line (default: off)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="show the log messages of Beam, Dask and the libraries (default: hidden)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # that subcommand is not part of this build
            raise
        module.register(subparsers)
    return parser


# ------------------------------------------------------------------------------------------- strict options
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # pylint: disable=protected-access
        if isinstance(action, argparse._SubParsersAction):  # pylint: disable=protected-access
            return dict(action.choices)
    return {}


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}  # pylint: disable=protected-access


def beam_value_options() -> dict[str, bool]:
    """``{"--flag": takes_a_value}`` for every registered Beam pipeline option (imports Beam: call only when an
    option is not ours)."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser
    from apache_beam.runners.dask import dask_runner  # noqa: F401 - registers DaskOptions

    parser = _BeamArgumentParser(allow_abbrev=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    return {opt: action.nargs != 0 for action in parser._actions for opt in action.option_strings}


def _unknown_option(name: str, command: str, candidates: set[str]) -> UsageError:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return UsageError(f"unrecognized option {name}{hint} (see im-data {command} --help)")


def split_foreign_options(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate Beam pipeline options from ours, keeping ``--opt VALUE`` pairs together (argparse alone would
    hand ``VALUE`` to INPUT). An option that is neither ours nor Beam's raises :class:`UsageError` with a "did you
    mean" where one is close; so does any unknown option of a command that takes no Beam options."""
    subs = _subparsers(parser)
    command = next((tok for tok in argv if not tok.startswith("-")), None)  # the main parser takes no values
    if command not in subs:
        return argv, []
    sub = subs[command]
    ours = _option_strings(parser) | _option_strings(sub)
    accepts_extra = bool(sub.get_default("accepts_extra"))
    beam_opts: dict[str, bool] | None = None
    mine, foreign = [], []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            mine.extend(argv[i:])
            break
        name = tok.split("=", 1)[0]
        if tok.startswith("--") and name not in ours:
            if not accepts_extra:
                raise _unknown_option(name, command, ours)
            if beam_opts is None:
                beam_opts = beam_value_options()
            if name not in beam_opts:
                raise _unknown_option(name, command, ours | set(beam_opts))
            foreign.append(tok)
            if "=" not in tok and beam_opts[name] and i + 1 < len(argv):
                foreign.append(argv[i + 1])
                i += 1
        else:
            mine.append(tok)
        i += 1
    return mine, foreign


# ------------------------------------------------------------------------------------------------- main
def _global_flags(argv: list[str]) -> tuple[list[str], dict[str, bool]]:
    """``--debug`` and ``-v/--verbose`` wherever they are (before ``--``), removed from ``argv``."""
    flags = {"debug": False, "verbose": False}
    rest = []
    for i, tok in enumerate(argv):
        if tok == "--":
            rest.extend(argv[i:])
            break
        if tok in GLOBAL_FLAGS:
            flags[GLOBAL_FLAGS[tok]] = True
        else:
            rest.append(tok)
    return rest, flags


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    argv, flags = _global_flags(list(sys.argv[1:] if argv is None else argv))
    setup_logging(flags["verbose"], flags["debug"])
    prog = "im-data"
    try:
        parser = build_parser()
        command = next((tok for tok in argv if not tok.startswith("-")), None)
        if command in _subparsers(parser):
            prog = f"im-data {command}"
        mine, foreign = split_foreign_options(parser, argv)
        args, extra = parser.parse_known_args(mine)
        if extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see {prog} --help)")
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        return int(args.func(args, foreign) or 0)
    except UsageError as exc:
        if flags["debug"]:
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if flags["debug"]:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # pylint: disable=broad-except
        if flags["debug"]:
            raise
        print(f"{prog}: error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
