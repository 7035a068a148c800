"""Loading tokenizers and fingerprinting them.

The embedded default tokenizer (``im_data/assets/tokenizer``) is a small byte-level BPE trained by us on
our own sample data (see ``scripts/build_default_tokenizer.py``); it needs no network.
"""

from __future__ import annotations

import functools
import json
import hashlib
import json
import os
from pathlib import Path
from typing import Any

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_TOKENIZER_DIR = ASSETS_DIR / "tokenizer"
DEFAULT_TOKENIZER = "default"
SAMPLE_DATA = ASSETS_DIR / "sample.jsonl"


class TokenizerLoadError(RuntimeError):
    """The tokenizer cannot be loaded (a job-level error, raised before any work starts)."""


def resolve_tokenizer_path(name_or_path: str | os.PathLike | None) -> str:
    if name_or_path is None or str(name_or_path) in ("", DEFAULT_TOKENIZER):
        return str(DEFAULT_TOKENIZER_DIR)
    return str(name_or_path)


GENERIC_FAST_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def _generic_fast_dir(path: str) -> bool:
    """A local folder whose ``tokenizer_config.json`` names the generic fast tokenizer class (no custom code):
    loaded with that class directly. ``AutoTokenizer`` would give the same object but first imports the model
    configuration code, and with it torch: seconds of start-up for every `prepare`."""
    config = os.path.join(path, "tokenizer_config.json")
    if not (os.path.isfile(config) and os.path.isfile(os.path.join(path, "tokenizer.json"))):
        return False
    try:
        with open(config, encoding="utf-8") as f:
            settings = json.load(f)
    except (OSError, ValueError):
        return False
    return (isinstance(settings, dict) and settings.get("tokenizer_class") in GENERIC_FAST_CLASSES
            and "auto_map" not in settings)


@functools.lru_cache(maxsize=8)
def _load(path: str, trust_remote_code: bool) -> Any:
    if _generic_fast_dir(path):
        from transformers import PreTrainedTokenizerFast as AutoTokenizer
    else:
        from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError/ValueError/HF errors for bad names
        raise TokenizerLoadError(f"cannot load tokenizer {path!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if not getattr(tok, "is_fast", False):
        raise TokenizerLoadError(f"tokenizer {path!r} is not a fast tokenizer; offsets need a fast (Rust) tokenizer")
    return tok


def load_tokenizer(name_or_path: str | os.PathLike | None = None, *, trust_remote_code: bool = False) -> Any:
    """Load a fast tokenizer by hub name or local path; ``None``/``"default"`` gives the embedded one.

    Loaded tokenizers are cached per process (Beam ``DoFn.setup`` calls this once per worker).
    """
    return _load(resolve_tokenizer_path(name_or_path), trust_remote_code)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Stable 16-hex-digit digest of the tokenizer's full serialised state (vocab, merges, added tokens,
    normaliser, pre-tokeniser). Two tokenizers with equal fingerprints produce the same ids."""
    cached = getattr(tokenizer, "_im_data_fingerprint", None)
    if cached is not None:
        return cached
    state = tokenizer.backend_tokenizer.to_str()
    digest = hashlib.sha256(state.encode("utf-8")).hexdigest()[:16]
    try:
        tokenizer._im_data_fingerprint = digest
    except AttributeError:  # pragma: no cover - exotic tokenizer classes
        pass
    return digest



def special_token_ids(tokenizer: Any) -> frozenset[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for idx, tok in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(tok, "special", False):
            ids.add(int(idx))
    return frozenset(ids)
