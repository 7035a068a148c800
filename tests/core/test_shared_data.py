"""The paper's three datasets (../shared/data) with the DeepSeek tokenizer and the tulu template.

Each file is encoded once (encode_batch, module-scoped) under IM and under IT.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from im_data import Encoder, LengthStats, RecordError, WeightPolicy
from im_data.roles import OUTPUT_SIDE_ROLES, Role

pytestmark = pytest.mark.shared_data

DS_EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
FILES = {  # file: (records, rejected ids, the paper's dataset ratio from Figure 2)
    "lima_data.jsonl": (1030, {}, 0.094),
    "alpagasus_3k_dolly.jsonl": (2996, {}, 0.643),
    "alpagasus_claude_t45_alpaca.jsonl": (5305, {"alpagasus_2590": "empty_output", "alpagasus_3260": "empty_output",
                                                  "alpagasus_4652": "empty_output", "alpagasus_4724": "empty_output"},
                                          0.566),
}


@pytest.fixture(scope="module")
def encoded(deepseek_tokenizer, shared_data_dir):
    enc_im = Encoder(deepseek_tokenizer, chat_template="tulu", policy=WeightPolicy.preset("im"), keep_text=True)
    enc_it = Encoder(deepseek_tokenizer, chat_template="tulu", policy=WeightPolicy.preset("it"))
    out = {}
    for name in FILES:
        with open(shared_data_dir / name, encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh]
        out[name] = (records, enc_im.encode_batch(records), enc_it.encode_batch(records))
    return enc_im, out


@pytest.mark.parametrize("name", sorted(FILES))
def test_counts_and_rejections(encoded, name):
    _, data = encoded
    records, im, it = data[name]
    n, rejected, _ = FILES[name]
    assert len(records) == len(im) == len(it) == n
    got = {rec["id"]: res.reason for rec, res in zip(records, im) if isinstance(res, RecordError)}
    assert got == rejected
    assert {rec["id"]: res.reason for rec, res in zip(records, it) if isinstance(res, RecordError)} == rejected
    for rec in records:  # the rejected ones really have empty output, and only they do
        empty = not any(x["content"].strip() for x in rec["messages"] if x["role"] == "assistant")
        assert empty == (rec["id"] in rejected)


@pytest.mark.parametrize("name", sorted(FILES))
def test_weights_roles_and_assistant_end(encoded, name):
    enc, data = encoded
    records, im, it = data[name]
    eos_id = enc.tokenizer.convert_tokens_to_ids(DS_EOS)
    for rec, a, b in zip(records, im, it):
        if isinstance(a, RecordError):
            continue
        assert a.input_ids.tolist() == b.input_ids.tolist() and a.roles.tolist() == b.roles.tolist()
        roles = a.roles
        # IM: weighted exactly where the role is not template; IT: exactly the output side (assistant + assistant_end)
        assert ((a.loss_weights > 0) == (roles != Role.TEMPLATE)).all()
        assert ((b.loss_weights > 0) == np.isin(roles, OUTPUT_SIDE_ROLES)).all()
        assert set(np.unique(a.loss_weights).tolist()) <= {0.0, 1.0}
        # only user/assistant content in these files
        assert not np.isin(roles, [Role.SYSTEM, Role.TOOL]).any()
        # one assistant_end per assistant turn: exactly the eos token, directly followed by a template "\n"
        n_asst = sum(x["role"] == "assistant" for x in rec["messages"])
        end_pos = np.flatnonzero(roles == Role.ASSISTANT_END)
        assert len(end_pos) == n_asst
        assert (a.input_ids[end_pos] == eos_id).all()
        assert (roles[end_pos + 1] == Role.TEMPLATE).all()
        assert all(a.text[s:e] == "\n" for s, e in a.offsets[end_pos + 1].tolist())
        # every eos in the sequence is an assistant_end (no eos inside content, none elsewhere)
        assert np.flatnonzero(a.input_ids == eos_id).tolist() == end_pos.tolist()


@pytest.mark.parametrize("name", sorted(FILES))
def test_user_tokens_decode_to_user_content(encoded, name):
    """Decoding each user turn's tokens gives back the user content. Where the content's first or last
    characters share a token with tulu's markup (``>\n\n`` when the content starts with a newline, ``?\n`` at the
    end), content wins at the boundary, so that token's markup characters come along, and only those."""
    enc, data = encoded
    records, im, _ = data[name]
    tok = enc.tokenizer
    exact = boundary = 0
    for rec, ex in zip(records, im):
        if isinstance(ex, RecordError):
            continue
        users = [x["content"] for x in rec["messages"] if x["role"] == "user"]
        idx = np.flatnonzero(ex.roles == Role.USER)
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1) if idx.size else []
        assert len(runs) == len(users)
        for content, run in zip(users, runs):
            decoded = tok.decode(ex.input_ids[run].tolist())
            if decoded == content:
                exact += 1
                continue
            boundary += 1
            first, last = ex.offsets[run[0]], ex.offsets[run[-1]]
            assert decoded == ex.text[first[0]:last[1]]
            pos = decoded.find(content)
            assert pos != -1, (rec["id"], decoded[:80], content[:80])
            head, tail = decoded[:pos], decoded[pos + len(content):]
            assert "<|user|>\n".endswith(head) and pos < first[1] - first[0]   # markup only inside the first token
            assert "\n<|assistant|>\n".startswith(tail) and len(tail) < last[1] - last[0]  # ... and the last
    assert exact > 0 and boundary > 0  # both cases occur in the data


