"""``im-data``: the console entry point. Subcommands live in their own modules.

Each module in :data:`SUBCOMMAND_MODULES` defines ``register(subparsers)``, which adds its subparser and sets
``func=callable(args, extra_argv) -> int``. A subcommand that accepts options it does not know (``prepare``
hands them to Beam) sets ``accepts_extra=True``; for the others unknown options are an error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

SUBCOMMAND_MODULES = ("pipelines.prepare", "pipelines.audit", "pipelines.inspect_cmd")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_DropNoise())
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    logging.getLogger("im_data.prepare").setLevel(logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="im-data", description="Instruction-modelling data tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # that subcommand is not part of this build
            raise
        module.register(subparsers)
    return parser


def _beam_value_options() -> dict[str, bool]:
    """``{"--flag": takes_a_value}`` for every registered Beam pipeline option."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser
    from apache_beam.runners.dask import dask_runner  # noqa: F401 - registers DaskOptions

    parser = _BeamArgumentParser(allow_abbrev=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    return {opt: action.nargs != 0 for action in parser._actions for opt in action.option_strings}


def split_foreign_options(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate options ``parser`` does not know (Beam's) from ours, keeping ``--opt VALUE`` pairs together.

    argparse's ``parse_known_args`` alone would hand ``VALUE`` to a positional argument (INPUT)."""
    ours = set()
    for action in parser._actions:
        ours.update(action.option_strings)
        for sub in getattr(action, "choices", None) or {}:
            sub_parser = action.choices[sub] if isinstance(action.choices, dict) else None
            if sub_parser is not None:
                for a in sub_parser._actions:
                    ours.update(a.option_strings)
    beam_opts = None
    mine, foreign = [], []
    i = 0
    while i < len(argv):
        tok = argv[i]
        name = tok.split("=", 1)[0]
        if tok.startswith("--") and name not in ours and tok != "--":
            foreign.append(tok)
            if "=" not in tok:
                if beam_opts is None:
                    beam_opts = _beam_value_options()
                if beam_opts.get(name, False) and i + 1 < len(argv):
                    foreign.append(argv[i + 1])
                    i += 1
        else:
            mine.append(tok)
        i += 1
    return mine, foreign


def main(argv: list[str] | None = None) -> int:
    _setup_logging()
    parser = build_parser()
    mine, foreign = split_foreign_options(parser, list(sys.argv[1:] if argv is None else argv))
    args, extra = parser.parse_known_args(mine)
    extra = extra + foreign
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args, extra) or 0)


if __name__ == "__main__":
    sys.exit(main())
