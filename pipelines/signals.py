"""SIGTERM and SIGINT stop a run cleanly: the temporary run folder is removed, the command prints one line and
exits ``128 + signal`` (143 for SIGTERM, what ``timeout``, Slurm and Kubernetes send; 130 for SIGINT, Ctrl-C),
never a traceback.

The handler stops the run's worker processes, does the clean-up itself and ends the process with ``os._exit``: an exception raised from a signal
handler would surface inside whatever runs in the main thread, and Beam turns exceptions inside a DoFn into
retried bundle failures (and logs them), so it cannot be relied on to unwind the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from typing import Callable, Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_TEMPORARY: list[str] = []  # folders of the run in progress, removed on a signal
_PROG: list[str] = []
_RESTORE: list[Callable[[], None]] = []  # run first on a signal: what the run changed in the terminal


def restore_on_signal(fn: Callable[[], None]) -> Callable[[], None]:
    """Register ``fn`` to run first when a SIGTERM/SIGINT stops the run, before the closing line is printed (the
    live display stops drawing and shows the cursor again). Returns the function that unregisters it."""
    _RESTORE.append(fn)

    def unregister() -> None:
        if fn in _RESTORE:
            _RESTORE.remove(fn)

    return unregister


def remove_on_signal(path: str) -> None:
    """Register a temporary folder of the run in progress: a SIGTERM/SIGINT removes it before exiting."""
    _TEMPORARY.append(path)


def _remove(path: str) -> None:
    if "://" in path and not path.startswith("file://"):  # object storage: no local rmtree of a URL
        from im_data import storage

        try:
            storage.remove_tree(path)
        except Exception:  # noqa: BLE001 - best effort: the next run removes it as stale (no owner alive)
            pass
        return
    for _ in range(10):  # worker threads may still be creating files in it for a moment
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
        time.sleep(0.05)


def _stop_children() -> None:
    """Terminate the worker processes this run started (multi-processing runners), then kill what is left."""
    try:
        import psutil

        children = psutil.Process().children(recursive=True)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        _, alive = psutil.wait_procs(children, timeout=5)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
    except Exception:  # noqa: BLE001 - best effort: the exit below must happen
        pass


def _stop(signum, frame) -> None:
    for s in SIGNALS:  # a second signal must not interrupt the clean-up of the first
        signal.signal(s, signal.SIG_IGN)
    threading.excepthook = lambda args: None  # Beam's threads complain when their workers stop: not news
    logging.disable(logging.CRITICAL)
    for fn in reversed(_RESTORE):  # the terminal first: nothing may draw over the closing line
        try:
            fn()
        except Exception:  # noqa: BLE001 - best effort: the clean-up and the exit below must happen
            pass
    _stop_children()
    for path in _TEMPORARY:
        _remove(path)
    name = signal.Signals(signum).name
    try:
        sys.stderr.write(f"{_PROG[-1] if _PROG else 'im-data'}: interrupted by {name}; the temporary run folder "
                         "was removed, nothing was published\n")
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(128 + signum)


@contextlib.contextmanager
def stop_on_signals(prog: str) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT remove the registered temporary folders, print one line naming
    ``prog`` and exit 143/130. Only in the main thread (elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _stop) for s in SIGNALS}
    _PROG.append(prog)
    try:
        yield
    finally:
        _PROG.pop()
        _TEMPORARY.clear()
        for s, handler in previous.items():
            signal.signal(s, handler)