@pytest.mark.parametrize("name", sorted(FILES))
def test_dataset_ratio_matches_paper(encoded, name):
    _, data = encoded
    _, im, _ = data[name]
    stats = LengthStats()
    for ex in im:
        if not isinstance(ex, RecordError):
            stats.add(ex.summary())
    paper = FILES[name][2]
    assert stats.dataset_ratio == pytest.approx(paper, rel=0.05)
    assert stats.count == FILES[name][0] - len(FILES[name][1])
    # sum over sum
    assert stats.dataset_ratio == stats.sums["instruction"] / stats.sums["output"]
    # merging two halves gives the same statistics
    half = len(im) // 2
    a, b = LengthStats(), LengthStats()
    for i, ex in enumerate(im):
        if not isinstance(ex, RecordError):
            (a if i < half else b).add(ex.summary())
    assert b.merge(a) == stats


def test_batch_equals_single_on_a_sample(encoded):
    enc, data = encoded
    rng = random.Random(1234)
    pool = [(name, i) for name in FILES for i in range(len(data[name][0]))]
    sample = rng.sample(pool, 200)
    # make sure the sample holds a rejected record and a multi-turn LIMA record
    sample[0] = ("alpagasus_claude_t45_alpaca.jsonl", 2590)
    lima = data["lima_data.jsonl"][0]
    sample[1] = ("lima_data.jsonl", next(i for i, r in enumerate(lima) if len(r["messages"]) > 2))
    records = [data[name][0][i] for name, i in sample]
    batch = enc.encode_batch(records)
    for (name, i), rec, got in zip(sample, records, batch):
        try:
            single = enc.encode(rec)
        except RecordError as exc:
            assert isinstance(got, RecordError) and got.reason == exc.reason and got.message == exc.message
            continue
        assert not isinstance(got, RecordError)
        for f in ("input_ids", "roles", "loss_weights", "offsets", "role_token_counts", "weight_mass"):
            assert getattr(got, f).tobytes() == getattr(single, f).tobytes(), (name, i, f)
        assert got.summary() == single.summary() and got.text == single.text
        # and equal to the full-file batch encoded in the fixture
        assert got.input_ids.tobytes() == data[name][1][i].input_ids.tobytes()
