"""Reliability round 2 (issue 20): what a reader, a kill, a symlink, a template or a record could still break, and
the promises of the publishing code that no test pinned down. The record-level cases (template kwargs, template
budgets, a BOM, a file name that is not UTF-8, an unhashable role) are in the corpus of make_corpus.py, which runs
under the in-process and the multi-process runners; these are the job-level ones."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from im_data import storage
from im_data.dataset import (MANIFEST_FILE, ManifestError, OutputReplaced, PreparedDataset, manifest_digest,
                             read_manifest)
from pipeline_helpers import read_output, run_cli

REPO = Path(__file__).resolve().parents[3]
GOOD = {"messages": [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}]}


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def good(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}


@pytest.fixture
def small(tmp_path) -> Path:
    return write_jsonl(tmp_path / "small.jsonl", [good(i) for i in range(5)])


@pytest.fixture
def large(tmp_path) -> Path:
    return write_jsonl(tmp_path / "large.jsonl", [good(i) for i in range(300)])


def one_line_error(capsys, *words) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], err[0]
    return err[0]


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".im-data-" in p.name)


# ---------------------------------------------------------------------------------- 1. a kill while publishing
KILL_AT = {
    # the run folder holds the complete new output and its manifest; DIR still holds the old one
    "before_exchange": "import pipelines.manifest as m; real = m._publish_local\n"
                       "def hook(*a, **k):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
                       "m._publish_local = hook\n",
    # DIR now holds the new output (and the run's owner file); the run folder holds the old output
    "after_exchange": "import pipelines.manifest as m; real = m._exchange\n"
                      "def hook(a, b):\n    ok = real(a, b)\n    os.kill(os.getpid(), signal.SIGKILL)\n"
                      "m._exchange = hook\n",
}


@pytest.mark.parametrize("point", sorted(KILL_AT))
def test_a_run_killed_while_publishing_leaves_nothing_behind(tmp_path, small, large, point):
    """SIGKILL at the two steps of publishing (a kill at an exact point, in a real subprocess): DIR holds the old or
    the new complete output, and the next run removes what the killed one left (issue 20, defect 1)."""
    out = tmp_path / "out"
    assert run_cli("prepare", small, "-o", out, "-q") == 0
    script = ("import os, signal, sys\n" + KILL_AT[point]
              + "from pipelines.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", script, "prepare", str(large), "-o", str(out), "-q", "--overwrite"],
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert len(leftovers(tmp_path)) == 1  # the killed run's folder (a full copy of an output)
    written = read_manifest(out).counts.written
    assert written == (5 if point == "before_exchange" else 300)
    assert read_output(out)["manifest"]["counts"]["written"] == written  # complete and consistent
    assert run_cli("prepare", small, "-o", out, "-q", "--overwrite") == 0
    assert leftovers(tmp_path) == [] and read_manifest(out).counts.written == 5
    assert sorted(os.listdir(out)) == ["README.md", MANIFEST_FILE, "rejects", "shards", "stats.json"]


# --------------------------------------------------------------------------- 2. readers: old or new, never a mix
def test_a_reader_detects_an_output_replaced_while_it_reads(tmp_path, small, large):
    out = tmp_path / "out"
    assert run_cli("prepare", small, "-o", out, "-q") == 0
    old = PreparedDataset.open(out)
    assert old.manifest_sha256 == manifest_digest(out) and not old.replaced()
    assert run_cli("prepare", large, "-o", out, "-q", "--overwrite") == 0  # replaced under the open reader
    assert old.replaced()
    with pytest.raises(OutputReplaced, match="replaced by another run"):
        old.read_table()  # the new shard under the old manifest: refused, not a mix
    with pytest.raises(OutputReplaced):
        list(old.iter_batches())
    with pytest.raises(OutputReplaced):
        old.verify()  # not "sha256 differs: modified or truncated"
    table = PreparedDataset.read(out, lambda p: p.read_table())  # opened again: the new output, whole
    assert table.num_rows == 300
    new = PreparedDataset.open(out)
    assert new.read_table().num_rows == 300 and not new.replaced()


def test_a_shard_that_disagrees_with_its_manifest_is_refused(tmp_path, small, large):
    """Not replaced, but a shard swapped by hand: a ManifestError naming the rows, and PreparedDataset.read does not
    retry it (retrying is for a replaced output only)."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("prepare", small, "-o", a, "-q") == 0 and run_cli("prepare", large, "-o", b, "-q") == 0
    shard = read_manifest(a).shards[0].path
    (a / shard).write_bytes((b / shard).read_bytes())
    calls = []
    with pytest.raises(ManifestError, match="holds 300 rows, the manifest says 5") as info:
        PreparedDataset.read(a, lambda p: calls.append(1) or p.read_table())
    assert not isinstance(info.value, OutputReplaced) and calls == [1]
    with pytest.raises(ManifestError, match="sha256 differs from the manifest; the shard was modified"):
        PreparedDataset.open(a).verify()  # checksums by default


