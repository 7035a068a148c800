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
import hashlib
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import RecordError, internal_error
from .formats import FormatOptions, read_conversation
from .limits import MAX_LENGTH_LIMIT, LengthBound, check_length_bound
from .policy import WeightPolicy
from .roles import (INSTRUCTION_MASK, NUM_ROLES, OUTPUT_MASK, OUTPUT_SIDE_MASK, ROLE_CODES, TEMPLATE_COUNT_MASK,
                    Role)
from .spans import AFTER, CONTENT, RenderedConversation, SpanFinder, role_of_key
from .templates import ChatTemplate, reserved_variables
from .tokenizer import special_token_ids, tokenizer_fingerprint

TRUNCATION_MODES = ("keep_start", "drop")
IGNORE_INDEX = -100


def labels_from_weights(input_ids: Any, loss_weights: Any) -> Any:
    """The one labels rule: ``input_ids`` where the loss weight is > 0, else :data:`IGNORE_INDEX` (-100).

    Works on numpy arrays (the shards, the TRL plugin's Arrow batches; the result keeps ``input_ids``' integer
    type) and on torch tensors (the collators; duck-typed, so that this module never imports torch)."""
    if hasattr(input_ids, "masked_fill"):  # a torch tensor
        return input_ids.masked_fill(~(loss_weights > 0), IGNORE_INDEX)
    ids = np.asarray(input_ids)
    return np.where(np.asarray(loss_weights) > 0, ids, IGNORE_INDEX).astype(ids.dtype, copy=False)


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
        return labels_from_weights(self.input_ids, self.loss_weights).astype(np.int32, copy=False)

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


def _byte_length_table(backend: Any, size: int) -> np.ndarray | None:
    """UTF-8 byte length of every token id, for byte-level BPE tokenizers without a normaliser (each vocab
    character stands for one byte); ``None`` for any other tokenizer."""
    try:
        state = json.loads(backend.to_str())
    except Exception:  # pragma: no cover - tokenizers that cannot serialise
        return None
    normalizer = state.get("normalizer")
    if normalizer and not (normalizer.get("type") == "Sequence" and not normalizer.get("normalizers")):
        return None
    if (state.get("decoder") or {}).get("type") != "ByteLevel" or state["model"].get("type") != "BPE":
        return None
    table = np.zeros(size, dtype=np.int64)
    for token, idx in backend.get_vocab(with_added_tokens=False).items():
        if idx < size:
            table[idx] = len(token)
    for added in state.get("added_tokens", []):
        if added.get("lstrip") or added.get("rstrip") or added["id"] >= size:
            return None
        table[added["id"]] = len(added["content"].encode("utf-8"))
    return table


def _cached_byte_length_table(tokenizer: Any, backend: Any, size: int) -> np.ndarray | None:
    """:func:`_byte_length_table`, kept on the tokenizer object (building it parses the whole vocabulary)."""
    cached = getattr(tokenizer, "_im_data_byte_len", None)
    if cached is not None and cached[0] == size:
        return cached[1]
    table = _byte_length_table(backend, size)
    try:
        tokenizer._im_data_byte_len = (size, table)
    except AttributeError:  # pragma: no cover - exotic tokenizer classes
        pass
    return table


@dataclasses.dataclass(frozen=True)
class _TokenArrays:
    """A batch's tokens concatenated (see :meth:`Encoder._token_arrays`)."""

    ids: np.ndarray  # int32 [total]
    counts: np.ndarray  # tokens per record
    seg: np.ndarray  # record of each token
    starts: np.ndarray  # first token of each record
    offsets: np.ndarray  # [total, 2] character offsets within the record's text
    char_base: np.ndarray  # first character of each record in the joined texts
    total_chars: int


