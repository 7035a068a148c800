"""The typed library API: ``prepare(PrepareOptions)`` / ``audit(AuditOptions)`` and the thin commands on top."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from im_data import ChatTemplate, FormatOptions, WeightPolicy
from pipeline_helpers import DATA, read_output, run_cli
from pipelines.audit import AuditResult, audit
from pipelines.options import AuditOptions, EncoderOptions, PrepareOptions, RunnerOptions, UsageError
from pipelines.prepare import PrepareResult, prepare

REPO = Path(__file__).resolve().parents[2]
ALPACA = REPO / "tests" / "data" / "sample_alpaca.jsonl"


def test_prepare_api_equals_cli(tmp_path):
    policy = WeightPolicy.wit(0.25, 0.75, last_assistant_only=True)
    options = PrepareOptions(
        inputs=(str(ALPACA),), output=str(tmp_path / "api"),
        encoder=EncoderOptions(chat_template=ChatTemplate.builtin("chatml"), policy=policy, max_length=40,
                               truncation="keep_start", format_options=FormatOptions(format="alpaca")),
        format="parquet", num_shards=2, batch_size=3)
    result = prepare(options, ["--direct_num_workers", "1"])
    assert isinstance(result, PrepareResult)
    assert result.output_dir == str(tmp_path / "api")
    code = run_cli("prepare", ALPACA, "-o", tmp_path / "cli", "--chat-template", "chatml", "--mode", "wit",
                   "--prompt-weight", "0.25", "--response-weight", "0.75", "--last-assistant-only",
                   "--max-length", "40", "--input-format", "alpaca", "--format", "parquet", "--num-shards", "2",
                   "--batch-size", "3", "-q")
    assert code == 0
    api, cli = read_output(tmp_path / "api"), read_output(tmp_path / "cli")
    assert api["manifest"]["policy"] == policy.to_dict() == cli["manifest"]["policy"]
    assert api["manifest"]["chat_template"]["name"] == "chatml"
    assert api["manifest"]["max_length"] == 40 and api["manifest"]["format"] == "parquet"
    assert [s["sha256"] for s in api["manifest"]["shards"]] == [s["sha256"] for s in cli["manifest"]["shards"]]
    assert api["rows"] == cli["rows"] and len(api["rows"]) == result.manifest["counts"]["written"] > 0
    assert result.stats == api["stats"]


def test_audit_api(tmp_path):
    result = audit(AuditOptions(inputs=(str(ALPACA), str(DATA / "bad.jsonl")), names=("a", "b"),
                                encoder=EncoderOptions(chat_template="tulu")))
    assert isinstance(result, AuditResult)
    assert [a.name for a in result.audits] == ["a", "b"]
    bad = result.audits[1].stats
    assert bad["read"] == 16 and bad["rejected"]["count"] > 0
    assert any(note.startswith("b: ") for note in result.notes)


def test_options_are_typed_and_frozen():
    enc = EncoderOptions()
    assert enc.policy == WeightPolicy.preset("im") and enc.format_options == FormatOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        enc.max_length = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match="WeightPolicy"):
        EncoderOptions(policy={"name": "im"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="--truncation"):
        EncoderOptions(truncation="middle")
    with pytest.raises(ValueError, match="--num-shards"):
        PrepareOptions(output="x", num_shards=0)
    assert PrepareOptions(inputs=["a"], output="x").inputs == ("a",)
    assert RunnerOptions().runner == "direct"


def test_prepare_api_user_error_is_one_line(tmp_path):
    with pytest.raises(UsageError) as info:
        prepare(PrepareOptions(inputs=(str(ALPACA),), output=str(tmp_path / "o"),
                               encoder=EncoderOptions(chat_template="no-such-template")))
    assert "no-such-template" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "o").exists()


def _imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at any depth (function-level imports too), relative ones resolved."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ("pipelines." if node.level else "") + (node.module or "")
            out.add(base.rstrip("."))
            out.update(f"{base}.{a.name}".replace("..", ".") for a in node.names)
    return out


COMMANDS = ("prepare", "audit", "inspect_cmd", "check_template_cmd")


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_do_not_import_each_other(command):
    imported = _imported_modules(REPO / "pipelines" / f"{command}.py")
    others = {f"pipelines.{c}" for c in COMMANDS} - {f"pipelines.{command}"}
    assert "pipelines.options" in imported
    assert not imported & others


def test_developer_scripts_are_not_in_the_package():
    assert not list((REPO / "im_data" / "assets").glob("*.py"))
    assert (REPO / "scripts" / "make_sample.py").is_file()
    assert (REPO / "scripts" / "build_default_tokenizer.py").is_file()
