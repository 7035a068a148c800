"""The live display gives the terminal back on every exit path: `im-data prepare` runs on a pseudo-terminal (its
stdin, stdout and stderr), and whatever ends the run (SIGINT, an error, exit status 3), the cursor is shown again
after the display hid it and the output ends with a whole line, so the shell prompt starts on a line of its own.

No timing: the run is disturbed (a signal, a file dropped into the output folder) when the display has started,
i.e. when the hide-cursor sequence has been read from the terminal."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HIDE, SHOW = b"\x1b[?25l", b"\x1b[?25h"


def run_on_pty(cwd: Path, *argv, on_display=None, timeout: float = 300) -> tuple[int, bytes]:
    """``(exit status, bytes written to the terminal)`` of ``im-data ARGV`` on a fresh pseudo-terminal;
    ``on_display(proc)`` is called once the display has hidden the cursor."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TERM="xterm-256color")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *map(str, argv)], cwd=cwd, env=env,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out, fired = b"", on_display is None
    try:
        while True:
            if not select.select([master], [], [], timeout)[0]:
                raise AssertionError(f"no output for {timeout} s: {out[-2000:]!r}")
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            out += data
            if not fired and HIDE in out:
                fired = True
                on_display(proc)
        return proc.wait(timeout=60), out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def check_terminal_restored(out: bytes, last_line: str) -> None:
    assert HIDE in out, f"the live display never started: {out[-2000:]!r}"
    assert out.rfind(SHOW) > out.rfind(HIDE), f"the cursor is left hidden: {out[-2000:]!r}"
    assert out.endswith(b"\r\n"), f"the last line has no newline: {out[-500:]!r}"
    lines = out.decode("utf-8", "replace").split("\r\n")
    last = re.sub(r"\x1b\[\?25[hl]", "", lines[-2])  # the cursor's visibility is no text on the line
    assert last == last_line, lines[-6:]  # whole: no progress line drawn into it


def big_input(path: Path, copies: int) -> Path:
    sample = (REPO / "im_data" / "assets" / "sample.jsonl").read_text(encoding="utf-8")
    path.write_text(sample * copies, encoding="utf-8")
    return path


def test_sigint_shows_the_cursor_and_ends_the_line(tmp_path):
    data = big_input(tmp_path / "big.jsonl", 200)  # 16,000 records: seconds of encoding
    code, out = run_on_pty(tmp_path, "prepare", data, "-o", tmp_path / "out",
                           on_display=lambda proc: proc.send_signal(signal.SIGINT))
    assert code == 130, out[-2000:]
    check_terminal_restored(out, "im-data prepare: interrupted by SIGINT; the temporary run folder was removed, "
                                 "nothing was published")
    assert not (tmp_path / "out").exists()
    # the display stopped before the closing line: nothing drawn after it
    assert out.rfind(SHOW) < out.rfind(b"im-data prepare: interrupted")


def test_an_error_shows_the_cursor(tmp_path):
    """The output folder changes during the run (a file is dropped into it): publishing refuses, exit 2."""
    data = big_input(tmp_path / "big.jsonl", 50)
    out_dir = tmp_path / "out"

    def meddle(_proc):
        out_dir.mkdir()
        (out_dir / "notes.txt").write_text("mine")

    code, out = run_on_pty(tmp_path, "prepare", data, "-o", out_dir, on_display=meddle)
    assert code == 2, out[-2000:]
    check_terminal_restored(out, f"im-data prepare: error: {out_dir}: changed during the run (it now holds other "
                                 "files); nothing was published and nothing there was touched")


def test_exit_3_shows_the_cursor_and_says_what_failed_first(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}", "answer": f"a{i}"}) + "\n" for i in range(3)))
    code, out = run_on_pty(tmp_path, "prepare", data, "-o", tmp_path / "out")
    assert code == 3, out[-2000:]
    text = out.decode("utf-8", "replace")
    last = text.split("\r\n")[-2]
    assert last.startswith("im-data prepare: error: no example was written: all 3 records were rejected; top reason "
                           "unknown_format (3 of 3 rejects)")
    check_terminal_restored(out, last)
    failed = text.index("im-data prepare: failed: no example was written: all 3 records were rejected; nothing was "
                        "published\r\n")
    assert failed < text.index("im-data prepare →")  # before the summary table
    assert "publishing" not in text


def test_audit_ctrl_c_shows_the_cursor(tmp_path):
    """audit has no signal handler of its own: Ctrl-C is a KeyboardInterrupt, possibly in the middle of the
    display's start; the display is stopped all the same."""
    data = big_input(tmp_path / "big.jsonl", 200)
    code, out = run_on_pty(tmp_path, "audit", data, on_display=lambda proc: proc.send_signal(signal.SIGINT))
    assert code == 130, out[-2000:]
    check_terminal_restored(out, "im-data audit: interrupted")
