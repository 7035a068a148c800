"""The README as a tested artefact: its ``bash``/``sh`` and ``python`` blocks run in order, as written, in a fresh
temporary folder, with the installed package and no network.

Conventions (documented at the end of README.md):

- an HTML comment on the line right before a block marks it:
  ``<!-- readme-test: skip (network) -->``, ``skip (gpu)`` or ``skip (test-suite)`` (the test command itself,
  which would recurse) skip it; ``<!-- readme-test: expected output -->`` marks a ``text`` block that must equal
  what the runnable block before it printed (stdout, trailing spaces ignored);
- a leading ``pip install ... &&`` is stripped from a shell command (the test runs in the environment the package
  is installed in); any other ``pip install`` is refused;
- blocks write only below the folder they run in: no absolute paths, ``..`` or ``~``, and each output directory
  is named once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL = ("bash", "sh", "shell")
RUNNABLE = SHELL + ("python",)
SKIP_REASONS = ("network", "gpu", "test-suite")
MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<what>.*?)\s*-->\s*$")
FENCE = re.compile(r"^```\s*(?P<lang>[\w+-]*)\s*$")
PIP_PREFIX = re.compile(r"^(\s*)pip install\b[^\n&]*&&\s*", re.MULTILINE)
#: a path that leaves the folder a block runs in: absolute, in the home directory, or up from it
OUTSIDE = re.compile(r"(^|[\s='\"(])(/\w|~/|\.\./)", re.MULTILINE)
#: options whose value is a path the block writes to
OUTPUT_OPTIONS = re.compile(r"(?:--output_dir|--output|-o|--report|--html)[ =](\S+)")

QUICK_START = "pip install -c constraints.txt torch==2.13.0 -e . && im-data prepare --output out/sample --overwrite"
TEST_COMMAND = 'pip install -c constraints.txt torch==2.13.0 -e ".[test]" && python -m pytest -q'


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    marker: str | None  # the readme-test comment right before the fence, if any

    @property
    def skip_reason(self) -> str | None:
        match = re.fullmatch(r"skip \((?P<reason>[^)]*)\)", self.marker or "")
        return match["reason"] if match else None

    @property
    def expected_output(self) -> bool:
        return self.marker == "expected output"


def parse_blocks(text: str) -> list[Block]:
    """Every fenced block of ``text`` with its language, line and marker."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(previous.strip())
        blocks.append(Block(fence["lang"].lower(), "\n".join(body) + "\n", start + 1,
                            marker["what"] if marker else None))
        i += 1
    return blocks


def runnable_code(block: Block) -> str:
    """The code the harness runs: a leading ``pip install ... &&`` stripped from shell commands."""
    if block.lang not in SHELL:
        return block.code
    code = PIP_PREFIX.sub(r"\1", block.code)
    if re.search(r"\bpip install\b", code):
        raise AssertionError(f"README line {block.line}: a block may install only as `pip install ... && command`")
    return code


