"""The hostile-input corpus: every class of hostile input of issue 12, mixed with good records, and what must
become of each record (written, or rejected with which reason).

    python tests/pipeline/hostile/make_corpus.py DIR            # writes the corpus, prints the expected counts

Run ``im-data prepare`` on ``corpus.inputs`` with ``corpus.options()``; then every ``(source, index)`` in
``corpus.expected`` must be written (``None``) or rejected with the reason given, and nothing else may appear.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

MAX_RECORD_BYTES = 8192
MAX_LENGTH = 512
TEMPLATE_TIMEOUT_S = "1"  # IM_DATA_TEMPLATE_TIMEOUT_S for runs on the corpus (its SLOW record loops for ever)
NOT_UTF8_NAME = b"caf\xe9 \xff.jsonl"  # a file name that is not UTF-8, matched by a glob

# a chatml template that emits a lone surrogate after a message whose (metadata) name is BOOM: the render is
# consistent (metadata is passed to every render unchanged), but the tokenizer then raises a TypeError (not a
# RecordError) for that record, the injected unexpected failure that must become internal_error. After a message
# named SLOW it loops for ever (template_timeout under IM_DATA_TEMPLATE_TIMEOUT_S); after one named HUGE it builds
# 20 MB of text from a 100-byte record (too_large).
TEMPLATE = """{%- for message in messages -%}
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}
{%- if message.get('name') == 'BOOM' -%}{{ '\\ud800' }}{%- endif -%}
{%- if message.get('name') == 'SLOW' -%}{%- for i in range(99999) -%}{%- for j in range(99999) -%}{%- endfor -%}
{%- endfor -%}{%- endif -%}
{%- if message.get('name') == 'HUGE' -%}{{ 'x y ' * 5000000 }}{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}
"""

ODD_TEXT = ["plain question", "NUL \u0000 inside", "right-to-left \u202e text", "e\u0301 combining", "emoji 😀🎉",
            "中文 and 日本語", "tab\tand\r\ncrlf", "zero\u200bwidth", "\ufeff BOM char", "a" * 300]


def good(i: int) -> dict:
    """A valid record in one of the four formats, with odd but legal text."""
    text = ODD_TEXT[i % len(ODD_TEXT)]
    kind = i % 4
    if kind == 0:
        return {"messages": [{"role": "user", "content": f"{text} #{i}"}, {"role": "assistant", "content": f"ok {i}"}]}
    if kind == 1:
        return {"instruction": f"{text} #{i}", "input": "", "output": f"done {i}"}
    if kind == 2:
        return {"prompt": f"{text} #{i}", "completion": f"yes {i}"}
    return {"conversations": [{"from": "human", "value": f"{text} #{i}"}, {"from": "gpt", "value": f"fine {i}"}]}


def _line(record) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def _msgs(user: str, assistant: str = "ok") -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def bad_lines() -> list[tuple[bytes, str]]:
    """(raw JSONL line, reason) for each hostile record class."""
    deep = b"[" * 1000 + b"]" * 1000
    return [
        (b'{"messages": [{"role": "user", "content": "x\\ud800"}, {"role": "assistant", "content": "y"}]}',
         "invalid_json"),                                                 # escaped lone surrogate
        (b'{"messages": [{"role": "user", "content": "\\udc00 low"}, {"role": "assistant", "content": "y"}]}',
         "invalid_json"),                                                 # lone low surrogate
        (b'{"instruction": "x", "output": "y", "n": 1' + b"7" * 5000 + b"}", "invalid_json"),  # 5001-digit integer
        (b'{"text": ' + deep + b"}", "unknown_format"),                  # 1000 deep, parsed, rejected: raw kept
        (b'{"text": ' + b"[" * 2000 + b"]" * 2000 + b"}", "invalid_json"),  # deeper than the parser allows
        (b'{"instruction": "x", "output": "y", "score": NaN}', "invalid_json"),
        (b'{"instruction": "x", "output": "y", "score": -Infinity}', "invalid_json"),
        (b'{"instruction": "caf\xe9", "output": "\xff\xfe"}', "invalid_json"),   # not UTF-8: raw in base64
        (b'{"instruction": "\xed\xa0\x80", "output": "y"}', "invalid_json"),     # UTF-8-encoded surrogate
        (b'\xef\xbb\xbf{"instruction": "BOM", "output": "y"}', "invalid_json"),  # a BOM inside a JSONL line
        (_line(_msgs("x" * (MAX_RECORD_BYTES + 10))), "too_large"),       # over --max-record-bytes
        (_line(_msgs("word " * 1200)), "too_long"),                        # far over --max-length (drop)
        (_line({"messages": [{"role": "user", "content": "please now", "name": "BOOM"},
                             {"role": "assistant", "content": "ok"}]}), "internal_error"),  # trips the tokenizer
        (_line(_msgs("inject <|im_end|> here")), "special_token_in_content"),
        (b"[1, 2, 3]", "unknown_format"), (b"42", "unknown_format"), (b"null", "unknown_format"),
        (b'"just a string"', "unknown_format"), (b"{}", "unknown_format"),
        (b'{"messages": [{"role": "user", "content": "unterminated', "invalid_json"),
        (b"\x00\x00\x00", "invalid_json"),
        # record-level template kwargs never replace a special token, nor smuggle one in (round 2, defect 5)
        (_line(dict(_msgs("q"), chat_template_kwargs={"eos_token": "EVIL<|user|>"})), "reserved_template_variable"),
        (_line(dict(_msgs("q"), chat_template_kwargs={"messages": []})), "reserved_template_variable"),
        (_line(dict(_msgs("q"), chat_template_kwargs={"note": "x<|im_end|>"})), "special_token_in_content"),
        (_line({"messages": [{"role": ["user"], "content": "q"}, {"role": "assistant", "content": "a"}]}),
         "bad_role"),                                                     # an unhashable role (round 2, defect 12)
        (_line({"messages": [{"role": "user", "content": "q", "name": "SLOW"},
                             {"role": "assistant", "content": "a"}]}), "template_timeout"),
        (_line({"messages": [{"role": "user", "content": "q", "name": "HUGE"},
                             {"role": "assistant", "content": "a"}]}), "too_large"),
    ]


@dataclasses.dataclass
class Corpus:
    root: Path
    inputs: list[str]                                    # CLI input specs (duplicates included on purpose)
    expected: dict[tuple[str, int | None], str | None]    # (source label, index) -> reason; None: written
    duplicates: list[str]                                 # inputs that must be reported and read once
    template: str

    def options(self) -> list[str]:
        return ["--chat-template", self.template, "--max-length", str(MAX_LENGTH), "--truncation", "drop",
                "--max-record-bytes", str(MAX_RECORD_BYTES)]


def _label(path: Path) -> str:
    return os.path.normpath(str(path))


def _write_jsonl(path: Path, expected: dict) -> None:
    lines, k = [], 0
    for bad, reason in bad_lines():
        for _ in range(2):
            lines.append(_line(good(k)))
            k += 1
        lines.append(bad)
    lines += [b"", b"   ", _line(good(k)) + b"\r"]  # blank lines are not records; a CRLF line is fine
    path.write_bytes(b"\n".join(lines) + b"\n")
    label = _label(path)
    reasons = {bad: reason for bad, reason in bad_lines()}
    for i, line in enumerate(lines):
        if line.strip():
            expected[(label, i)] = reasons.get(line)


def _write_json_arrays(root: Path, expected: dict) -> None:
    g = [_line(good(100 + i)) for i in range(8)]
    files = {
        # 5000 bytes of whitespace before the array: the reader peeks as far as it takes
        "whitespace.json": (b" " * 3000 + b"\n" * 2000 + b"[" + b",".join(g[:2]) + b"]", [None, None]),
        # one bad element and a trailing comma: the bad element is one reject, nothing else is lost
        "trailing.json": (b"[" + g[2] + b",\n{\"instruction\": tru},\n" + g[3] + b",\n]",
                          [None, "invalid_json", None]),
        # truncated in the middle of its third element
        "truncated.json": (b"[" + g[4] + b"," + g[5] + b', {"messages": [{"role": "us', [None, None, "invalid_json"]),
        # an element over --max-record-bytes is skipped while reading
        "big_element.json": (b"[" + g[6] + b"," + _line(_msgs("y" * (2 * MAX_RECORD_BYTES))) + b"," + g[7] + b"]",
                             [None, "too_large", None]),
    }
    for name, (data, reasons) in files.items():
        (root / name).write_bytes(data)
        for i, reason in enumerate(reasons):
            expected[(_label(root / name), i)] = reason


def _write_parquet(path: Path, expected: dict) -> None:
    """Three row groups of two rows; the data pages of the middle one are overwritten with garbage."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [good(200 + 4 * i + 1) for i in range(6)]  # alpaca records
    table = pa.table({k: [r[k] for r in rows] for k in ("instruction", "input", "output")})
    pq.write_table(table, path, row_group_size=2, compression="none", use_dictionary=False)
    meta = pq.ParquetFile(path).metadata.row_group(1)
    start = min(meta.column(c).data_page_offset for c in range(meta.num_columns))
    size = sum(meta.column(c).total_compressed_size for c in range(meta.num_columns))
    data = bytearray(path.read_bytes())
    data[start:start + size] = b"\xff" * size
    path.write_bytes(bytes(data))
    label = _label(path)
    expected.update({(label, 0): None, (label, 1): None, (label, 2): "read_error", (label, 4): None,
                     (label, 5): None})


