"""The reference in docs/ cannot drift from the commands: every option that `--help` lists is documented in
docs/CLI.md, every reason code of `im_data.REASONS` is in the reason-code table of docs/OUTPUT.md (and nothing
else is), and every relative link of README.md and docs/*.md points at a file that exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI_DOC = ROOT / "docs" / "CLI.md"
OUTPUT_DOC = ROOT / "docs" / "OUTPUT.md"
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9_-]*)")


def _help(*argv: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               COLUMNS="200", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, *argv, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _options(help_text: str) -> set[str]:
    """The options a help text defines: the first column of its option lines."""
    found = set()
    for line in help_text.splitlines():
        if line.startswith("  -"):
            found |= set(OPTION.findall(line[2:].split("  ")[0]))
    return found - {"--help"}


@pytest.mark.parametrize("command", [None, "prepare", "audit", "inspect", "check-template"])
def test_every_im_data_option_is_in_docs_cli(command):
    options = _options(_help("-m", "pipelines", *([command] if command else [])))
    assert len(options) >= 3
    documented = set(OPTION.findall(CLI_DOC.read_text(encoding="utf-8")))
    assert options <= documented, f"docs/CLI.md lacks {sorted(options - documented)} of im-data {command or ''}"


def test_every_option_of_our_own_im_sft_fields_is_in_docs_cli():
    from dataclasses import fields

    from trl_plugin.config import WeightedSFTConfig
    from trl_plugin.train import PreparedDataArguments
    from trl import SFTConfig

    ours = {f.name for f in fields(PreparedDataArguments)}
    ours |= {f.name for f in fields(WeightedSFTConfig)} - {f.name for f in fields(SFTConfig)}
    ours |= {"max_length", "dataset_name", "debug", "version"}  # redefined default, and the launcher's own flags
    doc = CLI_DOC.read_text(encoding="utf-8")
    section = doc[doc.index("## `im-sft`"):]
    missing = sorted(name for name in ours if f"`--{name}`" not in section)
    assert not missing, f"docs/CLI.md's im-sft section lacks {missing}"


def _table_after(doc: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``heading`` (header and separator rows dropped)."""
    lines = doc[doc.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def test_reason_code_table_lists_every_reason_code():
    from im_data.errors import REASONS

    rows = _table_after(OUTPUT_DOC.read_text(encoding="utf-8"), "## Rejected records: reason codes")
    documented = [row[0].strip("`") for row in rows]
    assert len(documented) == len(set(documented)), f"a reason code is listed twice: {documented}"
    assert set(documented) == set(REASONS), (
        f"docs/OUTPUT.md's reason-code table lacks {sorted(set(REASONS) - set(documented))} and lists unknown codes "
        f"{sorted(set(documented) - set(REASONS))}")
    assert all(len(row) == 2 and row[1] for row in rows), "every reason code has a meaning"


def test_relative_links_resolve():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}, which is missing"
