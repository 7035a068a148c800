"""``im-data check-template``: is this chat template safe to train on? Run it before spending GPU hours.

Encodes a built-in probe set (system prompt, multi-turn, tools, parallel calls, tool results, reasoning on the last
and on earlier turns, generation prompts, inline <think> reasoning) with the tokenizer and template under `it` and
`im`, and prints per probe and per role what is trained (the `inspect` colours), which record fields the template
renders, drops or changes (so which records would be rejected, and the flag that accepts them), whether renders are
prefix-stable, whether the end-of-turn token is trained, and any invariant violation. Exit status: 0 when the
template is fully supported, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .options import UsageError, plain_description, usage_error


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", default=None, metavar="NAME_OR_PATH",
                   help="hub name or local directory of a fast tokenizer (default: the embedded tokenizer)")
    p.add_argument("--chat-template", default=None, metavar="NAME|FILE",
                   help="a built-in template name or a Jinja file (default: the tokenizer's own)")
    p.add_argument("--chat-template-kwargs", default=None, metavar="JSON",
                   help='extra variables for the chat template, e.g. \'{"enable_thinking": false}\' (default: none)')
    p.add_argument("--allow-unrendered", action="append", default=None, metavar="FIELD",
                   help="check as prepare would run with --allow-unrendered FIELD; repeatable (default: none)")
    p.add_argument("--split-inline-reasoning", action="store_true",
                   help="check as prepare would run with --split-inline-reasoning (default: off)")
    p.add_argument("--json", action="store_true", help="print the report as JSON, for tools (default: text)")
    p.add_argument("--show", default=None, metavar="PROBE",
                   help="also show this probe token by token under im, as `inspect` does (default: none)")
    p.add_argument("--width", type=int, default=None, metavar="COLS", help="terminal width (default: detected)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour output (default auto: only on a terminal; NO_COLOR is honoured)")


def register(subparsers) -> None:
    p = subparsers.add_parser("check-template", help="check a chat template on a built-in probe set before training",
                              description=plain_description(__doc__))
    add_arguments(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    from rich.console import Console

    from im_data.check import PROBES, render_report

    if args.show is not None and args.show not in {p.name for p in PROBES}:
        raise UsageError(f"--show {args.show}: no such probe; probes: {', '.join(p.name for p in PROBES)}")
    report = build(args)
    if args.json:
        print(report.to_json())
        return 0 if report.supported else 1
    force = {"always": True, "never": False}.get(args.color)
    console = Console(width=args.width, force_terminal=force, no_color=args.color == "never" or None,
                      color_system="truecolor" if args.color == "always" else "auto", highlight=False)
    render_report(report, console)
    if args.show is not None:
        _show(report, args.show, console)
    return 0 if report.supported else 1


def build(args: argparse.Namespace):
    """The :class:`im_data.check.TemplateReport` the arguments ask for (raises :class:`UsageError`)."""
    from im_data import FormatOptions, load_tokenizer
    from im_data.check import check_template
    from im_data.templates import ChatTemplate
    from im_data.tokenizer import TokenizerLoadError

    from .options import check_template as compile_template

    try:
        kwargs = json.loads(args.chat_template_kwargs or "{}")
    except json.JSONDecodeError as exc:
        raise UsageError(f"--chat-template-kwargs must be a JSON object: {exc}") from None
    if not isinstance(kwargs, dict):
        raise UsageError(f"--chat-template-kwargs must be a JSON object, got {type(kwargs).__name__}")
    try:
        tok = load_tokenizer(args.tokenizer)
        template = ChatTemplate.resolve(args.chat_template, tok)
    except (TokenizerLoadError, ValueError, OSError) as exc:
        raise usage_error(exc) from None
    compile_template(template)
    options = dataclasses.replace(FormatOptions(), split_inline_reasoning=args.split_inline_reasoning)
    return check_template(tok, template, chat_template_kwargs=kwargs, allow_unrendered=args.allow_unrendered or (),
                          format_options=options, tokenizer_name=args.tokenizer or "embedded")


def _show(report, name: str, console) -> None:
    from im_data.render import render_terminal, view_from_example

    result = next(p for p in report.probes if p.probe.name == name)
    if "im" not in result.examples:
        print(f"im-data check-template: probe {name} was rejected; nothing to show", file=sys.stderr)
        return
    example = result.examples["im"]
    console.print("")
    render_terminal(view_from_example(example, report.tokenizer_object, title=f"probe {name} (im)"), console)