def _write_dataset_dict(path: Path, expected: dict) -> None:
    """A DatasetDict whose ``test`` split folder is missing: ``train`` is read, ``test`` is one read_error."""
    import datasets

    train = datasets.Dataset.from_list([good(300 + 4 * i + 2) for i in range(3)])  # prompt/completion
    datasets.DatasetDict({"train": train, "test": train.select([0])}).save_to_disk(str(path))
    shutil.rmtree(path / "test")
    label = _label(path)
    expected.update({(f"{label}[train]", i): None for i in range(3)})
    expected[(f"{label}[test]", None)] = "read_error"


def build_corpus(root: Path) -> Corpus:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    expected: dict = {}
    mixed = root / "mixed.jsonl"
    _write_jsonl(mixed, expected)
    arrays = root / "arrays"
    arrays.mkdir()
    _write_json_arrays(arrays, expected)
    _write_parquet(root / "groups.parquet", expected)
    _write_dataset_dict(root / "dd", expected)
    # an I/O error while reading plain JSONL: reading /proc/self/mem at offset 0 fails with EIO
    (root / "io_error.jsonl").symlink_to("/proc/self/mem")
    expected[(_label(root / "io_error.jsonl"), 0)] = "read_error"
    (root / "alias.jsonl").symlink_to(mixed)
    # a JSONL file that starts with a UTF-8 byte order mark: not part of record 0
    (root / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + _line(good(400)) + b"\n" + _line(good(401)) + b"\n")
    expected.update({(_label(root / "bom.jsonl"), 0): None, (_label(root / "bom.jsonl"), 1): None})
    # a glob that matches a file whose name is not UTF-8 (read, labelled with \\xNN escapes) and a bz2 file
    # (skipped with a warning)
    names = root / "names"
    names.mkdir()
    odd = os.path.join(os.fsencode(names), NOT_UTF8_NAME)
    with open(odd, "wb") as f:
        f.write(_line(good(500)) + b"\n" + b"{oops\n")
    (names / "notes.jsonl.bz2").write_bytes(b"BZh91AY&SY")
    odd_label = os.fsencode(_label(names)).decode() + "/" + NOT_UTF8_NAME.decode("utf-8", "backslashreplace")
    expected.update({(odd_label, 0): None, (odd_label, 1): "invalid_json"})
    (root / "boom.jinja").write_text(TEMPLATE)
    relative = os.path.relpath(mixed)
    inputs = [str(mixed), str(arrays / "*.json"), str(root / "groups.parquet"), str(root / "dd"),
              str(root / "io_error.jsonl"), str(root / "alias.jsonl"), relative, str(arrays / "trailing.json"),
              str(root / "bom.jsonl"), str(names / "*")]
    return Corpus(root, inputs, expected, [str(root / "alias.jsonl"), relative, str(arrays / "trailing.json")],
                  str(root / "boom.jinja"))


if __name__ == "__main__":
    corpus = build_corpus(Path(sys.argv[1]))
    reasons = [r for r in corpus.expected.values()]
    print(json.dumps({"records": len(reasons), "good": reasons.count(None),
                      "rejected": {r: reasons.count(r) for r in sorted(set(reasons) - {None})}}, indent=1))
