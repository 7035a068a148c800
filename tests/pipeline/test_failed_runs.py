"""A run that fails on its rejects (exit status 3) says so first, never "publishing", prints the summary table only
without ``-q``, and ends with one line naming the top reason, one example message and the flag that fixes it; the
flag it names does fix it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PREFIX = "im-data prepare: "


def run(cwd: Path, *argv) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def kept_rejects(tmp_path: Path, out: str) -> Path:
    (run_dir,) = tmp_path.glob(f".{out}.im-data-tmp-*")
    return run_dir / "rejects"


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_all_rejected_run_says_why_and_which_flags_fix_it(tmp_path):
    write_jsonl(tmp_path / "qa.jsonl", [{"question": f"q{i}?", "answer": f"a{i}"} for i in range(3)])
    proc = run(tmp_path, "prepare", "qa.jsonl", "-o", "out")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert not [line for line in lines if "publishing" in line]  # nothing was published: no such line
    failed = lines.index(f"{PREFIX}failed: no example was written: all 3 records were rejected; nothing was published")
    table = next(i for i, line in enumerate(lines) if "im-data prepare →" in line)
    assert failed < table  # what failed comes first, then the table
    assert lines[-1] == (
        f"{PREFIX}error: no example was written: all 3 records were rejected; top reason unknown_format (3 of 3 "
        "rejects), e.g. qa.jsonl record 0: no messages/conversations/prompt+completion/instruction+output fields "
        "(keys: answer, question); fix: name the format and its columns with --input-format FORMAT --columns "
        "KEY=NAME, e.g. --input-format alpaca --columns instruction=question output=answer; nothing was published. "
        f"The rejected records are in {kept_rejects(tmp_path, 'out')}")
    assert not (tmp_path / "out" / "manifest.json").exists()
    # the flags it names fix it
    fixed = run(tmp_path, "prepare", "qa.jsonl", "-o", "fixed", "--input-format", "alpaca", "--columns",
                "instruction=question", "output=answer", "-q")
    assert fixed.returncode == 0, fixed.stderr
    counts = json.loads((tmp_path / "fixed" / "manifest.json").read_text())["counts"]
    assert counts["written"] == 3 and counts["rejected"] == 0


def test_quiet_failed_run_prints_only_the_error_line(tmp_path):
    write_jsonl(tmp_path / "qa.jsonl", [{"question": "q?", "answer": "a"}])
    proc = run(tmp_path, "prepare", "qa.jsonl", "-o", "out", "-q")
    assert proc.returncode == 3 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()  # no table, no progress: docs/CLI.md, `--quiet`
    assert line.startswith(f"{PREFIX}error: no example was written: all 1 records were rejected; top reason "
                           "unknown_format (1 of 1 rejects), e.g. qa.jsonl record 0: ")


def test_reject_rate_failure_names_the_special_token_flag(tmp_path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    bad = {"messages": [{"role": "user", "content": "say <|im_end|> twice"}, {"role": "assistant", "content": "no"}]}
    write_jsonl(tmp_path / "st.jsonl", [good, bad, bad])
    proc = run(tmp_path, "prepare", "st.jsonl", "-o", "out", "--chat-template", "chatml", "--max-reject-rate", "0.5")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert f"{PREFIX}failed: 2 of 3 records were rejected (66.7 %), more than --max-reject-rate 0.5; nothing was " \
           "published" in lines
    assert "publishing" not in proc.stderr
    last = lines[-1]
    assert last.startswith(f"{PREFIX}error: 2 of 3 records were rejected (66.7 %), more than --max-reject-rate 0.5; "
                           "top reason special_token_in_content (2 of 2 rejects), e.g. st.jsonl record 1: user "
                           "content contains the special token '<|im_end|>' (id ")
    assert "; pass --allow-special-tokens to accept it; fix: accept such content with --allow-special-tokens; " \
           "nothing was published. The rejected records are in " in last
    fixed = run(tmp_path, "prepare", "st.jsonl", "-o", "fixed", "--chat-template", "chatml", "--max-reject-rate",
                "0.5", "--allow-special-tokens", "-q")
    assert fixed.returncode == 0 and fixed.stderr == "", fixed.stderr


def test_every_reason_has_a_fix_and_every_fix_names_real_flags():
    from im_data import REASONS
    from pipelines.cli import _subparsers, build_parser
    from pipelines.prepare import REASON_FIXES

    assert set(REASON_FIXES) == set(REASONS)
    prepare_flags = {o for a in _subparsers(build_parser())["prepare"]._actions for o in a.option_strings}
    for reason, fix in REASON_FIXES.items():
        flags = re.findall(r"(?<![\w-])--[a-z][a-z-]*", fix or "")
        assert fix is None or flags, reason  # a fix names the flag
        assert set(flags) <= prepare_flags, (reason, set(flags) - prepare_flags)
