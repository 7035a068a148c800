"""The frozen, picklable configuration of the Beam stages of one `prepare` (or `audit`) run.

Built by :func:`pipelines.prepare.plan` from the public :class:`pipelines.options.PrepareOptions`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .options import SHARD_FORMATS as FORMATS  # noqa: F401  (re-exported)
from .options import EncoderOptions


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """Everything the Beam stages need; shipped to workers by pickling.

    ``sources`` are already expanded (see :func:`pipelines.read.expand_inputs`); ``work_dir`` is the temporary
    directory the pipeline writes into (moved to ``output_dir`` by the launcher at the end); ``encoder`` has its
    chat template resolved to a :class:`~im_data.ChatTemplate` (see :meth:`EncoderOptions.resolved`).
    """

    sources: tuple = ()                       # tuple[pipelines.read.Source, ...]
    work_dir: str = ""
    output_dir: str = ""
    encoder: EncoderOptions = dataclasses.field(default_factory=EncoderOptions)
    format: str = "arrow"
    num_shards: int = 1
    batch_size: int = 1024                     # max records per encode batch (BatchElements)
    run_buffer_bytes: int = 16 << 20          # rows buffered per worker before a run (sorted by input order) is
    #                                           spilled; bounds the writer's memory, whatever the data size
    split_bytes: int = 16 << 20               # target size of one read split of a plain JSONL file
    max_record_bytes: int = 16 << 20          # a larger raw record is rejected too_large while reading
    merge_chunk_rows: int = 1024              # rows per record batch / row group of the final shards (exactly,
    #                                           so the bytes do not depend on how the runs were cut)
    eval_fraction: float = 0.0                # share of examples in the evaluation split (by example_id)
    eval_split: str = "test"                  # the evaluation split's name
    progress_dir: str = ""                    # where workers report progress (pipelines.progress); "": nowhere
    pack_length: int | None = None            # --pack-length: pack each shard into rows of this many tokens
    dedup: str | None = None                  # --dedup exact: reject later copies of a conversation (duplicate)
    mixture: tuple = ()                       # ((source label, rate), ...) of inputs given as INPUT@R
    seed: int = 0                             # --seed: the mixture's sampling hash
    decontaminate: tuple = ()                 # --decontaminate: benchmark inputs (index in work_dir, see decontam)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {FORMATS}, got {self.format!r}")
        if self.num_shards < 1:
            raise ValueError(f"--num-shards must be >= 1, got {self.num_shards}")
        if self.max_record_bytes < 1:
            raise ValueError(f"--max-record-bytes must be >= 1, got {self.max_record_bytes}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sources"] = [s.to_dict() for s in self.sources]
        return d