def test_readers_see_old_or_new_while_overwrite_replaces_the_output(tmp_path, small, large):
    """A writer replaces the output again and again (5 and 300 rows) while readers read it by path; every read
    returns one complete output, and every manifest agrees with its shards."""
    out = tmp_path / "out"
    assert run_cli("prepare", small, "-o", out, "-q") == 0
    expected = {5: read_output(out)["table"].to_pylist()}
    assert run_cli("prepare", large, "-o", out, "-q", "--overwrite") == 0
    expected[300] = read_output(out)["table"].to_pylist()
    script = ("import sys\nfrom pipelines.cli import main\n"
              "for k in range(6):\n"
              f"    assert main(['prepare', sys.argv[1 + k % 2], '-o', {str(out)!r}, '-q', '--overwrite']) == 0\n")
    writer = subprocess.Popen([sys.executable, "-c", script, str(small), str(large)], cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    reads = set()
    try:
        while writer.poll() is None:
            try:
                table = PreparedDataset.read(out, lambda p: (p.manifest.counts.written, p.read_table()))
            except ManifestError as exc:  # between two renames of the fallback; never a mix
                assert "no manifest.json" in str(exc) or "replaced" in str(exc), exc
                continue
            written, rows = table
            assert rows.num_rows == written and rows.to_pylist() == expected[written]
            reads.add(written)
    finally:
        writer.wait(300)
    assert writer.returncode == 0 and reads  # at least one complete read while the writer ran


# ------------------------------------------------------------------------- 3. an input that shrinks or vanishes
def test_an_input_that_shrinks_or_vanishes_while_read_is_read_errors(tmp_path):
    from pipelines.read import expand_inputs, plan_splits, read_split

    path = write_jsonl(tmp_path / "in.jsonl", [good(i) for i in range(400)])
    splits = plan_splits(expand_inputs([str(path)]), 4096)  # planned on the whole file: several splits
    assert len(splits) > 3 and splits[0].end == splits[1].start
    lines = path.read_bytes().split(b"\n")
    keep = sum(len(x) + 1 for x in lines[:150]) + 10  # cut inside line 150
    os.truncate(path, keep)
    records = [r for s in splits for r in read_split(s)]
    good_rows = [r for r in records if isinstance(r.payload, bytes)]
    errors = [r for r in records if not isinstance(r.payload, bytes)]
    assert [r.index for r in good_rows] == list(range(151))  # the cut line 150 is read as it is (invalid JSON)
    assert good_rows[-1].payload == lines[150][:10]
    lost = [s for s in splits if s.end > keep]
    assert [r.index for r in errors] == [max(s.first_index, 151) for s in lost]
    assert all(r.payload.reason == "read_error" and "it shrank or was replaced" in r.payload.message for r in errors)
    # a single-split file is planned with its size too
    one = write_jsonl(tmp_path / "one.jsonl", [good(i) for i in range(3)])
    (split,) = plan_splits(expand_inputs([str(one)]), 1 << 20)
    assert (split.start, split.end) == (0, one.stat().st_size)
    os.truncate(one, 0)
    (rec,) = list(read_split(split))
    assert (rec.index, rec.payload.reason) == (0, "read_error")
    # deleted after planning: each planned part is one read_error at its first line
    os.remove(path)
    records = [r for s in splits for r in read_split(s)]
    assert [(r.index, r.payload.reason) for r in records] == [(None, "read_error")] + [
        (s.first_index, "read_error") for s in splits[1:]]


# --------------------------------------------------------------------------------------- 6 and 12. up front
@pytest.mark.parametrize("args, words", [
    (["--mode", "wit", "--prompt-weight", "1e39"], "at most 1e+06"),
    (["--mode", "wit", "--prompt-weight", "0.1", "--response-weight", "3.5e38"], "at most 1e+06"),
    (["--max-length", "99999999999999999999"], "--max-length must be between 2 and 2147483647"),
    (["--chat-template-kwargs", '{"messages": []}'], "may not set messages"),
    (["--chat-template-kwargs", '{"eos_token": "EVIL"}'], "may not set eos_token"),
    (["--chat-template-kwargs", '{"bos_token": "", "pad_token": ""}'], "may not set bos_token, pad_token"),
    (["--num-shards", "100000"], "--num-shards must be between 1 and 10000"),
], ids=["prompt-weight", "response-weight", "max-length", "kwargs-messages", "kwargs-eos", "kwargs-special",
        "num-shards"])
def test_impossible_settings_are_one_line_exit_2_up_front(tmp_path, small, capsys, args, words):
    out = tmp_path / "out"
    assert run_cli("prepare", small, "-o", out, *args) == 2
    one_line_error(capsys, words)
    assert not out.exists() and leftovers(tmp_path) == []


def test_the_largest_settings_still_work(tmp_path, small):
    out = tmp_path / "out"
    assert run_cli("prepare", small, "-o", out, "-q", "--mode", "wit", "--prompt-weight", "1e6",
                   "--max-length", "2147483647", "--num-shards", "3") == 0
    res = read_output(out)
    assert res["manifest"]["policy"]["user"] == 1e6 and res["manifest"]["counts"]["written"] == 5
    assert {w for r in res["rows"] for w in r["loss_weights"]} == {0.0, 1e6, 1.0}


# --------------------------------------------------------------------------------------------- 8. symlinks
def test_a_dangling_symlink_output_is_refused_up_front(tmp_path, small, capsys):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    assert run_cli("prepare", small, "-o", tmp_path / "link") == 2
    one_line_error(capsys, "link", "a symbolic link to", "which does not exist")
    assert not (tmp_path / "nowhere").exists() and leftovers(tmp_path) == []


def test_an_output_that_is_a_file_is_refused(tmp_path, small, capsys):
    (tmp_path / "out").write_text("a file")
    assert run_cli("prepare", small, "-o", tmp_path / "out", "--overwrite") == 2
    one_line_error(capsys, "exists and is not a directory")
    assert (tmp_path / "out").read_text() == "a file"


def test_a_symlinked_output_is_replaced_at_its_target(tmp_path, small, large):
    real = tmp_path / "real"
    real.mkdir()  # an empty folder, reached through a link
    (tmp_path / "link").symlink_to(real)
    assert run_cli("prepare", small, "-o", tmp_path / "link", "-q") == 0
    assert run_cli("prepare", large, "-o", tmp_path / "link", "-q", "--overwrite") == 0
    assert (tmp_path / "link").is_symlink() and os.readlink(tmp_path / "link") == str(real)
    assert read_manifest(real).counts.written == 300 and leftovers(tmp_path) == []


def test_an_output_holding_a_symlink_is_never_overwritten(tmp_path, small, capsys):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    assert run_cli("prepare", small, "-o", out, "-q") == 0
    os.rename(out / "shards", elsewhere)
    (out / "shards").symlink_to(elsewhere)  # what the manifest lists is now reached through a link
    before = sorted(os.listdir(elsewhere))
    capsys.readouterr()
    assert run_cli("prepare", small, "-o", out, "--overwrite") == 2
    one_line_error(capsys, "holds symbolic links (shards)")
    assert sorted(os.listdir(elsewhere)) == before and before


def test_old_files_behind_a_symlink_are_not_deleted_when_publishing(tmp_path, small):
    """Defence in depth: the deletion of an old output never goes through a symlinked folder."""
    from pipelines.manifest import _delete_owned

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    assert run_cli("prepare", small, "-o", out, "-q") == 0
    os.rename(out / "shards", elsewhere)
    (out / "shards").symlink_to(elsewhere)
    shard_names = sorted(os.listdir(elsewhere))
    _delete_owned(str(out), read_manifest(out))
    assert shard_names and sorted(os.listdir(elsewhere)) == shard_names  # nothing deleted through the link
    assert os.listdir(out) == ["shards"] and (out / "shards").is_symlink()  # everything else of it went


# ---------------------------------------------------------------------------------------------- 9. long names
def test_a_long_output_name_works_and_a_too_long_one_is_refused(tmp_path, small, capsys):
    out = tmp_path / ("n" * 240)
    assert run_cli("prepare", small, "-o", out, "-q") == 0
    assert run_cli("prepare", small, "-o", out, "-q", "--overwrite") == 0
    assert read_manifest(out).counts.written == 5 and leftovers(tmp_path) == []
    from pipelines.manifest import make_work_dir, remove_stale_runs, run_prefix

    assert len(run_prefix(str(out)).encode()) + 25 <= 255 and run_prefix(str(out)) != "." + "n" * 240
    work = make_work_dir(str(out))  # this process's: kept; named within the limit
    assert len(os.path.basename(work).encode()) <= 255 and remove_stale_runs(str(out)) == []
    capsys.readouterr()
    assert run_cli("prepare", small, "-o", tmp_path / ("m" * 256)) == 2
    one_line_error(capsys, "longer than 255 bytes")


# ------------------------------------------------------------------------------------- 12. failed run folders
def test_failed_runs_keep_their_dead_letters_but_do_not_accumulate(tmp_path, small, capsys):
    """After an exit-3 run in another process, the next run keeps its dead letters; only the newest
    KEEP_FAILED_RUNS failed run folders are kept."""
    from pipelines.manifest import KEEP_FAILED_RUNS

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"nope": 1}, good(1)])
    out = tmp_path / "out"
    args = ["prepare", str(bad), "-o", str(out), "-q", "--max-reject-rate", "0.1"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    first = subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=REPO, env=env, capture_output=True)
    assert first.returncode == 3
    (kept,) = leftovers(tmp_path)
    assert (tmp_path / kept / "rejects" / "unknown_format.jsonl").is_file()
    assert run_cli("prepare", small, "-o", tmp_path / "other", "-q") == 0
    assert run_cli(*args) == 3  # the next run on the same output: the dead process's dead letters stay
    assert kept in leftovers(tmp_path) and len(leftovers(tmp_path)) == 2
    for _ in range(KEEP_FAILED_RUNS):
        time.sleep(0.01)
        assert run_cli(*args) == 3
    folders = leftovers(tmp_path)
    assert len(folders) == KEEP_FAILED_RUNS + 1  # the newest KEEP_FAILED_RUNS, and this run's
    assert kept not in folders  # the oldest went


