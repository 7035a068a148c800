"""SIGTERM/SIGINT stop `im-data prepare` cleanly: temporary run folder removed, one line, exit 143/130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    path = tmp_path_factory.mktemp("signals") / "in.jsonl"
    rec = {"messages": [{"role": "user", "content": "hello " * 40}, {"role": "assistant", "content": "ok " * 40}]}
    path.write_text((json.dumps(rec) + "\n") * 60_000)
    return path


MULTI = ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]


@pytest.mark.parametrize("sig, status, extra", [(signal.SIGTERM, 143, []), (signal.SIGINT, 130, []),
                                                (signal.SIGTERM, 143, MULTI)], ids=["term", "int", "term-multi"])
def test_signal_stops_the_run_cleanly(tmp_path, big_input, sig, status, extra):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "prepare", str(big_input), "-o", str(out), "-q",
                             *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not [p for p in tmp_path.iterdir() if "im-data-tmp" in p.name]:
            assert proc.poll() is None and time.monotonic() < deadline, "the run never started its work dir"
            time.sleep(0.02)
        time.sleep(0.5)
        assert proc.poll() is None, "the run finished before the signal: make the input bigger"
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = err.decode().strip().splitlines()
    assert proc.returncode == status
    assert lines == [f"im-data prepare: interrupted by {sig.name}; the temporary run folder was removed, nothing "
                     "was published"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no temporary folder
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]  # workers stopped
