"""Writes ``bad.jsonl`` (one line per bad case, written by us) and ``bad.expected.json`` ({line: reason}).

Run ``python tests/pipeline/data/make_bad_corpus.py`` to regenerate; the files are checked in.
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
LONG = " ".join(f"word{i}" for i in range(400))


def msgs(*pairs):
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


CASES = [  # (raw line bytes, expected reason or None for a good record)
    (json.dumps(msgs(("user", "What is two plus two?"), ("assistant", "Four."))), None),
    ('{"messages": [{"role": "user", "content": "unterminated', "invalid_json"),
    ("not json at all", "invalid_json"),
    (b'{"messages": [{"role": "user", "content": "caf\xe9 \xff\xfe"}, {"role": "assistant", "content": "x"}]}',
     "invalid_json"),  # Latin-1 / stray bytes: not UTF-8
    (json.dumps(msgs(("user", "hi"), ("assistant", 42))).replace('"42"', "42"), "not_a_string"),
    (json.dumps({"messages": [{"role": "user", "content": ["a", "list"]}, {"role": "assistant", "content": "ok"}]}),
     "not_a_string"),
    (json.dumps(msgs(("wizard", "cast a spell"), ("assistant", "ok"))), "bad_role"),
    (json.dumps({"messages": []}), "empty_conversation"),
    (json.dumps(msgs(("user", "hello?"), ("user", "anyone?"))), "no_assistant_turn"),
    (json.dumps(msgs(("user", "Say <|assistant|> now"), ("assistant", "no"))), "special_token_in_content"),
    (json.dumps(msgs(("user", "fine"), ("assistant", "end </s> here"))), "special_token_in_content"),
    (json.dumps({"text": "a record with no known fields"}), "unknown_format"),
    (json.dumps([1, 2, 3]), "unknown_format"),
    (json.dumps(msgs(("user", "Summarise this."), ("assistant", LONG))), "LONG"),  # too long: see tests
    (json.dumps({"instruction": "Add 2 and 3", "input": "", "output": "5"}), None),
    (json.dumps(msgs(("system", "Be brief."), ("user", "Name a colour."), ("assistant", "Blue."))), None),
]


def main() -> None:
    lines, expected = [], {}
    for i, (raw, reason) in enumerate(CASES):
        lines.append(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
        if reason is not None:
            expected[str(i)] = reason
    # a blank line is not a record (skipped, but it still counts for line numbers)
    data = b"\n".join(lines[:3]) + b"\n\n" + b"\n".join(lines[3:]) + b"\n"
    (HERE / "bad.jsonl").write_bytes(data)
    # line numbers after the blank line shift by one
    shifted = {str(int(k) + (1 if int(k) >= 3 else 0)): v for k, v in expected.items()}
    (HERE / "bad.expected.json").write_text(json.dumps(shifted, indent=1, sort_keys=True) + "\n")
    (HERE / "empty.jsonl").write_bytes(b"")


if __name__ == "__main__":
    main()