def test_an_empty_hub_name_is_refused():
    from pipelines.read import InputError, expand_inputs

    for spec in ("hf:", "hub::train"):
        with pytest.raises(InputError, match="empty hub dataset name"):
            expand_inputs([spec])


def test_a_glob_that_matches_unreadable_kinds_says_so(tmp_path, caplog):
    import logging

    from pipelines.read import expand_inputs

    write_jsonl(tmp_path / "a.jsonl", [good(0)])
    (tmp_path / "b.jsonl.zst").write_bytes(b"(\xb5/\xfd")
    (tmp_path / "c.jsonl.bz2").write_bytes(b"BZh9")
    with caplog.at_level(logging.WARNING, logger="im_data.prepare"):
        sources = expand_inputs([str(tmp_path / "*.jsonl*")])
    assert [os.path.basename(s.path) for s in sources] == ["a.jsonl"]
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg.startswith("skipped 2 file(s)") and "compressed other than gzip" in msg
    assert msg.endswith(f"{tmp_path}/b.jsonl.zst, {tmp_path}/c.jsonl.bz2")


# --------------------------------------------------------------------------------- promises: the output folder
def test_a_manifest_listing_a_path_outside_is_refused_and_nothing_outside_is_deleted(tmp_path, small, capsys):
    out = tmp_path / "out"
    assert run_cli("prepare", small, "-o", out, "-q") == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    for key, bad in (("files", "../victim.txt"), ("files", "/etc/passwd"), ("files", "shards/../../victim.txt")):
        doc = dict(manifest, **{key: manifest[key] + [bad]})
        (out / MANIFEST_FILE).write_text(json.dumps(doc))
        with pytest.raises(ManifestError, match="must be relative to the directory and normalised"):
            read_manifest(out)
        capsys.readouterr()
        assert run_cli("prepare", small, "-o", out, "--overwrite") == 2
        one_line_error(capsys, "not an im-data output")
        assert victim.read_text() == "keep me"
    shards = [dict(manifest["shards"][0], path="../victim.txt")]
    (out / MANIFEST_FILE).write_text(json.dumps(dict(manifest, shards=shards)))
    with pytest.raises(ManifestError):
        read_manifest(out)


