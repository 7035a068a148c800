"""The dataset card (``README.md``) of a prepared directory: YAML ``configs`` that ``datasets`` reads, and a body
that says how the data was made and how to train on it.

``configs`` (the `datasets` "manual configuration" of a data folder):

* ``default``: split ``train`` = the train shards, plus the evaluation split (``--eval-fraction``) if any. So
  ``datasets.load_dataset(DIR)``, ``trl sft --dataset_name DIR`` and a copy of the folder on a dataset hub load
  exactly the shards, never the dead letters or the JSON files next to them.
* ``rejects``: one split per reason code, the dead letters of ``rejects/<reason>.jsonl`` in their typed copy
  ``rejects/<reason>.<format>`` (`datasets` infers one file format for a whole folder, from the default config, so
  the JSON Lines files themselves cannot be a config next to Arrow/Parquet shards). Absent when nothing was
  rejected.

Pure: builds text from a :class:`im_data.dataset.Manifest` and the ``stats.json`` document.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import yaml

from .dataset import EVAL_SPLIT_RECIPE, TRAIN_SPLIT, Manifest
from .roles import ROLE_LABELS

TAGS = ("im-data", "instruction-modelling", "tokenized", "loss-weights")


def card_metadata(manifest: Manifest) -> dict[str, Any]:
    """The YAML header as a dict."""
    data_files = [{"split": split, "path": [s.path for s in manifest.shards_of(split)]}
                  for split in manifest.splits]
    configs: list[dict[str, Any]] = [{"config_name": "default", "default": True, "data_files": data_files}]
    if manifest.rejects:
        configs.append({"config_name": "rejects",
                        "data_files": [{"split": r.reason, "path": r.table} for r in manifest.rejects if r.table]})
    return {"configs": configs, "tags": list(TAGS)}


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _made_section(m: Manifest) -> str:
    template = m.chat_template
    rows = [["inputs", ", ".join(f"`{i}`" for i in m.inputs) or "n/a"],
            ["tokenizer", f"`{m.tokenizer_name}` (fingerprint `{m.tokenizer_fingerprint}`)"],
            ["chat template", f"`{template.get('name', '?')}` (sha256 `{str(template.get('sha256', ''))[:16]}…`)"],
            ["weight policy", f"`{m.policy.get('name', '?')}` (fingerprint `{m.policy_fingerprint}`)"
             + (", last assistant turn only" if m.policy.get("last_assistant_only") else "")],
            ["max length", _fmt(m.max_length) + ("" if m.max_length is None else f" (truncation `{m.truncation}`)")],
            ["special tokens in content", "allowed" if m.allow_special_tokens else "rejected"],
            ["shard format", f"{m.format}, {len(m.shards)} file(s)"],
            *([["packing", f"best-fit decreasing into rows of {m.pack_length:,} tokens (`seq_lengths`)"]]
              if m.pack_length else []),
            ["made by", f"im-data {m.package_version}, {m.created_at}"]]
    weights = _table(["role", *ROLE_LABELS], [["loss weight", *[_fmt(m.policy.get(r), 2) for r in ROLE_LABELS]]])
    return "## How this data was made\n\n" + _table(["", ""], rows) + "\n\nPer-token loss weight by role:\n\n" + weights


def _counts_section(m: Manifest) -> str:
    c = m.counts
    rows = [["read", _fmt(c.read)], ["written", _fmt(c.written)],
            ["rejected", f"{_fmt(c.rejected)} ({100 * c.reject_rate:.2f} %)"], ["truncated", _fmt(c.truncated)]]
    rows += [[f"split `{split}`", _fmt(n)] for split, n in m.splits.items()]
    out = "## Counts\n\n" + _table(["", "examples"], rows)
    if m.eval_fraction:
        out += (f"\n\nThe evaluation split holds a fraction {m.eval_fraction:g} of the examples, chosen "
                f"deterministically: {EVAL_SPLIT_RECIPE}.")
    if m.rejects:
        out += "\n\n### Rejects by reason\n\n" + _table(
            ["reason", "records", "file"], [[f"`{r.reason}`", _fmt(r.count), f"`{r.path}`"] for r in m.rejects])
        out += ("\n\nEvery rejected record is in its file with its source, index, message and raw text "
                "(`load_dataset(DIR, \"rejects\")`).")
    else:
        out += "\n\nNo record was rejected."
    return out


def _sources_section(stats: Mapping[str, Any]) -> str:
    sources = stats.get("sources") or {}
    if len(sources) < 1:
        return ""
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f} %"

    def rec(s):
        r = s.get("recommendation")
        return "n/a" if not r else r["summary"]

    rows = [[f"`{label}`", "all" if s.get("ratio") is None else f"@{s['ratio']:g}", _fmt(s.get("available")),
             _fmt(s["read"]), _fmt(s["written"]), _fmt(s["rejected"]),
             ", ".join(f"{r} {_fmt(n)}" for r, n in s["rejected_by_reason"].items()) or "none",
             pct(s.get("share")), _fmt(s.get("tokens")), pct(s.get("token_share")), _fmt(s.get("dataset_ratio"), 4),
             rec(s)]
            for label, s in sources.items()]
    out = "## Sources\n\n" + _table(["source", "ratio", "available", "read", "written", "rejected",
                                       "rejected by reason", "share", "tokens", "token share", "length ratio",
                                       "recommendation"], rows)
    return out + ("\n\n`available`: records in the source; `read`: records the mixture took (`INPUT@R`: a fraction "
                  "R <= 1 or a count R > 1, repeats included); `read = written + rejected` for each source; "
                  "`share`: the realised share of the examples written.")


def _decontamination_section(stats: Mapping[str, Any]) -> str:
    d = stats.get("decontamination")
    if not d:
        return ""
    rows = [[f"`{b}`", _fmt(v["ngrams"]), _fmt(v["contaminated"])] for b, v in d["benchmarks"].items()]
    out = (f"## Decontamination\n\nRecords whose instruction or output side shares a {d['ngram']}-word n-gram with a "
           "benchmark record were rejected as `contaminated` (each dead letter names the benchmark, its record and "
           "the n-gram).\n\n" + _table(["benchmark", "distinct n-grams", "records rejected"], rows))
    per_source = [[f"`{label}`", _fmt(s["rejected_by_reason"].get("contaminated", 0))]
                  for label, s in (stats.get("sources") or {}).items()]
    if per_source:
        out += "\n\n" + _table(["source", "records rejected as contaminated"], per_source)
    return out


def _lengths_section(stats: Mapping[str, Any]) -> str:
    rows = []
    for key, label in (("instruction_tokens", "instruction tokens"), ("output_tokens", "output tokens"),
                       ("template_tokens", "template tokens")):
        b = stats.get(key) or {}
        rows.append([label, _fmt(b.get("sum")), _fmt(b.get("mean")), _fmt(b.get("median")), _fmt(b.get("min")),
                     _fmt(b.get("max"))])
    out = "## Lengths and the dataset ratio\n\n" + _table(["per example", "sum", "mean", "median", "min", "max"], rows)
    q = stats.get("ratio_quantiles") or {}
    ratio_rows = [["dataset ratio (Σ instruction / Σ output)", _fmt(stats.get("dataset_ratio"), 4)]]
    ratio_rows += [[f"per-example ratio {k}", _fmt(q.get(k), 4)] for k in ("p05", "p25", "p50", "p75", "p95")]
    out += "\n\n" + _table(["length ratio", "value"], ratio_rows)
    packing = stats.get("packing")
    if packing:
        out += ("\n\n" + _table(["packing", "value"], [
            ["pack length", _fmt(packing["pack_length"])], ["packed rows", _fmt(packing["rows"])],
            ["documents", _fmt(packing["documents"])], ["tokens", _fmt(packing["tokens"])],
            ["efficiency (tokens / (rows × pack length))", _fmt(packing["efficiency"], 4)]]))
    return out


def _recommendation_section(stats: Mapping[str, Any]) -> str:
    from .recommend import recommend

    ratio, n = stats.get("dataset_ratio"), int(stats.get("count") or 0)
    if ratio is None or n < 1:
        return "## Audit recommendation\n\nNot available (no examples with output tokens)."
    rec = recommend(ratio, n)
    out = f"## Audit recommendation\n\n**{rec.summary}**. {rec.reason}"
    if rec.suggested_prompt_weight is not None:
        out += (f" A WIT-style prompt weight of {rec.suggested_prompt_weight:g} is suggested "
                f"(`im-data prepare --mode wit --prompt-weight {rec.suggested_prompt_weight:g}`).")
    return out + f"\n\n_{rec.caveat} ({rec.citation})._"


HUB_PREFIX = "hf://datasets/"


def dataset_reference(location: str | None) -> tuple[str, str]:
    """How the card's commands name the dataset, and the sentence that says where to run them: ``./NAME`` for a
    local folder NAME (run from the folder that holds it, so the commands hold wherever the folder is moved or
    copied; ``.`` would do for neither ``datasets`` nor TRL, which name a dataset after its path), the hub name for
    ``hf://datasets/ORG/NAME``, the URL for other object storage, ``DIR`` when unknown."""
    if not location:
        return "DIR", ""
    if location.startswith(HUB_PREFIX):
        return "/".join(location[len(HUB_PREFIX):].split("/")[:2]), ""
    if "://" in location:
        return location.rstrip("/"), ""
    where = f"./{location.rstrip('/').replace(os.sep, '/').rsplit('/', 1)[-1]}"
    return where, (f"Run these commands in the folder that holds this one (`{where}` is this folder, wherever it is "
                   "moved or copied; on a dataset hub, use the dataset's name instead).\n\n")


