"""The typed library API of ``im-data``: frozen option objects, and the shared CLI flags that build them.

This module imports neither Beam nor torch. ``prepare``, ``audit`` and ``inspect`` all build their encoder
settings here (:func:`add_encoder_arguments` + :func:`encoder_options_from_args`), so the three commands take the
same flags the same way; the argparse ``Namespace`` never leaves this module and the command modules.

>>> from im_data import WeightPolicy
>>> opts = PrepareOptions(inputs=("data.jsonl",), output="out/run",
...                       encoder=EncoderOptions(chat_template="tulu", policy=WeightPolicy.preset("it")))
>>> opts.encoder.policy.name, opts.format, opts.runner.runner
('it', 'arrow', 'direct')
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re

from im_data import storage
from im_data.dataset import DEFAULT_EVAL_SPLIT, TRAIN_SPLIT
from im_data.dataset import FORMATS as SHARD_FILE_FORMATS
from im_data.encode import DEFAULT_TRUNCATION, TRUNCATION_MODES
from im_data.formats import FORMATS as INPUT_FORMATS
from im_data.formats import FormatOptions
from im_data.limits import DEFAULT_MAX_RECORD_BYTES, MAX_LENGTH_LIMIT
from im_data.policy import MODES, WeightPolicy, parse_weight_overrides
from im_data.roles import ROLE_LABELS, roles_on_side
from im_data.templates import ChatTemplate

SHARD_FORMATS = SHARD_FILE_FORMATS  # one owner: the output contract (im_data.dataset.FORMATS)
HUB_PREFIXES = ("hf:", "hub:")
# the defaults of a run, each written once: the spec's fields and the CLI flags take them from here
DEFAULT_SHARD_FORMAT = SHARD_FORMATS[0]   # arrow
DEFAULT_NUM_SHARDS = 1
DEFAULT_BATCH_SIZE = 1024                 # max records per encode batch (BatchElements)
DEFAULT_MAX_REJECT_RATE = 1.0
DEFAULT_RUN_BUFFER_BYTES = 16 << 20       # rows buffered per worker before a run is spilled (bounds its memory)
DEFAULT_SPLIT_BYTES = 16 << 20            # target size of one read split of a plain JSONL file
DEFAULT_MERGE_CHUNK_ROWS = 1024           # rows per record batch / row group of the final shards
DEFAULT_SCATTER_SAMPLE = 20_000
MAX_NUM_SHARDS = 10_000  # every shard is a file, written even when empty


class UsageError(RuntimeError):
    """A user error found before any work starts: one line on stderr naming the fix, exit status 2."""


# loggers whose INFO/WARNING chatter is hidden unless -v
NOISY_LOGGERS = ("apache_beam", "distributed", "dask", "datasets", "fsspec", "urllib3", "filelock",
                 "huggingface_hub")


class DropNoise(logging.Filter):
    """Drops known chatter (Beam's ``apitools not found``); without -v/--debug also the errors other libraries log
    while a run fails (Beam logs each failed bundle with its traceback): the failure itself ends the command with
    one line. Used by the CLI's handler and, through :mod:`pipelines.dask_logs`, each Dask worker's root logger."""

    def __init__(self, quiet_errors: bool = True):
        super().__init__()
        self.quiet_errors = quiet_errors

    def filter(self, record: logging.LogRecord) -> bool:
        if self.quiet_errors and record.name.split(".")[0] in NOISY_LOGGERS:
            return False
        return "apitools not found" not in record.getMessage()


def _im_policy() -> WeightPolicy:
    return WeightPolicy.preset("im")


@dataclasses.dataclass(frozen=True)
class EncoderOptions:
    """How each record becomes tokens and loss weights (the arguments of :class:`im_data.Encoder`).

    ``tokenizer``: a hub name or local directory, ``None`` for the embedded default. ``chat_template``: a
    :class:`~im_data.ChatTemplate`, a built-in name or a Jinja file path, ``None`` for the tokenizer's own.
    Hashable and picklable: workers cache one encoder per distinct value.
    """

    tokenizer: str | None = None
    chat_template: ChatTemplate | str | None = None
    policy: WeightPolicy = dataclasses.field(default_factory=_im_policy)
    max_length: int | None = None
    truncation: str = DEFAULT_TRUNCATION
    allow_special_tokens: bool = False
    format_options: FormatOptions = dataclasses.field(default_factory=FormatOptions)
    #: ``{"enable_thinking": false}``...: given as a mapping or JSON text, kept as canonical JSON (hashable)
    chat_template_kwargs: str = "{}"
    allow_unrendered: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        kwargs = self.chat_template_kwargs
        if not isinstance(kwargs, str):
            kwargs = json.dumps(dict(kwargs or {}), sort_keys=True)
        try:
            parsed = json.loads(kwargs or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"--chat-template-kwargs must be a JSON object: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"--chat-template-kwargs must be a JSON object, got {type(parsed).__name__}")
        object.__setattr__(self, "chat_template_kwargs", json.dumps(parsed, sort_keys=True))
        object.__setattr__(self, "allow_unrendered", tuple(self.allow_unrendered))
        if not isinstance(self.policy, WeightPolicy):
            raise TypeError(f"policy must be an im_data.WeightPolicy, got {type(self.policy).__name__}")
        if not isinstance(self.format_options, FormatOptions):
            raise TypeError("format_options must be an im_data.FormatOptions, "
                            f"got {type(self.format_options).__name__}")
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"--truncation must be one of {', '.join(TRUNCATION_MODES)}, got {self.truncation!r}")
        if self.max_length is not None and not 2 <= self.max_length <= MAX_LENGTH_LIMIT:
            raise ValueError(f"--max-length must be between 2 and {MAX_LENGTH_LIMIT}, got {self.max_length}")

    def load_tokenizer(self):
        from im_data import load_tokenizer

        return load_tokenizer(self.tokenizer)

    def resolved(self, tokenizer=None) -> "EncoderOptions":
        """A copy whose ``chat_template`` is a :class:`ChatTemplate` (file text read here, so remote workers get
        the text rather than a local path); ``None`` stays ``None`` (the tokenizer's own)."""
        if self.chat_template is None or isinstance(self.chat_template, ChatTemplate):
            return self
        return dataclasses.replace(self, chat_template=ChatTemplate.resolve(self.chat_template, tokenizer))

    def build(self, tokenizer=None):
        """An :class:`im_data.Encoder` with these settings (raises on a bad tokenizer or template)."""
        from im_data import Encoder

        tok = tokenizer if tokenizer is not None else self.load_tokenizer()
        encoder = Encoder(tok, chat_template=self.chat_template, policy=self.policy, max_length=self.max_length,
                          truncation=self.truncation, allow_special_tokens=self.allow_special_tokens,
                          format_options=self.format_options,
                          chat_template_kwargs=json.loads(self.chat_template_kwargs),
                          allow_unrendered=self.allow_unrendered)
        check_template(encoder.template)
        return encoder


def check_template(template: ChatTemplate) -> None:
    """Compile a chat template now, so a Jinja syntax error is one :class:`UsageError` naming the line rather
    than a ``template_error`` reject for every record."""
    from jinja2 import TemplateSyntaxError

    from im_data.templates import _compile  # the environment templates are rendered with

    try:
        _compile(template.source)
    except TemplateSyntaxError as exc:
        raise UsageError(f"chat template {template.name!r} has a Jinja syntax error on line {exc.lineno}: "
                         f"{exc.message}; fix the template") from None


@dataclasses.dataclass(frozen=True)
class RunnerOptions:
    """Where the Beam pipeline runs. ``runner``: ``direct``, ``dask`` or any Beam runner name. With ``dask``:
    ``dask_address`` joins a running scheduler, else a LocalCluster of ``dask_workers`` processes is started."""

    runner: str = "direct"
    dask_address: str | None = None
    dask_workers: int | None = None


@dataclasses.dataclass(frozen=True)
class PrepareSpec:
    """One ``prepare`` run, whole: what :func:`pipelines.prepare.prepare` takes and every Beam stage is given
    (picklable, shipped to workers). The CLI only builds it; it is validated here, once.

    ``inputs``: file paths, globs, ``save_to_disk`` directories or ``hf:NAME[:SPLIT]``; empty: the embedded
    sample data. ``output``: the output directory (must be empty or absent unless ``overwrite``).
    :func:`pipelines.prepare.plan` fills in the resolved part: ``sources`` (the expanded inputs, see
    :func:`pipelines.read.expand_inputs`), ``encoder`` with its chat template read, ``output`` normalised;
    ``work_dir`` (the run folder the pipeline writes into, published to ``output`` at the end) and
    ``progress_dir`` (where workers report progress, see :mod:`pipelines.progress`; "": nowhere) are set while
    it runs. A new setting is one field here (plus its flag in :mod:`pipelines.prepare`) and its use.
    """

    inputs: tuple[str, ...] = ()
    output: str = ""
    encoder: EncoderOptions = dataclasses.field(default_factory=EncoderOptions)
    format: str = DEFAULT_SHARD_FORMAT
    num_shards: int = DEFAULT_NUM_SHARDS
    batch_size: int = DEFAULT_BATCH_SIZE
    overwrite: bool = False
    runner: RunnerOptions = dataclasses.field(default_factory=RunnerOptions)
    eval_fraction: float = 0.0          # share of examples in the evaluation split, chosen by example id
    eval_split: str = DEFAULT_EVAL_SPLIT  # its name
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE  # fail (exit 3, nothing published) above this share rejected
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES  # a larger raw record is rejected too_large, unparsed
    pack_length: int | None = None      # pack each shard into rows of this many tokens (best-fit decreasing)
    dedup: str | None = None            # "exact": later copies of a normalised conversation are rejected duplicate
    seed: int = 0                       # the hash seed of mixture sampling (inputs given as INPUT@R)
    decontaminate: tuple[str, ...] = ()  # benchmark inputs: reject records sharing a word n-gram (contaminated)
    decontaminate_ngram: int = 13       # n of those n-grams (words)
    run_buffer_bytes: int = DEFAULT_RUN_BUFFER_BYTES  # the writer's memory per worker, whatever the data size
    split_bytes: int = DEFAULT_SPLIT_BYTES
    merge_chunk_rows: int = DEFAULT_MERGE_CHUNK_ROWS  # exactly, so the bytes do not depend on how runs were cut
    # resolved by plan() and the launcher
    sources: tuple = ()                 # tuple[pipelines.read.Source, ...]
    mixture: tuple = ()                 # ((source label, rate), ...) of inputs given as INPUT@R
    work_dir: str = ""
    progress_dir: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "decontaminate", tuple(self.decontaminate))
        if self.decontaminate_ngram < 1:
            raise ValueError(f"--decontaminate-ngram must be >= 1, got {self.decontaminate_ngram}")
        if self.dedup not in (None, "exact"):
            raise ValueError(f"--dedup must be exact, got {self.dedup!r}")
        if self.pack_length is not None and self.pack_length < 2:
            raise ValueError(f"--pack-length must be >= 2, got {self.pack_length}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"--eval-fraction must be in [0, 1), got {self.eval_fraction}")
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.eval_split) or self.eval_split == TRAIN_SPLIT:
            raise ValueError(f"--eval-split must be a word other than {TRAIN_SPLIT!r} (letters, digits, _), "
                             f"got {self.eval_split!r}")
        if not 0.0 <= self.max_reject_rate <= 1.0:
            raise ValueError(f"--max-reject-rate must be in [0, 1], got {self.max_reject_rate}")
        if self.max_record_bytes < 1:
            raise ValueError(f"--max-record-bytes must be >= 1, got {self.max_record_bytes}")
        if self.format not in SHARD_FORMATS:
            raise ValueError(f"--format must be one of {', '.join(SHARD_FORMATS)}, got {self.format!r}")
        if not 1 <= self.num_shards <= MAX_NUM_SHARDS:
            raise ValueError(f"--num-shards must be between 1 and {MAX_NUM_SHARDS}, got {self.num_shards}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        for name in ("run_buffer_bytes", "split_bytes", "merge_chunk_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


#: The name of :class:`PrepareSpec` in the public API before it held the resolved settings too.
PrepareOptions = PrepareSpec


@dataclasses.dataclass(frozen=True)
class AuditOptions:
    """One ``audit`` run: :func:`pipelines.audit.audit` takes it.

    ``inputs``: raw inputs (as for prepare) or prepared shard directories. ``names``: one label per input (equal
    labels are one dataset), or ``None`` for one dataset per input named after the file. The encoder's policy
    does not change the statistics that matter (lengths, ratios); ``im`` by default.
    """

    inputs: tuple[str, ...] = ()
    names: tuple[str, ...] | None = None
    encoder: EncoderOptions = dataclasses.field(default_factory=EncoderOptions)
    scatter_sample: int = DEFAULT_SCATTER_SAMPLE
    batch_size: int = DEFAULT_BATCH_SIZE
    runner: RunnerOptions = dataclasses.field(default_factory=RunnerOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))
        if not self.inputs:
            raise ValueError("audit needs at least one INPUT")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")


def check_input_specs(specs) -> None:
    """Hub datasets are read only when asked for (``hf:NAME[:SPLIT]``); any other spec is a local path or glob,
    and a path that does not exist is a :class:`UsageError`, never a hub lookup."""
    for spec in specs:
        spec = str(spec)
        if spec.startswith(HUB_PREFIXES) or storage.is_url(spec) or any(c in spec for c in "*?["):
            continue  # globs that match nothing are reported by pipelines.read.expand_inputs
        path = os.path.expanduser(spec)
        if not os.path.exists(path) and not os.path.lexists(path):  # a broken link or loop: expand_inputs says which
            hub_like = spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not spec.endswith("/")
            hint = f" (a hub dataset is read only as hf:{spec})" if hub_like else ""
            raise UsageError(f"{spec}: no such file or directory{hint}")


# ------------------------------------------------------------------------------------------ shared CLI flags
def add_encoder_arguments(p: argparse.ArgumentParser, *, policy: bool = True) -> None:
    """The encoder flags of ``prepare``, ``audit`` and ``inspect`` (``policy=False``: no --mode/--weights)."""
    p.add_argument("--tokenizer", default=None, metavar="NAME_OR_PATH",
                   help="hub name or local directory of a fast tokenizer (default: the embedded tokenizer)")
    p.add_argument("--chat-template", default=None, metavar="NAME|FILE",
                   help="a built-in template name or a Jinja file (default: the tokenizer's own)")
    if policy:
        p.add_argument("--mode", choices=MODES, default=None,
                       help="it: loss on responses only; im: loss on instructions too; wit: weighted (default: im)")
        p.add_argument("--prompt-weight", type=float, default=None, metavar="X",
                       help="with --mode wit: loss weight of prompt tokens "
                            f"({', '.join(roles_on_side('instruction'))}) (default: none)")
        p.add_argument("--response-weight", type=float, default=None, metavar="Y",
                       help=f"with --mode wit: loss weight of response tokens ({', '.join(roles_on_side('output'))}) "
                            "(default: 1.0)")
        p.add_argument("--weights", nargs="+", default=None, metavar="ROLE=W",
                       help=f"override single role weights ({', '.join(ROLE_LABELS)}), e.g. reasoning=0.5 "
                            "(default: none)")
        p.add_argument("--last-assistant-only", action="store_true",
                       help="only the final assistant turn keeps the assistant weights (default: off)")
    p.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="truncate (or drop, see --truncation) examples longer than N tokens (default: no limit)")
    p.add_argument("--truncation", choices=TRUNCATION_MODES, default=DEFAULT_TRUNCATION,
                   help="with --max-length: keep_start keeps the first N tokens, drop rejects the example as too_long "
                        f"(default: {DEFAULT_TRUNCATION})")
    p.add_argument("--allow-special-tokens", action="store_true",
                   help="accept special-token strings inside message content (default: rejected)")
    p.add_argument("--chat-template-kwargs", default=None, metavar="JSON",
                   help='extra variables for the chat template, e.g. \'{"enable_thinking": false}\' (default: none)')
    p.add_argument("--split-inline-reasoning", action="store_true",
                   help="split <think>...</think> at the start of assistant content into its reasoning "
                        "(default: off)")
    p.add_argument("--allow-unrendered", action="append", default=None, metavar="FIELD",
                   help="accept records whose FIELD (e.g. reasoning_content, tools) the template does not render; "
                        "repeatable (default: such records are rejected as unrendered_field)")
    p.add_argument("--input-format", choices=INPUT_FORMATS, default="auto",
                   help="record format (default: auto, detected per record)")
    p.add_argument("--columns", nargs="+", default=None, metavar="KEY=NAME",
                   help="column names for non-standard datasets, e.g. instruction=question output=answer "
                        "(KEY: messages, prompt, completion, instruction, input, output, system, conversations) "
                        "(default: the standard names)")


