#!/usr/bin/env python
"""Write ``constraints.txt`` (the exact versions the test suite passed on), or check for drift.

Both modes install the newest versions that ``pyproject.toml`` allows into a fresh temporary venv (no constraints),
run the test suite there, and compare the versions installed with ``constraints.txt``:

    python scripts/update_constraints.py            # refresh: rewrite constraints.txt if the suite passes
    python scripts/update_constraints.py --check    # drift check: report new versions and whether the suite passes

Exit status: 0 when the suite passed on the newest allowed versions, 1 when it failed (constraints.txt is then left
as it is: users installing with it keep the versions that work), 2 on a usage or set-up error.
torch is installed as ``torch==<--torch>`` (the CPU build where a local one is available; a bare ``torch`` pulls
CUDA); local version labels (``+cpu``) are dropped from the file so it also works where only the CUDA build exists.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints.txt"
EXTRAS = ".[test,dev]"
HEADER = """\
# The exact versions the test suite passed on, written by scripts/update_constraints.py (do not edit by hand).
# Install with: pip install -c constraints.txt torch==2.13.0 -e ".[test]"
"""


def parse(text: str) -> dict[str, str]:
    """``name==version`` lines (comments and blank lines skipped) → {normalised name: version}."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.strip()
    return out


def freeze(python: Path) -> dict[str, str]:
    """What the venv holds (our own editable package left out), local version labels dropped."""
    text = subprocess.run([str(python), "-m", "pip", "freeze", "--exclude-editable"], check=True,
                          capture_output=True, text=True).stdout
    return {name: version.split("+", 1)[0] for name, version in parse(text).items() if name != "im-data"}


def render(versions: dict[str, str], python_version: str) -> str:
    lines = [HEADER + f"# Python {python_version}, {datetime.date.today().isoformat()}\n"]
    lines += [f"{name}=={versions[name]}\n" for name in sorted(versions)]
    return "".join(lines)


def drift(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """One line per package whose version differs between the constraints and the fresh venv."""
    lines = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a != b:
            lines.append(f"  {name}: {a or '(absent)'} -> {b or '(absent)'}")
    return lines


def run(cmd: list[str], env: dict[str, str]) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="drift check only: never rewrite constraints.txt")
    ap.add_argument("--torch", default="2.13.0", help="the torch version to install (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary venv (its path is printed)")
    ap.add_argument("pytest_args", nargs="*", help="arguments for pytest after -- (default: -q, the README's)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="im-data-constraints-"))
    venv = tmp / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_CONSTRAINT", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    python = venv / "bin" / "python"
    try:
        if run([sys.executable, "-m", "venv", str(venv)], env) != 0:
            print("update_constraints: error: could not create a venv (install python3-venv)", file=sys.stderr)
            return 2
        if run([str(python), "-m", "pip", "install", "-q", f"torch=={args.torch}", "-e", EXTRAS], env) != 0:
            print("update_constraints: error: the newest allowed versions do not install (see pip's output)",
                  file=sys.stderr)
            return 1
        new = freeze(python)
        old = parse(CONSTRAINTS.read_text()) if CONSTRAINTS.exists() else {}
        changed = drift(old, new)
        print(f"{len(changed)} package(s) differ from constraints.txt" + (":" if changed else ""))
        print("\n".join(changed)) if changed else None
        status = run([str(python), "-m", "pytest", *(args.pytest_args or ["-q"])], env)
        passed = status == 0
        print(f"the test suite {'passed' if passed else 'FAILED'} on the newest allowed versions")
        if passed and not args.check:
            py = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                                capture_output=True, text=True, check=True).stdout.strip()
            CONSTRAINTS.write_text(render(new, py))
            print(f"wrote {CONSTRAINTS.relative_to(REPO)} ({len(new)} packages)")
        return 0 if passed else 1
    finally:
        if args.keep:
            print(f"kept {venv}")
        else:
            subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    sys.exit(main())
