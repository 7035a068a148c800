"""Mixtures: a sampling rate per input, deterministic per record (pure; no Beam).

An input may carry a ratio, ``INPUT@R`` (open-instruct's ``dataset_mixer_list`` semantics): ``R <= 1`` is a
fraction of the input's records, ``R > 1`` a number of records (an integer); a count above the input's size
repeats it. The launcher reads the input once (record indices only) and turns the ratio into a plan
(:func:`plan_sampling`): of the ``int(R * size)`` records (a fraction, as open-instruct) or ``R`` records (a
count) each record is taken ``whole = target // size`` times, and the ``target % size`` records with the
smallest unit hashes (:func:`unit_hash`, from ``--seed`` and the example id) once more: an exact count, no
global shuffle, the same choice on any runner. Copy ``j > 0`` of record ``i`` is the record with index ``i + j * 2**32``, so it has
its own example id (and its own place in input order).

The ``@R`` suffix is read only when the whole spec is not an existing path and ``R`` is a plain decimal number at
the very end (``data.jsonl@0.5``, ``"data/*.jsonl@2000"``, ``hf:org/name:train@0.25``): globs use ``*?[``, and a
file whose name really ends in ``@5`` is read as that file.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable

from .shards import example_id

REPEAT_STRIDE = 1 << 32  # index offset of each repeat of a record (records per source: < 2**32)
MAX_COPIES = 1 << 8      # order keys hold indices below 2**40
_SUFFIX = re.compile(r"^(?P<spec>.+)@(?P<ratio>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")


def parse_input_ratio(spec: str, exists: Callable[[str], bool] = lambda _: False) -> tuple[str, float | None]:
    """``"data.jsonl@0.5"`` → ``("data.jsonl", 0.5)``; a spec without a ratio (or an existing path) → ``(spec,
    None)``. Raises ``ValueError`` for a ratio of 0 or a count that is not an integer."""
    m = _SUFFIX.match(spec)
    if m is None or exists(spec):
        return spec, None
    ratio = float(m.group("ratio"))
    if ratio <= 0:
        raise ValueError(f"{spec}: the ratio after @ must be > 0 (a fraction <= 1 or a count > 1)")
    if ratio > 1 and not ratio.is_integer():
        raise ValueError(f"{spec}: a ratio above 1 is a number of records and must be an integer, got {ratio:g}")
    return m.group("spec"), ratio


def target_count(ratio: float, size: int) -> int:
    """Records the mixture takes from an input of ``size`` records: ``int(ratio * size)`` for a fraction (as
    open-instruct), ``ratio`` itself for a count."""
    return int(ratio * size) if ratio <= 1 else int(ratio)


def unit_hash(seed: int, eid: str) -> float:
    """A number in [0, 1) from the seed and an example id (53 bits of sha256)."""
    digest = hashlib.sha256(f"{seed}|{eid}".encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


def plan_sampling(ratio: float, records: list[tuple[str, int]], seed: int) -> tuple[int, float]:
    """``(whole, threshold)`` for an input whose records are ``(source, index)``: every record is taken
    ``whole`` times, and once more when its unit hash is <= ``threshold`` (-1: never): exactly
    :func:`target_count` records in all."""
    size = len(records)
    if size == 0:
        return 0, -1.0
    whole, rest = divmod(target_count(ratio, size), size)
    if whole + (rest > 0) > MAX_COPIES:
        raise ValueError(f"a count of {ratio:g} from {size} records repeats each more than {MAX_COPIES} times")
    if rest == 0:
        return whole, -1.0
    hashes = sorted(unit_hash(seed, example_id(s, i)) for s, i in records)
    return whole, hashes[rest - 1]


def copies(whole: int, threshold: float, seed: int, source: str, index: int) -> int:
    """How many copies of record ``index`` of ``source`` the mixture takes (see :func:`plan_sampling`)."""
    return whole + (1 if threshold >= 0 and unit_hash(seed, example_id(source, index)) <= threshold else 0)


def repeat_index(index: int, copy: int) -> int:
    """The index (hence example id and input order) of copy ``copy`` of record ``index``."""
    if index >= REPEAT_STRIDE:
        raise ValueError(f"record index {index} too large for repeats (< 2**32)")
    return index + copy * REPEAT_STRIDE
