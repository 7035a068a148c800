"""The per-token weighted loss in plain PyTorch: any trainer, any loop (no TRL, no transformers, no Beam).

Import it as ``im_data.loss`` (``import im_data`` itself never imports torch). Tensors follow the shard columns,
unshifted: ``loss_weights`` / ``labels`` / ``input_ids`` / ``roles`` are ``[batch, seq]``; the model's next-token
scores are aligned with ``labels[:, 1:]`` (the shift happens here, once).

The loss of an optimizer *window* (every micro-batch of one gradient-accumulation window, on every process) is::

    weight:    Σ w·nll / Σ w
    tokens:    Σ w·nll / #(w > 0)
    sequence:  mean over documents d of (Σ_d w·nll / Σ_d w)      (documents: rows, or packed documents)

:func:`window_normalizer` counts the denominator ``N`` over the window's micro-batches and across processes; each
micro-batch then contributes ``Σ m·nll / N`` (:func:`weighted_loss`), where ``m = w`` (or ``w / Σ_d w`` for
``sequence``). Summed over the window's micro-batches (and ranks), that is the window's loss, so splitting a batch
into micro-batches or processes does not change the gradients.

Packed rows: where a batch carries ``position_ids`` and no ``attention_mask`` (padding-free, as TRL and
:class:`im_data.torch_data.WeightedCollator` build it), every ``position_ids == 0`` starts a document: its first
token is never a target (it would be predicted from the previous document) and the ``sequence`` normaliser counts
each document on its own.

:class:`SegmentMetrics` keeps the per-role and per-side metrics (``loss_instruction``, ``loss_output``,
``loss_role/<name>``): the *unweighted* mean NLL of each side's tokens, whatever their weights.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F

from .encode import IGNORE_INDEX
from .roles import INSTRUCTION_ROLES, NUM_ROLES, OUTPUT_ROLES, ROLE_LABELS

NORMALIZATIONS = ("weight", "tokens", "sequence")
#: role value of padding and of the first token of each packed document (no segment)
NO_ROLE = -1
#: ``loss_instruction`` / ``loss_output``: the content roles of each side of the role table
SEGMENTS = {"instruction": tuple(int(r) for r in INSTRUCTION_ROLES), "output": tuple(int(r) for r in OUTPUT_ROLES)}
#: slots of the metric accumulators: role code - NO_ROLE; slot 0 collects padding and document starts
SLOTS = NUM_ROLES - NO_ROLE
_TINY = torch.finfo(torch.float32).tiny


def _sum_dtype(device: torch.device) -> torch.dtype:
    """Normaliser sums are kept in float64 (exact for float32 weights, so independent of how the window is split
    into micro-batches or processes); float32 where the device has no float64 (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def check_normalization(normalization: str) -> str:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"loss_normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    return normalization


# ------------------------------------------------------------------------------------------- documents
def is_packed(batch: Mapping[str, Any]) -> bool:
    """A padding-free batch: documents are marked by ``position_ids == 0`` (there is no ``attention_mask``)."""
    return batch.get("position_ids") is not None and batch.get("attention_mask") is None


def document_starts(batch: Mapping[str, Any], shape: torch.Size | None = None) -> torch.Tensor:
    """``[batch, seq]`` bool: where a document starts (column 0, and every ``position_ids == 0`` of a packed
    batch)."""
    shape = shape if shape is not None else batch["input_ids"].shape
    device = batch["input_ids"].device
    starts = torch.zeros(shape, dtype=torch.bool, device=device)
    if is_packed(batch):
        starts |= batch["position_ids"] == 0
    starts[:, 0] = True
    return starts


def document_ids(batch: Mapping[str, Any], shape: torch.Size | None = None) -> tuple[torch.Tensor, int]:
    """Per-position document index (numbered over the whole batch) and the number of documents.

    Each row is one document, or, in a packed batch, each run that starts at ``position_ids == 0``. Padding forms
    extra zero-weight documents, which the normalisers ignore."""
    starts = document_starts(batch, shape)
    doc = starts.flatten().cumsum(0) - 1
    return doc.view(starts.shape), int(doc[-1].item()) + 1 if doc.numel() else 0


def position_ids_from_lengths(seq_lengths: Iterable[int], device: Any = None) -> torch.Tensor:
    """``position_ids`` of one packed row of documents of these lengths: ``0..n-1`` for each."""
    return torch.cat([torch.arange(int(n), device=device) for n in seq_lengths]) if seq_lengths else \
        torch.zeros(0, dtype=torch.long, device=device)


# ------------------------------------------------------------------------------------------- normaliser
def token_multipliers(batch: Mapping[str, Any], normalization: str = "weight",
                      weights_key: str = "loss_weights") -> tuple[torch.Tensor, torch.Tensor]:
    """``(m, n)`` for one micro-batch: per-target multipliers ``m`` aligned with ``labels[:, 1:]`` and this
    micro-batch's share ``n`` (a float64 scalar) of the window normaliser."""
    check_normalization(normalization)
    weights = batch[weights_key]
    target_w = weights[:, 1:]
    if is_packed(batch):  # a document's first token is predicted from the previous document: never a target
        target_w = target_w.masked_fill(batch["position_ids"][:, 1:] == 0, 0.0)
    acc = _sum_dtype(weights.device)
    if normalization == "weight":
        return target_w, target_w.sum(dtype=acc)
    if normalization == "tokens":
        return target_w, (target_w > 0).sum().to(acc)
    doc, n_docs = document_ids(batch, weights.shape)
    doc = doc[:, 1:]
    mass = torch.zeros(n_docs, dtype=acc, device=weights.device).index_add_(0, doc.flatten(),
                                                                            target_w.flatten().to(acc))
    per_token_mass = mass[doc]
    m = torch.where(per_token_mass > 0, target_w.to(acc) / per_token_mass.clamp(min=_TINY), 0.0)
    return m, (mass > 0).sum().to(acc)


def window_normalizer(batches: Iterable[Mapping[str, Any]], normalization: str = "weight", *,
                      across_processes: bool = True, group: Any = None, device: Any = None,
                      weights_key: str = "loss_weights") -> torch.Tensor:
    """The normaliser ``N`` of an optimizer window: the sum of :func:`token_multipliers`' shares over its
    micro-batches, and (``across_processes``, when ``torch.distributed`` is initialised) over every process of
    ``group`` (an all-reduce: every rank must call it). Compute it before the window's first backward."""
    total = None
    for batch in batches:
        part = token_multipliers(batch, normalization, weights_key)[1]
        part = part.to(device) if device is not None else part
        total = part if total is None else total + part.to(total.device)
    if total is None:
        total = torch.zeros((), dtype=torch.float64, device=device)
    if across_processes and torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size(group) > 1:
        total = total.clone()
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM, group=group)
    return total