def test_an_unreadable_manifest_is_a_manifest_error(tmp_path):
    (tmp_path / "out" / MANIFEST_FILE).mkdir(parents=True)  # a folder where the manifest should be
    with pytest.raises(ManifestError, match="unreadable manifest: .*Is a directory"):
        read_manifest(tmp_path / "out")


def test_an_input_inside_the_output_is_refused(tmp_path, small, capsys):
    out = tmp_path / "out"
    assert run_cli("prepare", small, "-o", out, "-q") == 0
    (out / "sub").mkdir()
    inner = write_jsonl(out / "sub" / "in.jsonl", [good(0)])
    capsys.readouterr()
    assert run_cli("prepare", inner, "-o", out, "--overwrite") == 2
    one_line_error(capsys, "is inside the output")
    (tmp_path / "alias").symlink_to(out)  # the same, through a symbolic link to the output
    assert run_cli("prepare", tmp_path / "alias" / "sub" / "in.jsonl", "-o", out, "--overwrite") == 2
    one_line_error(capsys, "is inside the output")
    assert inner.is_file()


class _PublishHook:
    """A progress display (the ``progress`` argument of ``prepare``) that acts when the run starts publishing."""

    mode = "off"

    def __init__(self, action):
        self.action = action

    def phase(self, text: str) -> None:
        if text.startswith("publishing to "):
            self.action(text[len("publishing to "):])


