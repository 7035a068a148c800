"""Fixtures of the pipeline tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import pipeline_helpers` in any import mode

from pipeline_helpers import DATA  # noqa: E402


@pytest.fixture
def type_checked_pipeline():
    """Makes ``TestPipeline``s with Beam's pipeline and runtime type checks on, as every pipeline of the suite
    runs."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.test_pipeline import TestPipeline

    from pipelines.runner import type_check_flags

    return lambda: TestPipeline(options=PipelineOptions(type_check_flags(set())))


@pytest.fixture(scope="session")
def bad_expected() -> dict[int, str]:
    return {int(k): v for k, v in json.loads((DATA / "bad.expected.json").read_text()).items()}


def _spawn(args, env, log):
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="session")
def scheduler_address(tmp_path_factory, s3_server):
    """A real `dask scheduler` and two `dask worker` processes on loopback (torn down at the end). The workers
    inherit the S3 server's endpoint and credentials, so they can read and write ``s3://`` URLs."""
    repo = Path(__file__).resolve().parents[2]
    tmp = tmp_path_factory.mktemp("dask")
    sched_file = tmp / "scheduler.json"
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               DASK_DISTRIBUTED__WORKER__DAEMON="False")
    procs = []
    try:
        with open(tmp / "scheduler.log", "wb") as log:
            procs.append(_spawn([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                 "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)], env, log))
        deadline = time.monotonic() + 60
        while not sched_file.exists():
            assert time.monotonic() < deadline and procs[0].poll() is None, (tmp / "scheduler.log").read_text()
            time.sleep(0.1)
        time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        with open(tmp / "worker.log", "wb") as log:
            procs.append(_spawn([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
                                 "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"], env, log))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
