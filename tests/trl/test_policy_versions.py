"""Prepared directories whose manifest holds a version-1 weight policy (written before the reasoning and tool_call
roles existed) stay readable by the TRL plugin."""

from __future__ import annotations

import json
import warnings

import pytest

from shard_fixture import write_shard_dir
from trl_plugin import FloatWeightsWarning, load_prepared

IM_V1 = {"assistant": 1.0, "assistant_end": 1.0, "last_assistant_only": False, "name": "im", "system": 1.0,
         "template": 0.0, "tool": 1.0, "user": 1.0, "version": 1}
WIT_V1 = {**IM_V1, "name": "wit", "system": 0.1, "user": 0.1, "tool": 0.1}


def with_policy(path, policy):
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["policy"] = policy
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_v1_policies_are_read():
    from im_data.policy import WeightPolicy

    assert WeightPolicy.from_dict(IM_V1).is_binary is True
    assert WeightPolicy.from_dict(WIT_V1).is_binary is False
    assert WeightPolicy.from_dict(IM_V1).reasoning == WeightPolicy.from_dict(IM_V1).tool_call == 1.0
    with pytest.raises(ValueError, match="version 99"):  # unreadable: no claim
        WeightPolicy.from_dict({**IM_V1, "version": 99})


def test_load_prepared_with_a_v1_manifest(tmp_path, tok):
    im = with_policy(write_shard_dir(tmp_path / "im", tok, mode="im", n=4), IM_V1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FloatWeightsWarning)
        assert len(load_prepared(im, tok, warn_if_binarised=True)) == 4
    wit = with_policy(write_shard_dir(tmp_path / "wit", tok, mode="im", n=4), WIT_V1)
    with pytest.warns(FloatWeightsWarning, match="fractional loss weights"):
        load_prepared(wit, tok, warn_if_binarised=True)
