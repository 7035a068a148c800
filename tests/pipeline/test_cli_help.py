"""CLI polish: ``--version``; every flag has help text showing its default; plain-text help (no RST markup)."""

from __future__ import annotations

import argparse
import io
from contextlib import redirect_stdout

import pytest

import im_data
from pipelines.cli import build_parser, main


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError("no subcommands")


def test_version():
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert out.getvalue().strip() == f"im-data {im_data.__version__}"


@pytest.mark.parametrize("command", ["prepare", "audit", "inspect"])
def test_every_flag_has_help_with_its_default(command):
    sub = _subparsers(build_parser())[command]
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings or action.required:
            continue
        assert action.help, f"{command} {action.option_strings} has no help"
        assert "(default" in action.help, f"{command} {action.option_strings}: no default in {action.help!r}"


@pytest.mark.parametrize("command", ["prepare", "audit", "inspect"])
def test_help_is_plain_text(command):
    parser = build_parser()
    sub = _subparsers(parser)[command]
    text = sub.format_help() + parser.format_help()
    assert "``" not in text and "`" not in text
    assert sub.description and sub.description == sub.description.strip()
