"""User errors of ``im-data``: one line on stderr naming the fix, exit status 2; ``--debug`` shows the traceback.

Also: strict options (an option that is neither ours nor Beam's is an error, with a "did you mean"), hub datasets
only when asked for (``hf:NAME``), chat templates compiled at set-up."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.options import UsageError

REPO = Path(__file__).resolve().parents[2]
ALPACA = REPO / "tests" / "data" / "sample_alpaca.jsonl"


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"im-data {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv, command, expected", [
    (["prepare", "mydata", "-o", "OUT"], "prepare", "mydata: no such file or directory"),
    (["audit", "typo/dir"], "audit", "typo/dir: no such file or directory (a hub dataset is read only as hf:typo/dir)"),
    (["inspect", "prepared-shards/"], "inspect", "prepared-shards/: no such file or directory"),
])
def test_missing_local_paths_are_one_line_in_a_fresh_process(tmp_path, argv, command, expected):
    """Run as a user would (a fresh process, in an empty folder): one line, exit 2, no hub lookup."""
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert one_error_line(proc.stderr, command) == f"im-data {command}: error: {expected}"
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(UsageError, match="no such file or directory"):
        run("--debug", "prepare", tmp_path / "missing.jsonl", "-o", tmp_path / "out")
    with pytest.raises(UsageError, match="no such file or directory"):
        run("prepare", tmp_path / "missing.jsonl", "-o", tmp_path / "out", "--debug")


@pytest.mark.parametrize("argv, command, message", [
    (["prepare", "--mdoe", "it", "IN", "-o", "OUT"], "prepare",
     "unrecognized option --mdoe; did you mean --mode? (see im-data prepare --help)"),
    (["prepare", "IN", "-o", "OUT", "--max-lenght", "16"], "prepare",
     "unrecognized option --max-lenght; did you mean --max-length? (see im-data prepare --help)"),
    (["audit", "--chat-templat=tulu", "IN"], "audit",
     "unrecognized option --chat-templat; did you mean --chat-template? (see im-data audit --help)"),
    (["prepare", "IN", "-o", "OUT", "--direct_num_worker", "2"], "prepare",
     "unrecognized option --direct_num_worker; did you mean --direct_num_workers? (see im-data prepare --help)"),
    (["inspect", "IN", "--direct_num_workers", "2"], "inspect",
     "unrecognized option --direct_num_workers (see im-data inspect --help)"),
    (["inspect", "IN", "--zzzzzz"], "inspect", "unrecognized option --zzzzzz (see im-data inspect --help)"),
    (["prepare", "IN", "-o"], "prepare", "argument --output/-o: expected one argument (see im-data prepare --help)"),
    (["inspect", "IN", "--mode", "xx"], "inspect",
     "argument --mode: invalid choice: 'xx' (choose from 'it', 'im', 'wit') (see im-data inspect --help)"),
])
def test_unknown_options_are_user_errors(tmp_path, argv, command, message):
    argv = [str(ALPACA) if a == "IN" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    code, out, err = run(*argv)
    assert code == 2
    assert one_error_line(err, command) == f"im-data {command}: error: {message}"
    assert not (tmp_path / "out").exists()


def test_a_typo_before_the_inputs_does_not_swallow_an_input(tmp_path):
    """``--mdoe it data.jsonl``: `it` must not become an INPUT and `data.jsonl` must not vanish."""
    code, _, err = run("prepare", "--mdoe", "it", ALPACA, "-o", tmp_path / "out")
    assert code == 2 and "--mdoe" in err and "it: no such file" not in err


def test_beam_options_still_pass(tmp_path):
    code, _, err = run("prepare", ALPACA, "-o", tmp_path / "out", "--direct_num_workers", "1", "-q",
                       "--direct_running_mode=in_memory")
    assert code == 0, err
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_hub_dataset_only_when_asked_for(tmp_path, monkeypatch):
    from pipelines.options import check_input_specs

    monkeypatch.chdir(tmp_path)
    check_input_specs(["hf:tatsu-lab/alpaca", "hub:x/y:test", "*.jsonl"])  # hub specs and globs pass
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "name").write_text("{}\n")
    check_input_specs(["owner/name"])  # an existing local path is local
    with pytest.raises(UsageError, match=r"^HuggingFaceH4/no_robots: no such file or directory \(a hub dataset is "
                                         r"read only as hf:HuggingFaceH4/no_robots\)$"):
        check_input_specs(["HuggingFaceH4/no_robots"])
    with pytest.raises(UsageError, match=r"^\./data\.jsonl: no such file or directory$"):
        check_input_specs(["./data.jsonl"])


def test_chat_template_syntax_error_is_caught_at_set_up(tmp_path):
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}\n{{ m.content }}\n{% if m.role == 'user' %}\n{{ m.role }\n{% endfor %}\n")
    for argv, command in ((["prepare", ALPACA, "-o", tmp_path / "out"], "prepare"),
                          (["inspect", ALPACA], "inspect"), (["audit", ALPACA], "audit")):
        code, out, err = run(*argv, "--chat-template", bad)
        assert code == 2
        line = one_error_line(err, command)
        assert line == (f"im-data {command}: error: chat template 'bad.jinja' has a Jinja syntax error on line 4: "
                        "unexpected '}'; fix the template")
    assert not (tmp_path / "out").exists()


def test_an_unwritable_html_file_is_one_line(tmp_path):
    code, out, err = run("inspect", ALPACA, "--html", tmp_path)
    assert code == 2 and "cannot write" in one_error_line(err, "inspect")