def _options(inputs, out, **kw):
    from pipelines.options import PrepareOptions

    return PrepareOptions(inputs=tuple(str(i) for i in inputs), output=str(out), **kw)


def test_a_file_that_appears_in_the_output_while_publishing_survives(tmp_path, small, large):
    from pipelines.options import UsageError
    from pipelines.prepare import prepare

    out = tmp_path / "out"
    assert run_cli("prepare", small, "-o", out, "-q") == 0
    before = read_output(out)["table"].to_pylist()
    hook = _PublishHook(lambda where: Path(where, "notes.txt").write_text("mine"))
    with pytest.raises(UsageError, match="changed during the run"):
        prepare(_options([large], out, overwrite=True), progress=hook)
    assert (out / "notes.txt").read_text() == "mine" and read_output(out)["table"].to_pylist() == before
    assert leftovers(tmp_path) == []
    empty = tmp_path / "empty"  # was empty when the run started
    empty.mkdir()
    with pytest.raises(UsageError, match="changed during the run"):
        prepare(_options([large], empty), progress=_PublishHook(lambda w: Path(w, "n.txt").write_text("x")))
    assert os.listdir(empty) == ["n.txt"] and leftovers(tmp_path) == []


def test_an_error_between_the_replacement_steps_leaves_the_old_output(tmp_path, small, large, monkeypatch):
    """Where the filesystem cannot exchange two folders, publishing takes two renames; when the second fails, the
    old output goes back in place, complete."""
    import pipelines.manifest as manifest

    out = tmp_path / "out"
    assert run_cli("prepare", small, "-o", out, "-q") == 0
    before = read_output(out)
    real_rename, calls = os.rename, []

    def rename(a, b):
        calls.append((os.path.basename(a), os.path.basename(b)))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_rename(a, b)

    monkeypatch.setattr(manifest, "_exchange", lambda a, b: False)  # a filesystem without RENAME_EXCHANGE
    monkeypatch.setattr(manifest.os, "rename", rename)
    assert run_cli("prepare", large, "-o", out, "-q", "--overwrite") == 1
    assert len(calls) == 3 and calls[2][1] == "out"  # aside, the failed move, and back
    after = read_output(out)
    assert after["table"].to_pylist() == before["table"].to_pylist() and after["manifest"] == before["manifest"]
    monkeypatch.setattr(manifest.os, "rename", real_rename)
    assert run_cli("prepare", large, "-o", out, "-q", "--overwrite") == 0  # the fallback path, whole
    assert read_manifest(out).counts.written == 300 and leftovers(tmp_path) == []