def fold_normalizer(multipliers: torch.Tensor, norm: torch.Tensor | float,
                    dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, num_items)`` with ``Σ scale·nll / num_items == Σ m·nll / norm`` and ``num_items >= 1``.

    TRL's fused loss divides by ``num_items`` clamped to >= 1; a normaliser below 1 (tiny fractional weights) is
    therefore folded into the multipliers (``s = min(norm, 1)``: ``Σ (m/s)·nll / (norm/s)``). For 0/1 weights
    ``s = 1`` and the division is TRL's own, bit for bit. ``num_items`` has ``dtype`` (TRL's: float32)."""
    norm = torch.as_tensor(norm, device=multipliers.device).to(dtype).clamp(min=_TINY)
    s = norm.clamp(max=1.0)
    return multipliers / s, norm / s


# ------------------------------------------------------------------------------------------- per-token NLL
def target_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next-token label from full logits ``[batch, seq, vocab]``: ``[batch, seq - 1]``,
    zero where the label is -100 (the layout of TRL's fused LM head). Half-precision logits are upcast to float32
    (as transformers' causal-LM loss does); float32 and float64 are kept."""
    logits = logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    targets = labels[:, 1:].to(logits.device)
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                          reduction="none")
    return -nll.view(targets.shape)


def weighted_loss(log_probs: torch.Tensor, multipliers: torch.Tensor, norm: torch.Tensor | float) -> torch.Tensor:
    """This micro-batch's part of the window loss: ``Σ m·(-log_probs) / N``, computed as TRL's fused loss is."""
    dtype = log_probs.dtype if log_probs.dtype in (torch.float32, torch.float64) else torch.float32
    scale, num_items = fold_normalizer(multipliers, norm, dtype)
    per_token_loss = -(log_probs * scale.to(log_probs.dtype))
    return per_token_loss.sum() / num_items.to(per_token_loss.device).clamp(min=1)


def weighted_lm_loss(batch: Mapping[str, Any], *, logits: torch.Tensor | None = None,
                     log_probs: torch.Tensor | None = None, normalization: str = "weight",
                     num_items: torch.Tensor | float | None = None, weights_key: str = "loss_weights",
                     metrics: "SegmentMetrics | None" = None) -> torch.Tensor:
    """The weighted loss of one micro-batch, from the model's full ``logits`` or from per-target ``log_probs``
    (TRL's fused LM head: ``model(..., labels=labels, fused_lm_head=True).log_probs``).

    ``num_items`` is the window normaliser from :func:`window_normalizer`; without it, the micro-batch is its own
    window. ``batch`` holds ``labels`` and the weights (and ``position_ids`` for packed rows, ``roles`` for
    ``metrics``). With ``metrics`` (and logits, which score every token), the per-role NLL is accumulated too."""
    if (logits is None) == (log_probs is None):
        raise ValueError("give exactly one of `logits` and `log_probs`")
    multipliers, local = token_multipliers(batch, normalization, weights_key)
    if log_probs is None:
        labels = batch["labels"]
        if metrics is not None and batch.get("roles") is not None:
            scored = metrics.scored(batch["roles"][:, 1:])
            full = labels.clone()
            full[:, 1:] = torch.where(scored, batch["input_ids"][:, 1:], labels[:, 1:])
            all_log_probs = target_log_probs(logits, full)
            metrics.add(all_log_probs.detach(), batch["roles"][:, 1:])
            log_probs = all_log_probs.masked_fill(labels[:, 1:] == IGNORE_INDEX, 0.0)
        else:
            log_probs = target_log_probs(logits, labels)
    return weighted_loss(log_probs, multipliers.to(log_probs.device), local if num_items is None else num_items)


