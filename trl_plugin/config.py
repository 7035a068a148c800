"""`WeightedSFTConfig`: TRL's `SFTConfig` plus the per-token loss-weight options."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from im_data.roles import ROLE_LABELS, content_roles

NORMALIZATIONS = ("weight", "tokens", "sequence")
SEGMENT_METRICS = ("none", "eval", "all")
#: ``max_length`` value meaning "as the data allows": resolved by the trainer, see `WeightedSFTConfig`
AUTO = "auto"


def parse_max_length(value: int | str | None) -> int | str | None:
    """``max_length`` from Python or the command line (where it arrives as a string): an int >= 1, None
    (``"none"``/``"null"``: never truncate) or :data:`AUTO`."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if text in ("none", "null"):
            return None
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"max_length must be an integer, 'none' or 'auto', got {value!r}") from None
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"max_length must be an integer >= 1, 'none' or 'auto', got {value!r}")
    return value


@dataclass
class WeightedSFTConfig(SFTConfig):
    r"""
    Configuration for [`trl_plugin.WeightedSFTTrainer`]: every [`trl.SFTConfig`] field, plus

    Parameters:
        loss_weights_column (`str` or `None`, *optional*, defaults to `"loss_weights"`):
            Column holding one float weight per token (the `im-data prepare` shard column). Token *t* contributes
            `w[t] * nll(t)` to the loss. `None`, `""` or `"none"` disables weighting: the trainer then behaves like
            `SFTTrainer` and trains on `labels` only (binarised weights).
        loss_normalization (`str`, *optional*, defaults to `"weight"`):
            `"weight"`: Σ w·nll / Σ w. `"tokens"`: Σ w·nll / #{tokens with w > 0} (as in the WIT code).
            `"sequence"`: the weighted mean of each sequence (packed document), averaged over sequences (the paper's
            effective normaliser at batch size 1). Sums and counts cover the whole gradient-accumulation window and
            every process, so the loss does not depend on how a batch is split into micro-batches.
        segment_metrics (`str`, *optional*, defaults to `"eval"`):
            Log `loss_instruction` and `loss_output`, the unweighted mean NLL over instruction tokens (system, user,
            tool content) and over output tokens (assistant, reasoning, tool_call), whatever their weights: `"none"`,
            `"eval"` (evaluation only, free for training) or `"all"` (training and evaluation). Needs the `roles`
            column. The roles of each side are read from the role table (`im_data.roles.ROLE_TABLE`).
        role_metrics (`bool`, *optional*, defaults to `False`):
            With the segment metrics, also log `loss_role/<name>`: the unweighted mean NLL over the tokens of each
            role of the role table (template, system, user, tool, assistant, assistant_end, reasoning, tool_call),
            whenever the logged window holds tokens of that role.
        roles_column (`str`, *optional*, defaults to `"roles"`):
            Column holding the int8 token roles (`im_data.roles`), used by the segment metrics only.
        max_length (`int`, `"auto"` or `None`, *optional*, defaults to `"auto"`):
            As in `SFTConfig`, with a default that respects prepared data: `"auto"` takes the `max_length` of the
            `im-data prepare` manifests of the datasets (the largest; no truncation when a manifest has none; with
            packing and no manifest limit, the longest example), and TRL's default (1024) for other datasets.
            Whatever the trainer still truncates is reported with a `TruncationWarning` naming the tokens and the
            trained weight it removes.
    """

    loss_weights_column: str | None = field(
        default="loss_weights",
        metadata={
            "help": "Column with one float loss weight per token (im-data shards: loss_weights). 'none' disables "
            "weighting and trains on `labels` like plain SFTTrainer."
        },
    )
    loss_normalization: str = field(
        default="weight",
        metadata={
            "help": "Loss normaliser: 'weight' = sum(w*nll)/sum(w); 'tokens' = sum(w*nll)/#(w>0) (WIT code); "
            "'sequence' = per-sequence weighted mean averaged over sequences (the paper at batch size 1). Counted "
            "over the whole gradient-accumulation window and all processes.",
            "choices": list(NORMALIZATIONS),
        },
    )
    segment_metrics: str = field(
        default="eval",
        metadata={
            "help": "Log loss_instruction / loss_output (unweighted mean NLL over instruction / output tokens; "
            f"instruction = {' + '.join(content_roles('instruction'))}, "
            f"output = {' + '.join(content_roles('output'))}): "
            "'none', 'eval' (evaluation only) or 'all' (training too; costs a little per step).",
            "choices": list(SEGMENT_METRICS),
        },
    )
    role_metrics: bool = field(
        default=False,
        metadata={"help": "With the segment metrics, also log loss_role/<name>: the unweighted mean NLL per token "
                          f"role ({', '.join(ROLE_LABELS)})."},
    )
    roles_column: str = field(
        default="roles",
        metadata={"help": "Column with the int8 token roles (im_data.roles), used by the segment metrics."},
    )
    max_length: int | str | None = field(
        default=AUTO,
        metadata={
            "help": "Maximum tokens per sequence (with packing: the packed length). 'auto': an im-data prepared "
            "dataset keeps its own lengths (the manifest's max_length, or no truncation when it was prepared "
            "without one); other datasets get TRL's 1024. An integer truncates, and im-sft reports the tokens and "
            "trained weight that removes; 'none' never truncates."
        },
    )

    def __post_init__(self):
        self.max_length = parse_max_length(self.max_length)
        if isinstance(self.loss_weights_column, str) and self.loss_weights_column.strip().lower() in ("", "none"):
            self.loss_weights_column = None
        if isinstance(self.segment_metrics, bool):
            self.segment_metrics = "all" if self.segment_metrics else "none"
        if self.loss_normalization not in NORMALIZATIONS:
            raise ValueError(f"loss_normalization must be one of {NORMALIZATIONS}, got {self.loss_normalization!r}")
        if self.segment_metrics not in SEGMENT_METRICS:
            raise ValueError(f"segment_metrics must be one of {SEGMENT_METRICS}, got {self.segment_metrics!r}")
        super().__post_init__()