@dataclasses.dataclass
class PreparedBatch:
    """Stage-1 output: per-record results so far (errors), and the rendered conversations to tokenize."""

    results: list  # EncodedExample | RecordError | None per input record
    index: list[int]  # input position of each rendered conversation
    convs: list[RenderedConversation]


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
                 format_options: FormatOptions | None = None, keep_text: bool = False,
                 chat_template_kwargs: Mapping[str, Any] | None = None, allow_unrendered: Sequence[str] = ()):
        if truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {TRUNCATION_MODES}, got {truncation!r}")
        if max_length is not None and not 2 <= max_length <= MAX_LENGTH_LIMIT:
            raise ValueError(f"max_length must be in [2, {MAX_LENGTH_LIMIT}], got {max_length}")
        self.tokenizer = tokenizer
        self.template = (chat_template if isinstance(chat_template, ChatTemplate)
                         else ChatTemplate.resolve(chat_template, tokenizer))
        self.policy = policy if policy is not None else WeightPolicy.preset("im")
        self.max_length = max_length
        self.truncation = truncation
        self.allow_special_tokens = allow_special_tokens
        self.format_options = format_options or FormatOptions()
        self.keep_text = keep_text
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.allow_unrendered = tuple(sorted(set(allow_unrendered)))
        self._special_tokens = special_tokens_for_render(tokenizer)
        self._reserved = reserved_variables(self._special_tokens)
        clash = sorted(self._reserved & self.chat_template_kwargs.keys())
        if clash:
            raise ValueError(f"--chat-template-kwargs may not set {', '.join(clash)}: the renderer sets it (the "
                             "tokenizer's special tokens, messages, tools, documents, add_generation_prompt)")
        self._backend = tokenizer.backend_tokenizer
        specials = special_token_ids(tokenizer)
        self._special_strings = tuple(sorted({t for t in tokenizer.convert_ids_to_tokens(sorted(specials)) if t}))
        self._spans = SpanFinder(self.template, self._special_tokens, template_kwargs=self.chat_template_kwargs,
                                 allow_unrendered=self.allow_unrendered, special_strings=self._special_strings)
        self._is_special = np.zeros(max(self._backend.get_vocab_size(with_added_tokens=True),
                                        max(specials, default=0) + 1), dtype=bool)
        self._is_special[list(specials)] = True
        self._weights = self.policy.weights_array()
        self._byte_len = _cached_byte_length_table(tokenizer, self._backend, len(self._is_special))
        self._id_to_token = None
        self._length_bound = LengthBound.of(max_length, truncation, self._byte_len)  # too_long before tokenizing

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
        prepared = self.prepare(records)
        return self.complete(prepared, self.tokenize(prepared))

    def encode_batches(self, batches: Iterable[Sequence[Mapping[str, Any]]]
                       ) -> Iterator[list[EncodedExample | RecordError]]:
        """Like ``map(encode_batch, batches)``, but batch k+1 is tokenized (Rust, without the GIL) on a helper
        thread while batch k is completed in Python. Results are identical and in order."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="im-data-tokenize") as pool:
            pending = None
            for batch in batches:
                prepared = self.prepare(batch)
                future = pool.submit(self.tokenize, prepared)
                if pending is not None:
                    yield self.complete(pending[0], pending[1].result())
                pending = (prepared, future)
            if pending is not None:
                yield self.complete(pending[0], pending[1].result())

    # -- the three stages of encode_batch -----------------------------------------------------
    def prepare(self, records: Sequence[Mapping[str, Any]]) -> "PreparedBatch":
        """Stage 1 (Python): validate, normalise and render each record, and find its spans."""
        results: list[EncodedExample | RecordError | None] = [None] * len(records)
        index, convs = [], []
        for i, record in enumerate(records):
            try:
                conversation = read_conversation(record, self.format_options)
                if conversation.template_kwargs:
                    self._check_record_kwargs(conversation.template_kwargs)
                self._reject_special_tokens_in_arguments(conversation)
                convs.append(self._spans.find(conversation))
                check_length_bound(convs[-1].text, self._length_bound)
                index.append(i)
            except RecordError as exc:
                results[i] = exc.with_traceback(None)  # a kept traceback would hold the batch (a reference cycle)
                del convs[len(index):]  # a conversation rejected after rendering (length bound)
            except Exception as exc:  # noqa: BLE001 - one record never kills a batch
                results[i] = internal_error(exc)
                del convs[len(index):]
        return PreparedBatch(results, index, convs)

    def _check_record_kwargs(self, kwargs: Mapping[str, Any]) -> None:
        """A record's own chat_template_kwargs never replace the special tokens (or the render's variables), and,
        rendered as template text, hold no special-token string."""
        clash = sorted(self._reserved & kwargs.keys())
        if clash:
            raise RecordError("reserved_template_variable", f"chat_template_kwargs set {', '.join(clash)}, which the "
                                                            "renderer sets itself (special tokens, messages, ...)")
        if not self.allow_special_tokens:
            text = json.dumps(kwargs, ensure_ascii=False, default=str)
            found = next((t for t in self._special_strings if t in text), None)
            if found is not None:
                raise RecordError("special_token_in_content", f"chat_template_kwargs contain the special token "
                                                              f"{found!r}; pass --allow-special-tokens to accept it")

    def _reject_special_tokens_in_arguments(self, conversation: Any) -> None:
        """Tool-call arguments are rendered as the template likes (often re-serialised), so their characters are
        not traced through the render: check their text for special-token strings before rendering."""
        if self.allow_special_tokens:
            return
        for j, message in enumerate(conversation.messages):
            for k, call in enumerate(message.get("tool_calls") or ()):
                function = call.get("function", call) if isinstance(call, Mapping) else {}
                arguments = function.get("arguments") if isinstance(function, Mapping) else None
                text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
                found = next((t for t in self._special_strings if t in text), None)
                if found is not None:
                    raise RecordError("special_token_in_content",
                                      f"message {j} (assistant) tool call {k}: its arguments contain the special "
                                      f"token {found!r}; pass --allow-special-tokens to accept it")

    def tokenize(self, prepared: "PreparedBatch") -> list[Any]:
        """Stage 2 (Rust): one batch call of the fast tokenizer, with offsets. Releases the GIL."""
        if not prepared.convs:
            return []
        return self._rust().encode_batch([c.text for c in prepared.convs], add_special_tokens=False)

    def complete(self, prepared: "PreparedBatch", encodings: Sequence[Any]) -> list[EncodedExample | RecordError]:
        """Stage 3 (numpy over the whole batch), in named steps: token arrays, roles, special tokens, truncation,
        weights, counts, rejections, examples. Each step sees the whole batch; a record's first error wins."""
        results = prepared.results
        if not prepared.convs:
            return results  # type: ignore[return-value]
        batch = self._token_arrays(prepared.convs, encodings)
        roles, in_data = self._map_roles(prepared.convs, batch)
        errors: dict[int, RecordError] = {}
        self._reject_special_tokens(prepared.convs, batch, roles, in_data, errors)
        keep_len, keep = self._truncate(batch, errors)
        weights = self._token_weights(prepared.convs, batch, roles)
        counts = self._count(batch, roles, weights, keep, keep_len)
        self._reject_untrainable(counts, errors)
        for r, (i, conv) in enumerate(zip(prepared.index, prepared.convs)):
            results[i] = errors[r] if r in errors else self._example(r, conv, batch, roles, weights, counts)
        return results  # type: ignore[return-value]

    # -- the steps of complete ------------------------------------------------------------------------------------
    def _token_arrays(self, convs: Sequence[RenderedConversation], encodings: Sequence[Any]) -> "_TokenArrays":
        """The batch's tokens concatenated: ids, record of each token, each record's first token and first
        character (texts joined with one separator character), and character offsets."""
        k = len(convs)
        counts = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=k)
        total = int(counts.sum())
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int32, count=total)
        seg = np.repeat(np.arange(k), counts)
        char_len = np.fromiter((len(c.text) + 1 for c in convs), dtype=np.int64, count=k)
        char_base = np.concatenate([[0], np.cumsum(char_len)[:-1]])
        offsets = self._offsets_from_byte_lengths(convs, ids, counts, seg, char_base)
        if offsets is None:
            offsets = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(
                e.offsets for e in encodings)), dtype=np.int64, count=2 * total).reshape(-1, 2)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return _TokenArrays(ids, counts, seg, starts, offsets, char_base, int(char_len.sum()))

    def _reject_special_tokens(self, convs: Sequence[RenderedConversation], batch: "_TokenArrays",
                               roles: np.ndarray, in_data: np.ndarray, errors: dict[int, RecordError]) -> None:
        """A special token inside a field's value (not the template's own text) rejects the record."""
        if self.allow_special_tokens:
            return
        bad = np.flatnonzero(in_data & self._is_special[batch.ids])
        for t in bad[np.unique(batch.seg[bad], return_index=True)[1]].tolist():
            r, local = int(batch.seg[t]), t - int(batch.starts[batch.seg[t]])
            s0, e0 = batch.offsets[t]
            errors[r] = RecordError("special_token_in_content",
                                    f"{Role(int(roles[t])).label} content contains the special token "
                                    f"{convs[r].text[s0:e0]!r} (id {int(batch.ids[t])}, token {local}); "
                                    "pass --allow-special-tokens to accept it")

    def _truncate(self, batch: "_TokenArrays", errors: dict[int, RecordError]) -> tuple[np.ndarray, np.ndarray]:
        """Tokens kept per record (``max_length``, keep_start) and the kept-token mask; truncation=drop rejects."""
        keep_len = batch.counts.copy()
        if self.max_length is not None:
            if self.truncation == "drop":
                for r in np.flatnonzero(batch.counts > self.max_length).tolist():
                    errors.setdefault(r, RecordError("too_long", f"{int(batch.counts[r])} tokens > --max-length "
                                                                 f"{self.max_length} (--truncation drop)"))
            keep_len = np.minimum(batch.counts, self.max_length)
        position = np.arange(batch.ids.size) - np.repeat(batch.starts, batch.counts)
        return keep_len, position < np.repeat(keep_len, batch.counts)

    def _token_weights(self, convs: Sequence[RenderedConversation], batch: "_TokenArrays",
                       roles: np.ndarray) -> np.ndarray:
        """The policy's weight of each token's role; ``last_assistant_only`` zeroes output before the last turn."""
        weights = self._weights[roles]
        if self.policy.last_assistant_only:
            last_start = np.fromiter((c.last_assistant_start for c in convs), dtype=np.int64, count=len(convs))
            early = (batch.offsets[:, 1] <= np.repeat(last_start, batch.counts)) & OUTPUT_SIDE_MASK[roles]
            weights[early] = 0
        return weights

    def _count(self, batch: "_TokenArrays", roles: np.ndarray, weights: np.ndarray, keep: np.ndarray,
               keep_len: np.ndarray) -> dict[str, np.ndarray]:
        """Per record: role counts before truncation (the dataset's true lengths) and after, weight mass."""
        k, seg = len(batch.counts), batch.seg
        full = np.bincount(seg * NUM_ROLES + roles, minlength=k * NUM_ROLES).reshape(k, NUM_ROLES)
        kept_seg_role = seg[keep] * NUM_ROLES + roles[keep]
        return {
            "instruction": full[:, INSTRUCTION_MASK].sum(axis=1),
            "output": full[:, OUTPUT_MASK].sum(axis=1),
            "template": full[:, TEMPLATE_COUNT_MASK].sum(axis=1),
            "kept": np.bincount(kept_seg_role, minlength=k * NUM_ROLES).reshape(k, NUM_ROLES),
            "mass": np.bincount(kept_seg_role, weights=weights[keep], minlength=k * NUM_ROLES).reshape(k, NUM_ROLES),
            "trainable": np.bincount(seg[keep], weights=weights[keep] > 0, minlength=k),
            "keep_len": keep_len,
            "truncated": keep_len < batch.counts,
        }

    def _reject_untrainable(self, counts: dict[str, np.ndarray], errors: dict[int, RecordError]) -> None:
        """Truncation that cut the output to nothing is too_long; nothing weighted is no_trainable_tokens."""
        cut = counts["truncated"] & (counts["kept"][:, OUTPUT_MASK].sum(axis=1) == 0)
        for r in np.flatnonzero(cut).tolist():
            errors.setdefault(r, RecordError("too_long", f"truncation to --max-length {self.max_length} cut the "
                                                         "output to nothing"))
        for r in np.flatnonzero(counts["trainable"] == 0).tolist():
            errors.setdefault(r, RecordError("no_trainable_tokens", "no token has a positive weight under "
                                                                    f"policy {self.policy.name!r}"))

    def _example(self, r: int, conv: RenderedConversation, batch: "_TokenArrays", roles: np.ndarray,
                 weights: np.ndarray, counts: dict[str, np.ndarray]) -> EncodedExample:
        lo = int(batch.starts[r])
        hi = lo + int(counts["keep_len"][r])
        kept = counts["kept"][r]
        return EncodedExample(
            input_ids=batch.ids[lo:hi], roles=roles[lo:hi], loss_weights=weights[lo:hi],
            num_instruction_tokens=int(counts["instruction"][r]), num_output_tokens=int(counts["output"][r]),
            num_template_tokens=int(counts["template"][r]), num_output_tokens_kept=int(kept[OUTPUT_MASK].sum()),
            truncated=bool(counts["truncated"][r]), role_token_counts=kept.astype(np.int64),
            weight_mass=counts["mass"][r],
            text=conv.text if self.keep_text else "",
            offsets=batch.offsets[lo:hi].astype(np.int32) if self.keep_text else None)

    def metadata(self) -> dict[str, Any]:
        """What a shard must say about how it was made."""
        return {
            "tokenizer": {"name_or_path": getattr(self.tokenizer, "name_or_path", None),
                          "fingerprint": tokenizer_fingerprint(self.tokenizer)},
            "chat_template": {"name": self.template.name, "sha256": self.template.sha256,
                              "kwargs": self.chat_template_kwargs, "fingerprint": self._template_fingerprint()},
            "policy": self.policy.to_dict(),
            "policy_fingerprint": self.policy.fingerprint,
            "role_codes": dict(ROLE_CODES),
            "max_length": self.max_length,
            "truncation": self.truncation,
            "allow_special_tokens": self.allow_special_tokens,
            "allow_unrendered": list(self.allow_unrendered),
            "split_inline_reasoning": self.format_options.split_inline_reasoning,
        }

    def _template_fingerprint(self) -> str:
        """16 hex digits over the template source and the chat template kwargs: what the render depends on."""
        kwargs = json.dumps(self.chat_template_kwargs, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(f"{self.template.sha256}\n{kwargs}".encode("utf-8")).hexdigest()[:16]

    # -- internals ----------------------------------------------------------------------------
    def _rust(self):
        """The Rust tokenizer, or a private copy of it if padding/truncation were switched on elsewhere
        (``tokenizer(..., truncation=True)`` leaves that state on the shared object)."""
        backend = self._backend
        if backend.truncation is not None or backend.padding is not None:
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(backend.to_str())
            backend.no_truncation()
            backend.no_padding()
            self._backend = backend
        return backend

    def _offsets_from_byte_lengths(self, convs: Sequence[RenderedConversation], ids: np.ndarray,
                                   counts: np.ndarray, seg: np.ndarray, char_base: np.ndarray
                                   ) -> np.ndarray | None:
        """Character offsets of every token from the byte length of each token id, for byte-level BPE
        tokenizers whose tokens concatenate to exactly the UTF-8 bytes of the text (checked per record).

        Fetching offsets from the Rust encodings builds a Python tuple per token; this does the same with a
        lookup table and cumulative sums. ``None`` when the tokenizer or a record does not qualify (the caller
        then uses the tokenizer's own offsets, which give the same result)."""
        if self._byte_len is None or ids.size == 0:
            return None
        k = len(convs)
        blob = np.frombuffer("\x00".join([c.text for c in convs] + [""]).encode("utf-8"), dtype=np.uint8)
        is_char_start = (blob & 0xC0) != 0x80
        char_of_byte = np.cumsum(is_char_start) - 1
        byte_base = np.flatnonzero(is_char_start)[char_base]
        record_bytes = np.diff(np.append(byte_base, blob.size)) - 1
        token_bytes = self._byte_len[ids]
        if not np.array_equal(np.bincount(seg, weights=token_bytes, minlength=k), record_bytes):
            return None
        cum = np.cumsum(token_bytes)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        before = np.concatenate([[0], cum])[first]  # cumulative bytes before each record's first token
        ends = cum - before[seg] + byte_base[seg]
        starts = ends - token_bytes
        start_char = char_of_byte[starts]
        end_char = np.where(token_bytes > 0, char_of_byte[np.maximum(ends - 1, 0)] + 1, start_char)
        return np.stack([start_char, end_char], axis=1) - char_base[seg][:, None]

    def _map_roles(self, convs: Sequence[RenderedConversation], batch: "_TokenArrays"
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Character spans → token roles for the whole batch at once (numpy, no per-token Python), and whether
        each token lies in a field's value (for the special-token check).

        A token takes the highest character key it overlaps (see :mod:`im_data.spans`: the largest content role,
        then assistant_end, then template); a special token takes its first character's (an ``rstrip`` special
        token that swallows content whitespace stays template)."""
        key = np.zeros(batch.total_chars, dtype=np.int16)  # +1 separator char per record keeps indices in range
        data = np.zeros(batch.total_chars, dtype=np.int8)  # 1 where a field's value is (whatever role wins there)
        region = np.zeros_like(key, dtype=np.int32)
        n_regions = 0
        for base, conv in zip(batch.char_base.tolist(), convs):
            for start, end in conv.after_assistant:
                n_regions += 1
                key[base + start: base + end] = AFTER
                region[base + start: base + end] = n_regions
            for start, end, k in conv.spans:  # wrapper then data spans, in writing order
                key[base + start: base + end] = k
                if k >= CONTENT and k % 2:  # a data span: a wrapper written over it later keeps it data
                    data[base + start: base + end] = 1
        if batch.ids.size == 0:
            return np.zeros(0, dtype=np.int8), np.zeros(0, dtype=bool)
        global_offsets = batch.offsets + batch.char_base[batch.seg][:, None]
        token_key = np.maximum.reduceat(key, global_offsets.reshape(-1))[::2]  # max over [s_i, e_i)
        special = self._is_special[batch.ids]
        token_key[special] = key[global_offsets[special, 0]]
        roles = role_of_key(token_key).astype(np.int8)
        token_data = np.maximum.reduceat(data, global_offsets.reshape(-1))[::2]
        token_data[special] = data[global_offsets[special, 0]]
        in_data = token_data.astype(bool)
        # assistant_end stops at (and includes) the first special token of each region; the rest is template
        cand = np.flatnonzero(roles == Role.ASSISTANT_END)
        if cand.size:
            reg = region[global_offsets[cand, 0]]
            is_sp = special[cand]
            first_special = np.full(n_regions + 1, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(first_special, reg[is_sp], cand[is_sp])
            roles[cand[cand > first_special[reg]]] = Role.TEMPLATE
        return roles, in_data

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """Decoded text of each token id (for display)."""
        return [self._backend.decode([int(i)], skip_special_tokens=False) for i in ids]