class WeightedLMLoss(torch.nn.Module):
    """:func:`weighted_lm_loss` as a module: ``loss_fn(batch, logits=...)`` or ``loss_fn(batch, log_probs=...)``.

    ``loss_fn.normalizer(micro_batches)`` is :func:`window_normalizer` with this module's normalisation;
    with ``segment_metrics=True`` the module keeps a :class:`SegmentMetrics` (``loss_fn.metrics``)."""

    def __init__(self, normalization: str = "weight", *, segment_metrics: bool = False, role_metrics: bool = False,
                 weights_key: str = "loss_weights"):
        super().__init__()
        self.normalization = check_normalization(normalization)
        self.weights_key = weights_key
        self.metrics = SegmentMetrics(role_metrics) if segment_metrics or role_metrics else None

    def normalizer(self, batches: Iterable[Mapping[str, Any]], **kwargs) -> torch.Tensor:
        return window_normalizer(batches, self.normalization, weights_key=self.weights_key, **kwargs)

    def forward(self, batch: Mapping[str, Any], *, logits: torch.Tensor | None = None,
                log_probs: torch.Tensor | None = None, num_items: torch.Tensor | float | None = None) -> torch.Tensor:
        return weighted_lm_loss(batch, logits=logits, log_probs=log_probs, normalization=self.normalization,
                                num_items=num_items, weights_key=self.weights_key, metrics=self.metrics)


# ------------------------------------------------------------------------------------------- metrics
class SegmentMetrics:
    """Σ NLL and token counts per role, kept on the device (no host sync per step); :meth:`compute` turns them into
    ``loss_instruction`` / ``loss_output`` (and ``loss_role/<name>`` with ``role_metrics``): the unweighted mean NLL
    over each side's content tokens (sides from the role table), whatever their weights. A metric with no token in
    the window is not reported."""

    def __init__(self, role_metrics: bool = False):
        self.role_metrics = role_metrics
        self.sums: torch.Tensor | None = None  # [2, SLOTS]: Σ nll, count; slot = role code - NO_ROLE
        codes = range(NUM_ROLES) if role_metrics else [c for cs in SEGMENTS.values() for c in cs]
        self._scored = torch.zeros(SLOTS, dtype=torch.bool)
        self._scored[[c - NO_ROLE for c in codes]] = True

    def scored(self, roles: torch.Tensor) -> torch.Tensor:
        """Which tokens (by role; ``roles`` as in the batch) the metrics score, trained or not."""
        return self._scored.to(roles.device)[roles - NO_ROLE]

    def add(self, log_probs: torch.Tensor, roles: torch.Tensor) -> None:
        """Accumulate ``-log_probs`` per role (``roles`` aligned with ``log_probs``; -1: none)."""
        nll = -log_probs.detach().float().flatten()
        slots = (roles - NO_ROLE).flatten().to(nll.device)
        step = torch.zeros(2, SLOTS, dtype=torch.float32, device=nll.device).index_add_(
            1, slots, torch.stack([nll, torch.ones_like(nll)]))
        self.sums = step if self.sums is None else self.sums + step

    def reset(self) -> None:
        self.sums = None

    def compute(self, prefix: str = "", *, across_processes: bool = True, reset: bool = True,
                reduce: Any = None) -> dict[str, float]:
        """The metrics of what was accumulated (summed over processes first: ``reduce(tensor)`` if given, else a
        ``torch.distributed`` all-reduce when initialised); resets unless ``reset=False``."""
        if self.sums is None:
            return {}
        totals = self.sums
        if reduce is not None:
            totals = reduce(totals)
        elif across_processes and torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            totals = totals.clone()
            torch.distributed.all_reduce(totals)
        if reset:
            self.reset()
        nll, count = totals[:, -NO_ROLE:].tolist()  # drop the no-role slot: index = role code
        groups = {f"loss_{name}": codes for name, codes in SEGMENTS.items()}
        if self.role_metrics:
            groups.update({f"loss_role/{label}": (code,) for code, label in enumerate(ROLE_LABELS)})
        out = {}
        for key, codes in groups.items():
            n = sum(count[c] for c in codes)
            if n > 0:
                out[f"{prefix}{key}"] = sum(nll[c] for c in codes) / n
        return out