def test_build_manifest_refuses_inconsistent_counts():
    from pipelines.manifest import build_manifest

    stats = {"count": 2, "truncated": 0, "tokens_per_role": {}, "weight_mass_per_role": {}, "dataset_ratio": None}
    meta = {"tokenizer": {"fingerprint": "f"}, "chat_template": {}, "policy": {}, "policy_fingerprint": "p",
            "role_codes": {}, "max_length": None, "truncation": "keep_start"}
    summary = {"read": 3, "stats": stats, "shards": [{"path": "shards/part-00000-of-00001.arrow", "num_rows": 2,
                                                       "sha256": "x"}],
               "rejects": [{"reason": "invalid_json", "path": "rejects/invalid_json.jsonl", "count": 1}]}
    kw = dict(tokenizer_name=None, fmt="arrow", inputs=["in"], package_version="0")
    assert build_manifest(summary, meta, **kw).counts.to_dict()["read"] == 3
    with pytest.raises(RuntimeError, match="read 4 != written 2 \\+ rejected 1"):
        build_manifest(dict(summary, read=4), meta, **kw)
    with pytest.raises(RuntimeError, match="statistics cover 1 examples but 2 rows"):
        build_manifest(dict(summary, stats=dict(stats, count=1)), meta, **kw)


def test_reject_ids_and_the_reject_rate_boundary(tmp_path, capsys):
    records = [good(0), good(1), good(2), {"nope": 1}]  # 1 of 4 rejected: exactly 0.25
    src = write_jsonl(tmp_path / "in.jsonl", records)
    assert run_cli("prepare", src, "-o", tmp_path / "at", "-q", "--max-reject-rate", "0.25") == 0
    (rej,) = read_output(tmp_path / "at")["rejects"]
    assert rej["example_id"] == hashlib.sha1(f"{src}|3".encode()).hexdigest()[:16]
    assert run_cli("prepare", src, "-o", tmp_path / "over", "-q", "--max-reject-rate", "0.2499") == 3
    assert not (tmp_path / "over").exists()


# ------------------------------------------------------------------------------------- promises: the records
@pytest.mark.parametrize("record, reason", [
    ({"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": 5}}]},
     "unknown_format"),
    ({"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": [1, 2]}}]},
     "unknown_format"),
    ({"role": "user", "content": "x", "name": 7}, "not_a_string"),
    ({"role": "tool", "content": "x", "tool_call_id": ["a"]}, "not_a_string"),
    ({"role": ["user"], "content": "x"}, "bad_role"),
], ids=["arguments-number", "arguments-list", "name-number", "tool-call-id-list", "role-list"])
def test_message_fields_of_the_wrong_type_are_rejected(record, reason):
    from im_data import RecordError
    from im_data.messages import build_conversation

    with pytest.raises(RecordError) as info:
        build_conversation([{"role": "user", "content": "q"}, record])
    assert info.value.reason == reason