def _train_section(m: Manifest, where: str, note: str = "") -> str:
    out = (f"## How to train\n\n{note}With the per-token loss weights (any policy):\n\n```bash\n"
           f"im-sft --model_name_or_path MODEL --dataset_name {where} --output_dir RUN\n```\n\n")
    binary = m.policy_is_binary
    packed = " --padding_free True --max_length None" if m.pack_length else ""
    if binary:
        out += ("The weights of this policy are 0 or 1, so the `labels` column (-100 where the weight is 0) says the "
                "same thing: plain TRL trains on it unchanged:\n\n```bash\n"
                f"trl sft --model_name_or_path MODEL --dataset_name {where} --output_dir RUN{packed}\n```\n")
    if m.pack_length:
        out += ("\nThe rows are packed (`seq_lengths` gives each example's length): `im-sft` trains them as they are; "
                "plain TRL needs `--padding_free True` (and `--max_length None`: the rows already fit).\n")
    else:
        out += ("> **Warning**: this policy has fractional weights. Plain `trl sft` (or `SFTTrainer`) reads only "
                "`labels` and trains every token with a weight > 0 at weight 1; use `im-sft` "
                "(`trl_plugin.WeightedSFTTrainer`) to train on the weights.\n")
    return out + (f"\nIn Python: `datasets.load_dataset(\"{where}\")` gives the splits above; "
                  f"`trl_plugin.load_prepared(\"{where}\")` also checks the manifest, the row counts and the tokenizer.")


