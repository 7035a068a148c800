"""The frozen, picklable configuration of one `im-data prepare` run."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

FORMATS = ("arrow", "parquet")
TRUNCATIONS = ("keep_start", "drop")


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """Everything the Beam stages need; shipped to workers by pickling.

    ``sources`` are already expanded (see :func:`pipelines.read.expand_inputs`); ``work_dir`` is the temporary
    directory the pipeline writes into (moved to ``output_dir`` by the launcher at the end).
    """

    sources: tuple = ()                       # tuple[pipelines.read.Source, ...]
    work_dir: str = ""
    output_dir: str = ""
    tokenizer: str | None = None              # None: embedded default
    chat_template: str | None = None          # None: the tokenizer's own; a built-in name or a Jinja file
    policy: dict = dataclasses.field(default_factory=dict)   # WeightPolicy.to_dict()
    max_length: int | None = None
    truncation: str = "keep_start"
    allow_special_tokens: bool = False
    format_options: dict = dataclasses.field(default_factory=dict)  # im_data.FormatOptions fields
    format: str = "arrow"
    num_shards: int = 1
    batch_size: int = 1024                     # max records per encode batch (BatchElements)
    run_buffer_bytes: int = 16 << 20          # rows buffered per writer before a sorted run is spilled
    split_bytes: int = 16 << 20               # target size of one read split of a plain JSONL file
    max_record_bytes: int = 16 << 20          # a larger raw record is rejected too_large while reading
    merge_chunk_rows: int = 1024              # rows per record batch / row group of the final shards

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {FORMATS}, got {self.format!r}")
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"--truncation must be one of {TRUNCATIONS}, got {self.truncation!r}")
        if self.num_shards < 1:
            raise ValueError(f"--num-shards must be >= 1, got {self.num_shards}")
        if self.max_record_bytes < 1:
            raise ValueError(f"--max-record-bytes must be >= 1, got {self.max_record_bytes}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"--max-length must be >= 1, got {self.max_length}")

    def weight_policy(self):
        from im_data.policy import WeightPolicy

        return WeightPolicy.from_dict(self.policy) if self.policy else WeightPolicy.preset("im")

    def encoder_key(self) -> str:
        """Identifies the encoder settings; workers cache one Encoder per key and process."""
        return json.dumps([self.tokenizer, self.chat_template, self.policy, self.max_length, self.truncation,
                           self.allow_special_tokens, self.format_options], sort_keys=True, default=str)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sources"] = [s.to_dict() for s in self.sources]
        return d