def test_an_empty_tool_call_list_is_dropped_as_apply_chat_template_drops_it():
    from im_data.messages import build_conversation

    conv = build_conversation([{"role": "user", "content": "q"},
                               {"role": "assistant", "content": "a", "tool_calls": []}])
    assert conv.messages[1] == {"role": "assistant", "content": "a"}


def test_a_template_that_renders_call_names_but_not_arguments_is_unrendered_field(tmp_path):
    from im_data import Encoder, RecordError, load_tokenizer

    src = ("{%- for m in messages -%}<|im_start|>{{ m.role }}\n{{ m.content or '' }}"
           "{%- for c in m.tool_calls or [] -%}<tool_call>{{ c.function.name }}</tool_call>{%- endfor -%}"
           "<|im_end|>\n{%- endfor -%}")
    (tmp_path / "t.jinja").write_text(src)
    enc = Encoder(load_tokenizer(None), chat_template=str(tmp_path / "t.jinja"))
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"function": {"name": "lookup", "arguments": {"q": "x"}}}]}
    with pytest.raises(RecordError) as info:
        enc.encode({"messages": [{"role": "user", "content": "q"}, call, {"role": "tool", "content": "r"},
                                 {"role": "assistant", "content": "done"}]})
    assert info.value.reason == "unrendered_field" and "arguments" in info.value.message


def test_weight_mass_share_counts_tool_tokens():
    from im_data import Encoder, LengthStats, load_tokenizer

    enc = Encoder(load_tokenizer(None), chat_template="chatml_tools")
    ex = enc.encode({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "calling"},
                                  {"role": "tool", "content": "result text"},
                                  {"role": "assistant", "content": "done"}]})
    stats = LengthStats()
    stats.add_examples([ex])
    share = stats.weight_mass_share()["im"]
    d = stats.to_dict()
    tool = d["weight_mass_per_role"]["tool"]
    assert tool > 0 and share["tool"] == pytest.approx(tool / sum(d["weight_mass_per_role"].values()))


# -------------------------------------------------------------------------------------------- template budget
@pytest.mark.parametrize("source, reason", [
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", "template_timeout"),
    ("{{ 'x y ' * 5000000 }}", "too_large"),
    ("{{ (range(99999)|list) * 99999 }}", "too_large"),
    ("{{ 'x'|center(1000000000) }}", "too_large"),
    ("{{ '%999999999s'|format('x') }}", "too_large"),
    ("{{ '%.999999999f' % 1.0 }}", "too_large"),
    ("{{ 10 ** 100000000 }}", "too_large"),
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "too_large"),
    ("{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ f('x', 40) }}", "too_large"),
    ("{% for i in range(99999) %}{{ 'abcdefghijklmnopqrstuvwxyz' }}{% endfor %}", "too_large"),
], ids=["loops", "str-times", "list-times", "center", "format-filter", "percent", "power", "namespace", "macro",
        "output"])
def test_a_template_renders_under_a_time_and_size_budget(monkeypatch, source, reason):
    from im_data import RecordError
    from im_data.templates import RENDER_MIN_CHARS, ChatTemplate

    monkeypatch.setenv("IM_DATA_TEMPLATE_TIMEOUT_S", "0.5")
    start = time.monotonic()
    with pytest.raises(RecordError) as info:
        ChatTemplate("bomb", source).render([{"role": "user", "content": "hi"}], {})
    assert info.value.reason == reason and time.monotonic() - start < 30
    if reason == "too_large" and "**" not in source:
        assert f"{RENDER_MIN_CHARS:,}" in info.value.message


