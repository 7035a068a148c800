"""Segment metrics read the role table: `loss_output` covers every output content role (assistant, reasoning,
tool_call), `loss_instruction` every instruction role, and `role_metrics` adds `loss_role/<name>` per role."""

from __future__ import annotations

import pytest
import torch

from helpers import make_trainer, rows_of
from im_data.roles import ROLE_LABELS, ROLE_TABLE
from shard_fixture import toy_conversations, write_shard_dir
from trl_plugin import load_prepared


def agentic_conversations(n: int) -> list[list[dict[str, str]]]:
    """Toy conversations with every role: the assistant reasons, calls a tool, reads its result and answers."""
    convs = []
    for i, conv in enumerate(toy_conversations(n, seed=1)):
        user, answer = conv[-2]["content"], conv[-1]["content"]
        convs.append(conv[:-1] + [
            {"role": "reasoning", "content": f"<think> the user said {user.split()[0]} </think>"},
            {"role": "tool_call", "content": f'<tool_call> {{"name": "echo", "n": {i % 5}}} </tool_call>'},
            {"role": "tool", "content": f"echo result {answer}"},
            {"role": "assistant", "content": answer},
        ])
    return convs


@pytest.fixture(scope="module")
def agentic_dir(tmp_path_factory, tok):
    return write_shard_dir(tmp_path_factory.mktemp("agentic"), tok, mode="it", n=8,
                           conversations=agentic_conversations(8))


def reference_nll_by_role(model, rows) -> tuple[dict[int, float], dict[int, int]]:
    """Σ NLL and token count per role code from plain cross-entropy on full logits, one example at a time."""
    nll, count = {}, {}
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor(row["input_ids"])[None]
            roles = torch.tensor(row["roles"])[1:]
            token_nll = torch.nn.functional.cross_entropy(model(input_ids=ids).logits[0, :-1], ids[0, 1:],
                                                          reduction="none")
            for code in roles.unique().tolist():
                nll[code] = nll.get(code, 0.0) + float(token_nll[roles == code].sum())
                count[code] = count.get(code, 0) + int((roles == code).sum())
    return nll, count


def mean_over(nll, count, codes):
    return sum(nll.get(c, 0.0) for c in codes) / sum(count.get(c, 0) for c in codes)


@pytest.mark.parametrize("role_metrics", [False, True])
def test_segment_and_role_metrics_cover_the_role_table(tok, make_model, tmp_path, agentic_dir, role_metrics):
    trainer = make_trainer(make_model(), str(agentic_dir), tok, tmp_path, eval_dataset=str(agentic_dir),
                           per_device_eval_batch_size=3, role_metrics=role_metrics)  # 3: rows of unequal length
    metrics = trainer.evaluate()
    rows = rows_of(load_prepared(agentic_dir, tok))
    nll, count = reference_nll_by_role(trainer.model.eval(), rows)
    assert set(count) == set(range(len(ROLE_TABLE)))  # the fixture holds every role of the table
    # the sides, read from the table: instruction = system+user+tool content, output = assistant+reasoning+tool_call
    instruction = [r.code for r in ROLE_TABLE if r.side == "instruction" and r.content]
    output = [r.code for r in ROLE_TABLE if r.side == "output" and r.content]
    assert [ROLE_LABELS[c] for c in output] == ["assistant", "reasoning", "tool_call"]
    assert metrics["eval_loss_instruction"] == pytest.approx(mean_over(nll, count, instruction), rel=1e-4)
    assert metrics["eval_loss_output"] == pytest.approx(mean_over(nll, count, output), rel=1e-4)
    # IT trains the output side only, but the instruction metric still scores the (untrained) instruction tokens
    assert all(w == 0 for row in rows for w, r in zip(row["loss_weights"], row["roles"]) if r in instruction)
    role_keys = {k for k in metrics if k.startswith("eval_loss_role/")}
    if not role_metrics:
        assert role_keys == set()
        return
    assert role_keys == {f"eval_loss_role/{label}" for label in ROLE_LABELS}
    for code, label in enumerate(ROLE_LABELS):
        assert metrics[f"eval_loss_role/{label}"] == pytest.approx(nll[code] / count[code], rel=1e-4), label


def test_role_metrics_during_training_change_nothing_else(tok, make_model, tmp_path, agentic_dir):
    def train(role_metrics):
        trainer = make_trainer(make_model(), str(agentic_dir), tok, tmp_path / str(role_metrics), max_steps=2,
                               per_device_train_batch_size=4, segment_metrics="all", role_metrics=role_metrics)
        trainer.train()
        return [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]

    logs, plain = train(True), train(False)
    assert len(logs) == len(plain) == 2
    for h, p in zip(logs, plain):
        assert {f"loss_role/{label}" for label in ROLE_LABELS} | {"loss_instruction", "loss_output"} <= h.keys()
        assert all(h[f"loss_role/{label}"] > 0 for label in ROLE_LABELS)
        assert not any(k.startswith("loss_role/") for k in p)
        # scoring the template tokens for their metric leaves the loss and TRL's own metrics untouched
        for key in ("loss", "loss_instruction", "loss_output", "entropy", "mean_token_accuracy", "num_tokens"):
            assert h[key] == pytest.approx(p[key], rel=1e-6), key