def _env(root: Path) -> dict[str, str]:
    """The user's environment, offline, with every cache and temporary file below ``root``."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "CI"):
        env[name] = "1"
    for name, sub in (("HF_HOME", "hf-home"), ("HF_DATASETS_CACHE", "hf-datasets"), ("XDG_CACHE_HOME", "cache"),
                      ("MPLCONFIGDIR", "matplotlib"), ("TMPDIR", "tmp")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(root / sub)
    env["COLUMNS"] = "100"
    return env


def _normalise(output: str) -> str:
    return "\n".join(line.rstrip() for line in output.strip("\n").splitlines())


# ---------------------------------------------------------------------------------------------------------------
# the README's own rules, checked without running anything
# ---------------------------------------------------------------------------------------------------------------
def test_markers_and_blocks_follow_the_conventions():
    blocks = parse_blocks(README.read_text(encoding="utf-8"))
    assert sum(b.lang in RUNNABLE for b in blocks) >= 8
    for i, block in enumerate(blocks):
        where = f"README line {block.line}"
        if block.marker is not None:
            assert block.expected_output or block.skip_reason in SKIP_REASONS, (
                f"{where}: unknown marker {block.marker!r}; use 'expected output' or skip ({'|'.join(SKIP_REASONS)})")
        if block.expected_output:
            assert block.lang == "text", f"{where}: an expected output is a ```text block"
            assert i > 0 and blocks[i - 1].lang in RUNNABLE and blocks[i - 1].skip_reason is None, (
                f"{where}: an expected output must follow a block that runs")
        if block.lang in RUNNABLE and block.skip_reason is None:
            code = runnable_code(block)
            assert not OUTSIDE.search(code), (
                f"{where}: blocks write only below the folder they run in (no absolute paths, ~ or ..)")


def test_output_directories_are_unique():
    targets = []
    for block in parse_blocks(README.read_text(encoding="utf-8")):
        if block.lang in RUNNABLE and block.skip_reason is None:
            targets += OUTPUT_OPTIONS.findall(block.code)
            targets += re.findall(r"(?:WeightedSFTConfig|SFTConfig)\(\"([^\"]+)\"", block.code)
    assert len(targets) >= 5, targets
    assert len(targets) == len(set(targets)), f"two blocks write to the same place: {targets}"


def test_quick_start_and_test_commands_are_kept_verbatim():
    blocks = parse_blocks(README.read_text(encoding="utf-8"))
    shell = [b for b in blocks if b.lang in SHELL]
    assert shell[0].code.strip() == QUICK_START and shell[0].skip_reason is None
    assert runnable_code(shell[0]).strip() == "im-data prepare --output out/sample --overwrite"
    [tests] = [b for b in shell if b.code.strip() == TEST_COMMAND]
    assert tests.skip_reason == "test-suite"


def test_the_harness_parses_markers_and_strips_only_a_leading_install():
    text = ("intro\n\n<!-- readme-test: skip (gpu) -->\n```bash\nrun --on-gpu\n```\n\n```bash\n"
            "pip install -e . && im-data prepare -o out/x\n  pip install x && echo hi\n```\n"
            "<!-- readme-test: expected output -->\n```text\nhi\n```\n```python\nprint(1)\n```\n")
    gpu, shell, expected, python = parse_blocks(text)
    assert (gpu.lang, gpu.skip_reason, gpu.line) == ("bash", "gpu", 4)
    assert runnable_code(shell) == "im-data prepare -o out/x\n  echo hi\n" and shell.marker is None
    assert expected.expected_output and expected.code == "hi\n"
    assert (python.lang, python.code, python.marker) == ("python", "print(1)\n", None)
    with pytest.raises(AssertionError, match="may install only"):
        runnable_code(parse_blocks("```sh\npip install foo\n```\n")[0])


# ---------------------------------------------------------------------------------------------------------------
# running it
# ---------------------------------------------------------------------------------------------------------------
def test_readme_blocks_run_as_written(tmp_path):
    blocks = parse_blocks(README.read_text(encoding="utf-8"))
    work, scripts = tmp_path / "work", tmp_path / "blocks"
    work.mkdir()
    scripts.mkdir()
    env = _env(tmp_path)
    last_stdout, ran = None, 0
    for block in blocks:
        where = f"README line {block.line}"
        if block.expected_output:
            assert last_stdout is not None, f"{where}: nothing ran before this expected output"
            assert _normalise(last_stdout) == _normalise(block.code), (
                f"{where}: the README shows\n{block.code}\nbut the block before it printed\n{last_stdout}")
            continue
        last_stdout = None
        if block.lang not in RUNNABLE or block.skip_reason is not None:
            continue
        if block.lang == "python":
            script = scripts / f"line{block.line}.py"
            script.write_text(block.code, encoding="utf-8")
            command = [sys.executable, str(script)]
        else:
            command = ["bash", "-e", "-u", "-o", "pipefail", "-c", runnable_code(block)]
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        print(f"README line {block.line}: {time.perf_counter() - started:.1f} s")  # shown by pytest -s / -rP
        assert proc.returncode == 0, (f"{where} failed (exit {proc.returncode}):\n{block.code}\n"
                                      f"STDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}")
        last_stdout, ran = proc.stdout, ran + 1
    assert ran >= 8
    # what the blocks promise is there
    assert (work / "out/sample/manifest.json").is_file() and (work / "out/wit/manifest.json").is_file()
    assert any((work / "runs/wit").glob("*.safetensors")) and any((work / "runs/wit-python").glob("*.safetensors"))
    assert (work / "out/sample-audit/report.md").is_file()
