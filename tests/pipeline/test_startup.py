"""Start-up: ``im-data --help`` and ``inspect`` of one JSONL example import neither Beam nor torch.

Checked on the modules a fresh interpreter has loaded afterwards (timings are for benchmarks/startup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("apache_beam", "torch")

DRIVER = """
import contextlib, io, json, sys
from pipelines.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[2:])
    except SystemExit as exc:
        code = exc.code
json.dump({"code": code, "out": out.getvalue(), "heavy": [m for m in %r if m in sys.modules]}, open(sys.argv[1], "w"))
""" % (HEAVY,)


def run_fresh(tmp_path, *argv) -> dict:
    result = tmp_path / "result.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(result), *map(str, argv)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(result.read_text())


@pytest.mark.parametrize("argv", [["--help"], ["inspect", "--help"], ["prepare", "--help"], ["--version"]])
def test_help_imports_no_beam_or_torch(tmp_path, argv):
    res = run_fresh(tmp_path, *argv)
    assert res["code"] == 0 and "im-data" in res["out"]
    assert res["heavy"] == []


def test_inspect_of_one_jsonl_example_imports_no_beam_or_torch(tmp_path):
    record = {"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]}
    (tmp_path / "one.jsonl").write_text(json.dumps(record) + "\n")
    res = run_fresh(tmp_path, "inspect", tmp_path / "one.jsonl", "--tokens")
    assert res["code"] == 0
    assert " assistant " in res["out"] and "'</s>'" in res["out"]
    assert res["heavy"] == []