def _columns_section(m: Manifest) -> str:
    return "## Columns\n\n" + _table(["column", "type"], [[f"`{c.name}`", f"`{c.type}`"] for c in m.columns])


def render_card(manifest: Manifest, stats: Mapping[str, Any], location: str | None = None) -> str:
    """The whole ``README.md``: YAML header, then the sections. ``location`` (the output directory or URL) names
    the dataset; the commands name it as :func:`dataset_reference` says (``DIR`` when not given)."""
    header = yaml.safe_dump(card_metadata(manifest), sort_keys=False, default_flow_style=False)
    where, note = dataset_reference(location)
    name = location.rstrip("/").rsplit("/", 1)[-1] if location else "im-data prepared dataset"
    rows = manifest.splits.get(TRAIN_SPLIT, 0)
    held = (f"{rows:,} packed rows of at most {manifest.pack_length:,} tokens" if manifest.pack_length
            else f"{rows:,} examples")
    intro = (f"# {name}\n\nTokenized conversations with per-token loss weights (`loss_weights`) and token roles "
             f"(`roles`), made by `im-data prepare`. Split `{TRAIN_SPLIT}`: {held}. "
             "`manifest.json` (written last) lists every file with its sha256.")
    sections = [intro, _made_section(manifest), _counts_section(manifest), _sources_section(stats),
                _decontamination_section(stats), _lengths_section(stats), _recommendation_section(stats),
                _train_section(manifest, where, note), _columns_section(manifest)]
    return f"---\n{header}---\n\n" + "\n\n".join(s for s in sections if s) + "\n"
