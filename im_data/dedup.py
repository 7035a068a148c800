"""Exact deduplication (``--dedup exact``): the key of a record's normalised conversation (pure; no Beam).

The conversation is the record after format conversion (:func:`im_data.formats.read_conversation`: Alpaca,
ShareGPT, prompt/completion and messages records of the same dialogue give the same messages), with every string
whitespace-normalised (runs of whitespace become one space, ends stripped) and objects with sorted keys. Two
records are duplicates when their keys are equal: the earlier one in input order is kept, the later ones are
rejected ``duplicate`` naming the kept example id.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import RecordError
from .formats import FormatOptions, read_conversation

DEDUP_MODES = ("exact",)


def normalize_text(text: str) -> str:
    """Runs of whitespace become one space; leading and trailing whitespace go."""
    return " ".join(text.split())


def _normalized(value: Any) -> Any:
    if isinstance(value, str):
        return normalize_text(value)
    if isinstance(value, dict):
        return {str(k): _normalized(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_normalized(v) for v in value]
    return value


def normalized_conversation(record: Any, options: FormatOptions = FormatOptions()) -> dict[str, Any]:
    """The whitespace-normalised conversation of a decoded record: ``{"messages", "tools", "documents"}``.
    Raises the record's :class:`RecordError` when it is not a valid conversation."""
    conv = read_conversation(record, options)
    return _normalized({"messages": conv.messages, "tools": conv.tools, "documents": conv.documents})


def conversation_key(record: Any, options: FormatOptions = FormatOptions()) -> bytes:
    """16 bytes of the sha256 of the normalised conversation (canonical JSON): equal for duplicates."""
    text = json.dumps(normalized_conversation(record, options), sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def duplicate_error(kept_example_id: str, kept_source: str, kept_index: int) -> RecordError:
    """The ``duplicate`` rejection of a later copy of a kept record."""
    return RecordError("duplicate", f"the same conversation (whitespace normalised) as example_id {kept_example_id} "
                                    f"({kept_source} record {kept_index}), which is kept")
