"""`im-data check-template` end to end: the text report, --json, --show, exit statuses 0 / 1 / 2."""

from __future__ import annotations

import json


def test_fully_supported_template_exits_0(cli):
    r = cli("check-template", "--chat-template", "chatml_tools", "--color", "never")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0] == "chat template 'chatml_tools', tokenizer embedded"
    assert "verdict: fully supported" in lines
    assert "end-of-turn token trained (it): yes ('<|im_end|>')" in lines
    assert "fields dropped: none" in lines and "prefix-stable renders: yes" in lines
    assert sum(line.startswith("    it trains ") for line in lines) == 8


def test_json_report(cli):
    r = cli("check-template", "--chat-template", "chatml_tools", "--json")
    assert r.code == 0, r
    data = json.loads(r.out)
    assert data["supported"] is True and data["template"] == "chatml_tools"
    assert [p["probe"] for p in data["probes"]][:3] == ["system", "multi_turn", "tools"]
    tools = data["probes"][2]
    assert tools["encoded"] and tools["roles"]["tool_call"]["trained_it"] == tools["roles"]["tool_call"]["tokens"] > 0
    assert tools["roles"]["user"]["trained_it"] == 0 < tools["roles"]["user"]["trained_im"]


def test_unsupported_template_exits_1_and_names_the_fix(cli):
    r = cli("check-template", "--chat-template", "llama2", "--color", "never", width=200)
    assert r.code == 1, r
    assert "    accept such records with --chat-template chatml_tools" in r.out.splitlines()
    assert "    accept such records with --allow-unrendered reasoning_content" in r.out.splitlines()
    assert r.out.splitlines()[-1].startswith("verdict: not fully supported (5 of 7 required probes rejected")
    data = json.loads(cli("check-template", "--chat-template", "llama2", "--json").out)
    assert data["supported"] is False and data["rejects_by_reason"] == {"template_error": 3, "unrendered_field": 2}


def test_show_prints_the_probe_token_by_token(cli):
    r = cli("check-template", "--chat-template", "chatml_tools", "--show", "tools", "--color", "never", width=120)
    assert r.code == 0, r
    assert "probe tools (im)" in r.out and "tokens and weight mass per role" in r.out


def test_usage_errors_exit_2_with_one_line(cli, error_lines):
    for argv, needle in ((("--chat-template", "nope"), "neither a built-in"),
                         (("--show", "nope"), "no such probe"),
                         (("--chat-template-kwargs", "[1]"), "must be a JSON object")):
        r = cli("check-template", *argv)
        assert r.code == 2, (argv, r)
        assert len(error_lines(r)) == 1 and needle in error_lines(r)[0], (argv, r.err)
