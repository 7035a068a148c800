"""Reliability round 2 (issue 20) on object storage, against a real S3-compatible server (moto in server mode): an
unusable output up front, a server that dies during the run, SIGTERM, a failed copy while publishing, a tampered
shard."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from im_data import storage
from im_data.dataset import MANIFEST_FILE, ManifestError, PreparedDataset, is_prepared_dir, read_manifest
from pipeline_helpers import run_cli

REPO = Path(__file__).resolve().parents[3]
BUCKET = "s3://im-data"


def _records(n: int, path: Path) -> Path:
    rec = {"messages": [{"role": "user", "content": "hello " * 40}, {"role": "assistant", "content": "ok " * 40}]}
    path.write_text((json.dumps(rec) + "\n") * n)
    return path


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    return _records(60_000, tmp_path_factory.mktemp("s3big") / "in.jsonl")


def _run_folders(prefix: str) -> list[str]:
    try:  # a prefix is there only while objects are: it may vanish between two calls
        return [k for k in storage.list_dir(prefix) if "im-data-tmp" in k]
    except FileNotFoundError:
        return []


def _spawn(args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "pipelines", *map(str, args)], cwd=REPO,
                            env=dict(env or os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, **kw)


def _wait_for_run_folder(proc, prefix: str, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not _run_folders(prefix):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.1)


def test_an_unusable_s3_output_is_one_line_exit_2(s3_server, tmp_path, capsys):
    src = _records(3, tmp_path / "in.jsonl")
    assert run_cli("prepare", src, "-o", "s3://no-such-bucket/out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s3://no-such-bucket/out: cannot be used as the output" in err[0]
    with socket.socket() as s:  # nothing listens there
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = dict(os.environ, AWS_ENDPOINT_URL=dead)
    proc = _spawn(["prepare", src, "-o", f"{BUCKET}/x", "-q"], env=env)
    out, err = proc.communicate(timeout=300)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "cannot be used as the output" in lines[0], lines


def test_an_s3_server_that_dies_during_the_run_is_a_short_bounded_error(s3_server, big_input, tmp_path):
    """Its own server, killed once the run folder exists: exit 1 with one error line (and a warning about the run
    folder it could not remove), no traceback, in bounded time."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        made = subprocess.run([sys.executable, "-c", "import s3fs; s3fs.S3FileSystem().mkdir('dies')"], env=env)
        assert made.returncode == 0
        proc = _spawn(["prepare", big_input, "-o", "s3://dies/out", "-q"], env=env)
        time.sleep(4)  # the run has checked the output and is reading and writing (60,000 records take longer)
        assert proc.poll() is None, proc.stderr.read().decode()
        started = time.monotonic()
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(30)
        _, err = proc.communicate(timeout=400)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
    lines = err.decode().strip().splitlines()
    assert proc.returncode in (1, 2), lines
    assert "Traceback" not in err.decode() and 1 <= len(lines) <= 2, lines
    assert lines[-1].startswith("im-data prepare: error: ")
    assert time.monotonic() - started < 300


def test_sigterm_removes_the_s3_run_folder_and_the_progress_folder(s3_server, big_input, tmp_path):
    prefix = f"{BUCKET}/sigterm"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = _spawn(["prepare", big_input, "-o", f"{prefix}/out"], env=dict(os.environ, TMPDIR=str(tmp)))
    try:
        _wait_for_run_folder(proc, prefix)
        deadline = time.monotonic() + 60
        while not [p for p in tmp.iterdir() if p.name.startswith("im-data-progress-")]:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 143
    assert err.decode().strip().splitlines()[-1] == ("im-data prepare: interrupted by SIGTERM; the temporary run "
                                                     "folder was removed, nothing was published")
    assert _run_folders(prefix) == [] and not is_prepared_dir(f"{prefix}/out")
    assert [p.name for p in tmp.iterdir() if p.name.startswith("im-data-progress-")] == []


def test_a_failed_copy_while_publishing_to_s3_leaves_no_manifest(s3_server, tmp_path):
    from pipelines.options import PrepareOptions
    from pipelines.prepare import prepare

    src = _records(20, tmp_path / "in.jsonl")
    url = f"{BUCKET}/failcopy/out"
    assert run_cli("prepare", src, "-o", url, "-q") == 0
    assert is_prepared_dir(url)

    class Hook:  # a progress display that deletes the run folder's shard when publishing starts
        mode = "off"

        def phase(self, text):
            if text.startswith("publishing to "):
                (run,) = _run_folders(f"{BUCKET}/failcopy")
                storage.remove(f"{BUCKET}/failcopy/{run}/shards/part-00000-of-00001.arrow")

    with pytest.raises(Exception):
        prepare(PrepareOptions(inputs=(str(src),), output=url, overwrite=True), progress=Hook())
    assert not storage.exists(f"{url}/{MANIFEST_FILE}") and not is_prepared_dir(url)
    assert _run_folders(f"{BUCKET}/failcopy") == []


def test_a_tampered_shard_read_from_s3_fails_its_sha256(s3_server, tmp_path):
    src = _records(20, tmp_path / "in.jsonl")
    url = f"{BUCKET}/tamper/out"
    assert run_cli("prepare", src, "-o", url, "-q") == 0
    shard = read_manifest(url).shards[0]
    data = bytearray(storage.read_bytes(f"{url}/{shard.path}"))
    data[-20] ^= 0xFF
    storage.write_bytes_atomic(f"{url}/{shard.path}", bytes(data))
    prepared = PreparedDataset.open(url)
    with pytest.raises(ManifestError, match="sha256 differs from the manifest"):
        prepared.local_shard_files(cache_dir=tmp_path / "cache")
    with pytest.raises(ManifestError, match="sha256 differs from the manifest"):
        prepared.verify(checksums=True)
    assert not list((tmp_path / "cache").iterdir())  # nothing half-checked left in the cache