def test_the_budget_grows_with_the_data_and_leaves_normal_renders_alone(monkeypatch):
    from im_data.templates import RENDER_DATA_FACTOR, RENDER_MIN_CHARS, ChatTemplate, render_budget_chars

    big = "y" * (RENDER_MIN_CHARS // 2)
    msgs = [{"role": "user", "content": big}, {"role": "assistant", "content": big}]
    assert render_budget_chars(msgs) == RENDER_DATA_FACTOR * sum(len(k) + len(v) for m in msgs for k, v in m.items())
    assert render_budget_chars([{"role": "user", "content": "q"}]) == RENDER_MIN_CHARS
    text = ChatTemplate.builtin("chatml").render(msgs, {})
    assert len(text) > RENDER_MIN_CHARS and text.count("y") == 2 * len(big)
    assert ChatTemplate("ok", "{{ '%5s|%.2f|%%' % ('x', 1.0) }}{{ 'ab' * 3 }}{{ 'x'|center(5) }}").render(
        [{"role": "user", "content": "q"}], {}) == "    x|1.00|%ababab  x  "
    monkeypatch.setenv("IM_DATA_TEMPLATE_TIMEOUT_S", "0.2")
    for _ in range(3):  # a timed-out render leaves nothing pending for the next ones
        with pytest.raises(Exception):
            ChatTemplate("slow", "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
                         ).render([], {})
        assert ChatTemplate.builtin("chatml").render([{"role": "user", "content": "q"}], {}).startswith("<|im_")
        time.sleep(0.3)


# ------------------------------------------------------------------------------------------------ 11. a full disk
def test_a_full_disk_is_one_line_and_the_old_output_stays(tmp_path, small):
    """ENOSPC during the run (a 1 MiB tmpfs; skipped where mounting one is not allowed): one error line, no
    traceback, the old output intact and no run folder left."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        big = write_jsonl(tmp_path / "big.jsonl", [{"messages": [{"role": "user", "content": f"{i} " + "w " * 300},
                                                                 {"role": "assistant", "content": "ok"}]}
                                                   for i in range(3000)])
        out = mnt / "out"
        assert run_cli("prepare", small, "-o", out, "-q") == 0
        before = read_output(out)
        proc = subprocess.run([sys.executable, "-m", "pipelines", "prepare", str(big), "-o", str(out), "-q",
                               "--overwrite"], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                              capture_output=True, timeout=300)
        lines = proc.stderr.decode().strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and "No space left on device" in lines[0], lines
        after = read_output(out)
        assert after["manifest"] == before["manifest"] and after["rows"] == before["rows"]
        assert leftovers(mnt) == []
    finally:
        subprocess.run(["umount", "--lazy", str(mnt)], capture_output=True)  # shards may still be mapped


def test_a_byte_order_mark_starts_no_record_and_still_counts_for_shrinking(tmp_path):
    from pipelines.read import expand_inputs, plan_splits, read_split

    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(good(0)).encode() + b"\n" + json.dumps(good(1)).encode() + b"\n")
    (split,) = plan_splits(expand_inputs([str(path)]), 1 << 20)
    assert [r.payload for r in read_split(split)] == [json.dumps(good(0)).encode(), json.dumps(good(1)).encode()]
    os.truncate(path, path.stat().st_size - 1)  # one byte gone after planning: the last newline
    records = list(read_split(split))
    assert [r.index for r in records] == [0, 1, 2] and records[2].payload.reason == "read_error"
    assert "ended 1 bytes early" in records[2].payload.message


def test_s3_requests_are_bounded_and_other_urls_take_no_options():
    opts = storage.storage_options("s3://bucket/key")["config_kwargs"]
    assert (opts["connect_timeout"], opts["read_timeout"], opts["retries"]["max_attempts"]) == (
        storage.S3_CONNECT_TIMEOUT_S, storage.S3_READ_TIMEOUT_S, storage.S3_ATTEMPTS)
    assert storage.storage_options("memory://bucket/key") == {} == storage.storage_options("/tmp/x")
    storage.write_bytes_atomic("memory://im-data-reliab/a.txt", b"whole")  # another fsspec filesystem: as is
    assert storage.read_bytes("memory://im-data-reliab/a.txt") == b"whole"
    storage.remove_tree("memory://im-data-reliab")
    assert not storage.exists("memory://im-data-reliab/a.txt")
