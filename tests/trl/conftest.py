"""Fixtures for the TRL plugin tests: the embedded tokenizer, a tiny random Llama built from a config, and shard
directories written by the test fixture in ``shard_fixture.py`` (not the pipeline)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# pyproject runs pytest with --import-mode=importlib: make the helper modules next to this file importable
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("CI", "1")  # TRL: no telemetry ping

pytest.importorskip("trl")


@pytest.fixture(scope="session")
def tok():
    from im_data.tokenizer import load_tokenizer

    return load_tokenizer(None)


def tiny_llama(tok, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


@pytest.fixture
def make_model(tok):
    return lambda seed=0: tiny_llama(tok, seed)


@pytest.fixture(scope="session")
def im_dir(tmp_path_factory, tok):
    from shard_fixture import write_shard_dir

    return write_shard_dir(tmp_path_factory.mktemp("im"), tok, mode="im", n=24)


@pytest.fixture(scope="session")
def it_dir(tmp_path_factory, tok):
    from shard_fixture import write_shard_dir

    return write_shard_dir(tmp_path_factory.mktemp("it"), tok, mode="it", n=24)
