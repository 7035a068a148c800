"""TEST FIXTURE ONLY: writes a shard directory shaped like `im-data prepare` output.

This is not the pipeline. It exists so the TRL plugin can be tested before (and independently of) the Beam
pipeline: it renders a few toy conversations with a fixed, hand-written template, assigns token roles the way the
contract in docs/DESIGN.md describes (template=0, system=1, user=2, tool=3, assistant=4, assistant_end=5; a message
whose role is ``reasoning`` or ``tool_call`` stands for that part of an assistant turn and gets code 6 / 7), applies
a role->weight table, and writes Arrow IPC stream shards plus a ``manifest.json`` built with the contract's own
:class:`im_data.dataset.Manifest` (so it cannot drift from what `prepare` writes).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from im_data.dataset import MANIFEST_FILE, Column, Counts, Manifest, ShardInfo, shard_path
from im_data.policy import WeightPolicy
from im_data.roles import INSTRUCTION_MASK, OUTPUT_MASK, ROLE_CODES, Role
from im_data.shards import SHARD_SCHEMA
from im_data.tokenizer import tokenizer_fingerprint

SCHEMA = SHARD_SCHEMA

_WORDS = (
    "the cat sat on a mat while rain fell over quiet hills and rivers ran toward distant seas "
    "under grey clouds people walked slowly home after work carrying bread milk apples books"
).split()


def toy_conversations(n: int, seed: int = 0, instruction_words: tuple[int, int] = (8, 30),
                      output_words: tuple[int, int] = (2, 8)) -> list[list[dict[str, str]]]:
    """``n`` deterministic toy conversations: long-ish user turns, short assistant turns (the IM regime)."""
    rng = random.Random(seed)
    convs = []
    for i in range(n):
        conv = []
        if i % 3 == 0:
            conv.append({"role": "system", "content": "be brief"})
        user = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(*instruction_words)))
        # the answer is a deterministic function of the question so the tiny model can learn something
        words = user.split()
        answer = " ".join(words[: rng.randint(*output_words)])
        conv += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        convs.append(conv)
    return convs


def encode_conversation(tok, conv: Sequence[dict[str, str]], weights: np.ndarray) -> dict[str, Any]:
    """Render with a fixed template: ``<bos> role: content \\n`` per message, ``<eos>`` after assistant content."""
    ids: list[int] = []
    roles: list[int] = []

    def add(text: str, role: int) -> None:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        roles.extend([role] * len(piece))

    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ids.append(bos)
    roles.append(int(Role.TEMPLATE))
    for msg in conv:
        add(f"{msg['role']}:", int(Role.TEMPLATE))
        add(" " + msg["content"], ROLE_CODES[msg["role"]])
        if msg["role"] == "assistant":
            ids.append(tok.eos_token_id)
            roles.append(int(Role.ASSISTANT_END))
        add("\n", int(Role.TEMPLATE))
    roles_arr = np.asarray(roles, dtype=np.int8)
    w = weights[roles_arr].astype(np.float32)
    ids_arr = np.asarray(ids, dtype=np.int32)
    n_instr = int(INSTRUCTION_MASK[roles_arr].sum())
    n_out = int(OUTPUT_MASK[roles_arr].sum())
    return {
        "input_ids": ids_arr.tolist(),
        "labels": np.where(w > 0, ids_arr, -100).astype(np.int32).tolist(),
        "loss_weights": w.tolist(),
        "roles": roles_arr.tolist(),
        "num_instruction_tokens": n_instr,
        "num_output_tokens": n_out,
        "num_output_tokens_kept": n_out,
        "truncated": False,
    }


def write_shard_dir(out_dir: str | Path, tok, *, mode: str = "im", policy: WeightPolicy | None = None,
                    n: int = 24, seed: int = 0, num_shards: int = 2, fmt: str = "arrow",
                    rows: list[dict[str, Any]] | None = None, fingerprint: str | None = None,
                    conversations: list | None = None) -> Path:
    """Write ``n`` toy examples as shards + ``manifest.json`` (+ a ``stats.json`` and empty ``rejects/``).

    ``rows`` overrides the encoded rows (to build broken datasets for guard tests); ``fingerprint`` overrides the
    tokenizer fingerprint written into the manifest.
    """
    out = Path(out_dir)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    (out / "rejects").mkdir(exist_ok=True)
    policy = policy or WeightPolicy.preset(mode)
    if rows is None:
        convs = conversations or toy_conversations(n, seed)
        table_w = policy.weights_array()
        rows = [encode_conversation(tok, c, table_w) for c in convs]
    rows = [dict(r, example_id=r.get("example_id") or hashlib.sha1(f"toy|{i}".encode()).hexdigest()[:16])
            for i, r in enumerate(rows)]
    shards = []
    bounds = np.linspace(0, len(rows), num_shards + 1).astype(int)
    for s in range(num_shards):
        part = rows[bounds[s]: bounds[s + 1]]
        table = pa.Table.from_pylist(part, schema=SCHEMA)
        name = shard_path(s, num_shards, fmt)
        path = out / name
        if fmt == "arrow":
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
        else:
            pq.write_table(table, path)
        shards.append(ShardInfo(name, table.num_rows, hashlib.sha256(path.read_bytes()).hexdigest()))
    (out / "stats.json").write_text(json.dumps({"count": len(rows)}))
    manifest = Manifest(
        tokenizer_name=getattr(tok, "name_or_path", "?"),
        tokenizer_fingerprint=fingerprint or tokenizer_fingerprint(tok),
        chat_template={"name": "test-fixture", "sha256": "0" * 64},
        policy=policy.to_dict(),
        policy_fingerprint=policy.fingerprint,
        role_codes=ROLE_CODES,
        format=fmt,
        columns=tuple(Column(f.name, str(f.type)) for f in SCHEMA),
        counts=Counts(read=len(rows), written=len(rows), rejected=0, rejected_by_reason={}, truncated=0),
        shards=tuple(shards),
        files=tuple(sorted([s.path for s in shards] + ["stats.json"])),
        card=None,
        package_version="test-fixture",
        created_at="1970-01-01T00:00:00Z",
    )
    (out / MANIFEST_FILE).write_bytes(manifest.to_json())
    return out
