"""Real chat templates: make the helpers importable in any import mode, and share tokenizers per session."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_tokenizers  # noqa: E402


@pytest.fixture(scope="session")
def real_tokenizer():
    """``real_tokenizer(family)``: the family's tokenizer, built once per session."""
    return real_tokenizers.family_tokenizer
