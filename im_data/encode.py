"""Encoding: one record → aligned ``input_ids`` / ``roles`` / ``loss_weights``, built in lockstep.

Worked example (tulu template, IM policy; ``_`` marks a byte-level space, ``\\n`` a newline)::

    text:          <|user|>\\n  Add 2 and 3 \\n  <|assistant|>\\n  5   </s>           \\n
    roles:         template    user         template         asst assistant_end  template
    loss_weights:  0      0    1   1  1  1  0    0      0     1    1             0      (IM)
    loss_weights:  0      0    0   0  0  0  0    0      0     1    1             0      (IT)

``labels`` are ``input_ids`` where the weight is positive and -100 elsewhere; weights are *not* shifted here.
The shift happens once, in the loss (``log_probs`` is aligned with ``labels[:, 1:]``).

The batch path (:meth:`Encoder.encode_batch`) renders each record, tokenizes all texts with one call of the fast
tokenizer's batch encoder (with offsets), and maps characters to roles with numpy over the whole batch; the
per-record path (:meth:`Encoder.encode`) is the same code on a batch of one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import RecordError
from .formats import FormatOptions, normalize_record
from .policy import WeightPolicy
from .roles import INSTRUCTION_MASK, NUM_ROLES, ROLE_CODES, Role
from .templates import ChatTemplate, RenderedConversation, find_spans, render_empty
from .tokenizer import special_token_ids, tokenizer_fingerprint

TRUNCATION_MODES = ("keep_start", "drop")
IGNORE_INDEX = -100
_CONTENT, _AFTER = 16, 8  # char priority bands: content wins over assistant_end wins over template


@dataclasses.dataclass
class EncodedExample:
    """One encoded record. Arrays are aligned token for token (no shift)."""

    input_ids: np.ndarray  # int32 [n]
    roles: np.ndarray  # int8 [n], codes of im_data.roles.Role
    loss_weights: np.ndarray  # float32 [n]
    num_instruction_tokens: int  # before truncation
    num_output_tokens: int  # before truncation
    num_template_tokens: int  # before truncation (template + assistant_end)
    num_output_tokens_kept: int
    truncated: bool
    role_token_counts: np.ndarray  # int64 [6], after truncation
    weight_mass: np.ndarray  # float64 [6], after truncation
    text: str = ""
    offsets: np.ndarray | None = None  # int32 [n, 2] char offsets into text

    @property
    def labels(self) -> np.ndarray:
        return np.where(self.loss_weights > 0, self.input_ids, IGNORE_INDEX).astype(np.int32)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def summary(self) -> dict[str, Any]:
        """A small picklable dict for :class:`im_data.stats.LengthStats`."""
        return {
            "num_instruction_tokens": self.num_instruction_tokens,
            "num_output_tokens": self.num_output_tokens,
            "num_template_tokens": self.num_template_tokens,
            "truncated": self.truncated,
            "role_token_counts": self.role_token_counts.tolist(),
            "weight_mass": self.weight_mass.tolist(),
        }

    def to_row(self, example_id: str) -> dict[str, Any]:
        """The shard row (see docs/DESIGN.md for the column types)."""
        return {
            "input_ids": self.input_ids,
            "labels": self.labels,
            "loss_weights": self.loss_weights,
            "roles": self.roles,
            "example_id": example_id,
            "num_instruction_tokens": self.num_instruction_tokens,
            "num_output_tokens": self.num_output_tokens,
            "num_output_tokens_kept": self.num_output_tokens_kept,
            "truncated": self.truncated,
        }


def special_tokens_for_render(tokenizer: Any) -> dict[str, Any]:
    """The variables transformers passes to chat templates (``bos_token``, ``eos_token``, ...)."""
    mapping = dict(getattr(tokenizer, "special_tokens_map", {}) or {})
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        mapping.setdefault(name, getattr(tokenizer, name, None) or "")
    return mapping


class Encoder:
    """Turns records into :class:`EncodedExample` s for one tokenizer, template and weight policy.

    Heavy state (the tokenizer copy, the compiled template, lookup tables) is built once here; pipelines build
    one Encoder per worker in ``DoFn.setup``.
    """

    def __init__(self, tokenizer: Any, *, chat_template: str | ChatTemplate | None = None,
                 policy: WeightPolicy | None = None, max_length: int | None = None,
                 truncation: str = "keep_start", allow_special_tokens: bool = False,
                 format_options: FormatOptions | None = None, keep_text: bool = False):
        if truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {TRUNCATION_MODES}, got {truncation!r}")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.tokenizer = tokenizer
        self.template = (chat_template if isinstance(chat_template, ChatTemplate)
                         else ChatTemplate.resolve(chat_template, tokenizer))
        self.policy = policy if policy is not None else WeightPolicy.preset("im")
        self.max_length = max_length
        self.truncation = truncation
        self.allow_special_tokens = allow_special_tokens
        self.format_options = format_options or FormatOptions()
        self.keep_text = keep_text
        self._special_tokens = special_tokens_for_render(tokenizer)
        self._empty_render = render_empty(self.template, self._special_tokens)
        # a private copy of the Rust tokenizer, so padding/truncation state set elsewhere cannot leak in
        from tokenizers import Tokenizer

        self._backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_truncation()
        self._backend.no_padding()
        specials = special_token_ids(tokenizer)
        self._is_special = np.zeros(max(self._backend.get_vocab_size(with_added_tokens=True),
                                        max(specials, default=0) + 1), dtype=bool)
        self._is_special[list(specials)] = True
        self._weights = self.policy.weights_array()
        self._id_to_token = None

    # -- public API ---------------------------------------------------------------------------
    def encode(self, record: Mapping[str, Any]) -> EncodedExample:
        """Encode one record; raise :class:`RecordError` if it is rejected."""
        result = self.encode_batch([record])[0]
        if isinstance(result, RecordError):
            raise result
        return result

    def encode_messages(self, messages: Sequence[Mapping[str, str]]) -> EncodedExample:
        return self.encode({"messages": list(messages)})

    def encode_batch(self, records: Sequence[Mapping[str, Any]]) -> list[EncodedExample | RecordError]:
        """Encode many records; each result is an :class:`EncodedExample` or the :class:`RecordError` for it."""
        results: list[EncodedExample | RecordError | None] = [None] * len(records)
        rendered: list[tuple[int, RenderedConversation]] = []
        for i, record in enumerate(records):
            try:
                messages = normalize_record(record, self.format_options)
                rendered.append((i, find_spans(self.template, messages, self._special_tokens, self._empty_render)))
            except RecordError as exc:
                results[i] = exc
        if rendered:
            encodings = self._backend.encode_batch([r.text for _, r in rendered], add_special_tokens=False)
            ids_list = [np.asarray(e.ids, dtype=np.int32) for e in encodings]
            offsets_list = [np.asarray(e.offsets, dtype=np.int32).reshape(-1, 2) for e in encodings]
            roles_list = self._map_roles([r for _, r in rendered], offsets_list, ids_list)
            for (i, conv), ids, offsets, roles in zip(rendered, ids_list, offsets_list, roles_list):
                try:
                    results[i] = self._finish(conv, ids, offsets, roles)
                except RecordError as exc:
                    results[i] = exc
        return results  # type: ignore[return-value]

    def metadata(self) -> dict[str, Any]:
        """What a shard must say about how it was made."""
        return {
            "tokenizer": {"name_or_path": getattr(self.tokenizer, "name_or_path", None),
                          "fingerprint": tokenizer_fingerprint(self.tokenizer)},
            "chat_template": {"name": self.template.name, "sha256": self.template.sha256},
            "policy": self.policy.to_dict(),
            "policy_fingerprint": self.policy.fingerprint,
            "role_codes": dict(ROLE_CODES),
            "max_length": self.max_length,
            "truncation": self.truncation,
            "allow_special_tokens": self.allow_special_tokens,
        }

    # -- internals ----------------------------------------------------------------------------
    def _map_roles(self, convs: Sequence[RenderedConversation], offsets_list: Sequence[np.ndarray],
                   ids_list: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Character spans → token roles for the whole batch at once (numpy, no per-token Python)."""
        lengths = np.fromiter((len(c.text) + 1 for c in convs), dtype=np.int64, count=len(convs))
        char_base = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        key = np.zeros(int(lengths.sum()), dtype=np.int16)  # +1 sentinel char per record keeps indices in range
        region = np.zeros_like(key, dtype=np.int32)
        n_regions = 0
        for base, conv in zip(char_base.tolist(), convs):
            for start, end in conv.after_assistant:
                n_regions += 1
                key[base + start: base + end] = _AFTER + Role.ASSISTANT_END
                region[base + start: base + end] = n_regions
            for start, end, role in conv.content_spans:
                key[base + start: base + end] = _CONTENT + ROLE_CODES[role]
        counts = np.fromiter((len(o) for o in offsets_list), dtype=np.int64, count=len(offsets_list))
        if counts.sum() == 0:
            return [np.zeros(0, dtype=np.int8) for _ in convs]
        offsets = np.concatenate(offsets_list).astype(np.int64) + np.repeat(char_base, counts)[:, None]
        bounds = offsets.reshape(-1)  # s0, e0, s1, e1, ... ; reduceat over [s_i, e_i)
        token_key = np.maximum.reduceat(key, bounds)[::2]
        roles = np.where(token_key >= _CONTENT, token_key - _CONTENT,
                         np.where(token_key >= _AFTER, int(Role.ASSISTANT_END), int(Role.TEMPLATE))).astype(np.int8)
        # assistant_end stops at (and includes) the first special token of each region; the rest is template
        cand = np.flatnonzero(roles == Role.ASSISTANT_END)
        if cand.size:
            ids = np.concatenate(ids_list)
            reg = region[offsets[cand, 0]]
            is_sp = self._is_special[ids[cand]]
            first_special = np.full(n_regions + 1, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(first_special, reg[is_sp], cand[is_sp])
            roles[cand[cand > first_special[reg]]] = Role.TEMPLATE
        return np.split(roles, np.cumsum(counts)[:-1])

    def _finish(self, conv: RenderedConversation, ids: np.ndarray, offsets: np.ndarray,
                roles: np.ndarray) -> EncodedExample:
        if not self.allow_special_tokens:
            bad = np.flatnonzero((roles >= Role.SYSTEM) & (roles <= Role.ASSISTANT) & self._is_special[ids])
            if bad.size:
                t = int(bad[0])
                raise RecordError("special_token_in_content",
                                  f"{Role(int(roles[t])).label} content contains the special token "
                                  f"{conv.text[offsets[t, 0]:offsets[t, 1]]!r} (id {int(ids[t])}); "
                                  "pass allow_special_tokens to accept it")
        full_counts = np.bincount(roles, minlength=NUM_ROLES)
        n_instr = int(full_counts[INSTRUCTION_MASK].sum())
        n_out = int(full_counts[Role.ASSISTANT])
        n_tmpl = int(full_counts[Role.TEMPLATE] + full_counts[Role.ASSISTANT_END])
        truncated = False
        if self.max_length is not None and len(ids) > self.max_length:
            if self.truncation == "drop":
                raise RecordError("too_long", f"{len(ids)} tokens > max_length {self.max_length} (truncation=drop)")
            truncated = True
            ids, roles, offsets = ids[: self.max_length], roles[: self.max_length], offsets[: self.max_length]
        weights = self._weights[roles]
        if self.policy.last_assistant_only:
            early = (offsets[:, 1] <= conv.last_assistant_start) & (roles >= Role.ASSISTANT)
            weights = np.where(early, np.float32(0), weights)
        counts = np.bincount(roles, minlength=NUM_ROLES)
        kept = int(counts[Role.ASSISTANT])
        if truncated and kept == 0:
            raise RecordError("too_long", f"truncation to max_length {self.max_length} cut the output to nothing")
        if not (weights > 0).any():
            raise RecordError("no_trainable_tokens", f"no token has a positive weight under policy "
                                                     f"{self.policy.name!r}")
        return EncodedExample(
            input_ids=ids, roles=roles, loss_weights=weights.astype(np.float32, copy=False),
            num_instruction_tokens=n_instr, num_output_tokens=n_out, num_template_tokens=n_tmpl,
            num_output_tokens_kept=kept, truncated=truncated, role_token_counts=counts.astype(np.int64),
            weight_mass=np.bincount(roles, weights=weights, minlength=NUM_ROLES),
            text=conv.text if self.keep_text else "", offsets=offsets if self.keep_text else None)

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """Decoded text of each token id (for display)."""
        return [self._backend.decode([int(i)], skip_special_tokens=False) for i in ids]