def policy_from_args(args: argparse.Namespace) -> WeightPolicy:
    """The weight policy the policy flags ask for (``im`` without any); raises :class:`UsageError`."""
    mode = getattr(args, "mode", None) or "im"
    prompt_weight = getattr(args, "prompt_weight", None)
    response_weight = getattr(args, "response_weight", None)
    if mode != "wit" and (prompt_weight is not None or response_weight is not None):
        raise UsageError("--prompt-weight/--response-weight need --mode wit")
    if mode == "wit" and prompt_weight is None:
        raise UsageError("--mode wit needs --prompt-weight X (e.g. --prompt-weight 0.1)")
    flags = "--mode" + ("/--prompt-weight/--response-weight" if mode == "wit" else "")
    try:
        policy = WeightPolicy.preset(mode, prompt_weight=prompt_weight, response_weight=response_weight,
                                     last_assistant_only=bool(getattr(args, "last_assistant_only", False)))
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{flags}: {exc}") from None
    try:
        return policy.with_weights(parse_weight_overrides(getattr(args, "weights", None)))
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{flags}/--weights: {exc}" if "--weights" not in str(exc) else str(exc)) from None


def encoder_options_from_args(args: argparse.Namespace) -> EncoderOptions:
    """:class:`EncoderOptions` from the flags of :func:`add_encoder_arguments`; raises :class:`UsageError`."""
    policy = policy_from_args(args)
    try:
        return EncoderOptions(
            tokenizer=args.tokenizer, chat_template=args.chat_template, policy=policy, max_length=args.max_length,
            truncation=args.truncation, allow_special_tokens=args.allow_special_tokens,
            format_options=dataclasses.replace(FormatOptions.from_cli(args.input_format, args.columns),
                                               split_inline_reasoning=args.split_inline_reasoning),
            chat_template_kwargs=args.chat_template_kwargs or "{}",
            allow_unrendered=tuple(args.allow_unrendered or ()))
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def add_runner_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runner", default="direct",
                   help="direct, dask, or any Beam runner name (DataflowRunner, FlinkRunner, ...) (default: direct)")
    p.add_argument("--dask-address", default=None, metavar="ADDR",
                   help="with --runner dask: join this dask.distributed scheduler (default: start a LocalCluster)")
    p.add_argument("--dask-workers", type=int, default=None, metavar="N",
                   help="with --runner dask and no --dask-address: LocalCluster worker processes (default: CPUs)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help=f"max records per encode batch (default: {DEFAULT_BATCH_SIZE})")


def runner_options_from_args(args: argparse.Namespace) -> RunnerOptions:
    return RunnerOptions(runner=args.runner, dask_address=args.dask_address, dask_workers=args.dask_workers)


def plain_description(doc: str | None) -> str:
    """The first paragraph of a module docstring as plain text for ``--help`` (no reStructuredText markup)."""
    import re

    first = (doc or "").strip().split("\n\n")[0]
    return " ".join(re.sub(r"``(.*?)``|`(.*?)`", lambda m: m.group(1) or m.group(2) or "", first).split())


def parse_size(text: str) -> int:
    """A byte count with an optional binary suffix: ``4096``, ``64K``, ``16M``/``16MiB``, ``1G``.

    >>> parse_size("16MiB"), parse_size("64k"), parse_size("100")
    (16777216, 65536, 100)
    """
    s = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    try:
        return int(s[:-1] if scale > 1 else s) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 4096, 64K, 16M or 1G, got {text!r}") from None


def usage_error(exc: BaseException) -> UsageError:
    """The first line of an exception's message as a :class:`UsageError`."""
    text = str(exc).strip()
    return UsageError(text.splitlines()[0] if text else type(exc).__name__)

