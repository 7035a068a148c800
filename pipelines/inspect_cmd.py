"""``im-data inspect``: what exactly gets trained? One example, token by token.

Each token is coloured by its loss weight on a continuous scale (0 → dim, 1 → full) over a background colour
for its role, followed by per-role token counts and weight mass. Works on a prepared shard directory (the
stored ``loss_weights``) and on raw input, encoded on the fly with the given tokenizer, template and mode.
``--html FILE`` writes the same view as a standalone HTML page.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .options import (UsageError, add_encoder_arguments, check_input_specs, encoder_options_from_args,
                      plain_description, usage_error)
from .shard_dir import is_shard_dir, open_prepared, shard_dir_error


class InspectError(UsageError):
    """Bad input: one line on stderr, exit status 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="SHARD_DIR|INPUT",
                   help="a prepared shard directory (with manifest.json) or a raw input in any format prepare reads")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, default=None, metavar="N",
                       help="the N-th example (0-based; shard rows in manifest order, or records in reading order) "
                            "(default: 0)")
    which.add_argument("--example-id", default=None, metavar="ID",
                       help="the example with this example_id (default: use --index)")
    p.add_argument("--html", default=None, metavar="FILE",
                   help="also write the view as a standalone HTML page (default: none)")
    p.add_argument("--tokens", action="store_true",
                   help="print one plain line per token (position, text, id, role, weight) instead of the view "
                        "(default: off)")
    p.add_argument("--width", type=int, default=None, metavar="COLS", help="terminal width (default: detected)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour output (default auto: only on a terminal; NO_COLOR is honoured)")
    g = p.add_argument_group("raw input (ignored for a shard directory, whose weights are fixed)")
    add_encoder_arguments(g)


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="show one example token by token, coloured by loss weight and role",
                              description=plain_description(__doc__))
    add_arguments(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    from rich.console import Console

    from im_data.render import render_html, render_terminal, render_token_rows

    view = build(args)
    force = {"always": True, "never": False}.get(args.color)
    # --color always: 24-bit colour, so the weight scale stays continuous (auto: whatever the terminal supports)
    console = Console(width=args.width, force_terminal=force, no_color=args.color == "never" or None,
                      color_system="truecolor" if args.color == "always" else "auto", highlight=False)
    if args.tokens:
        print(render_token_rows(view))
    else:
        render_terminal(view, console)
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(render_html(view))
        except OSError as exc:
            raise UsageError(f"cannot write {args.html}: {exc}") from None
        console.print(f"HTML view: {args.html}", markup=False)
    return 0


def build(args: argparse.Namespace):
    """The :class:`im_data.render.ExampleView` the arguments ask for (raises :class:`InspectError`)."""
    if args.index is not None and args.index < 0:
        raise InspectError(f"--index must be >= 0, got {args.index}")
    check_input_specs([args.target])
    if is_shard_dir(args.target):
        return view_from_shard_dir(args.target, args)
    return view_from_raw(args.target, args)


# ------------------------------------------------------------------------------------------- shard dirs
def _shard_tokenizer(manifest, override: str | None):
    """The tokenizer to show token texts with: ``--tokenizer`` or the manifest's; ``None`` (ids only) if neither
    loads. A fingerprint mismatch is a warning."""
    from im_data import load_tokenizer, tokenizer_fingerprint
    from im_data.tokenizer import TokenizerLoadError

    name = override or manifest.tokenizer_name
    try:
        tok = load_tokenizer(name)
    except TokenizerLoadError as exc:
        print(f"im-data inspect: warning: {str(exc).splitlines()[0]}; showing token ids only (pass --tokenizer)",
              file=sys.stderr)
        return None
    expected = manifest.tokenizer_fingerprint
    if tokenizer_fingerprint(tok) != expected:
        print(f"im-data inspect: warning: tokenizer {name!r} differs from the one the shards were made with "
              f"(fingerprint {tokenizer_fingerprint(tok)} != {expected}); token texts may be wrong", file=sys.stderr)
    return tok


def find_shard_row(prepared, index: int | None, example_id: str | None) -> tuple[dict[str, Any], int, str]:
    """``(row, global index, shard path)`` for ``--index`` or ``--example-id`` (the shards of every split, in
    manifest order)."""
    from im_data.dataset import ManifestError

    shards = prepared.manifest.shards
    total = sum(s.num_rows for s in shards)
    if total == 0:
        raise InspectError(f"{prepared.root}: the shard directory holds no examples")
    offset = 0
    try:
        for shard in shards:
            if example_id is not None:
                ids = prepared.read_shard(shard, ["example_id"]).column("example_id").to_pylist()
                if example_id in ids:
                    row = ids.index(example_id)
                    return prepared.read_shard(shard).slice(row, 1).to_pylist()[0], offset + row, shard.path
            else:
                want = index or 0
                if want < offset + shard.num_rows:
                    table = prepared.read_shard(shard)
                    if want - offset >= table.num_rows:
                        raise InspectError(f"{prepared.path(shard.path)}: holds {table.num_rows} rows, the manifest "
                                           f"says {shard.num_rows}")
                    return table.slice(want - offset, 1).to_pylist()[0], want, shard.path
            offset += shard.num_rows
    except ManifestError as exc:
        raise shard_dir_error(exc) from None
    if example_id is not None:
        raise InspectError(f"{prepared.root}: no example has example_id {example_id!r} (--example-id)")
    raise InspectError(f"{prepared.root}: --index {index} is out of range ({total:,} examples)")


def view_from_shard_dir(path: str, args: argparse.Namespace):
    from im_data.render import view_from_row

    prepared = open_prepared(path)
    manifest = prepared.manifest
    if args.mode is not None or args.weights or args.prompt_weight is not None or args.chat_template:
        print("im-data inspect: warning: --mode/--weights/--prompt-weight/--chat-template are ignored for a shard "
              "directory (its loss weights were fixed by `prepare`)", file=sys.stderr)
    row, index, shard = find_shard_row(prepared, args.index, args.example_id)
    tok = _shard_tokenizer(manifest, args.tokenizer)
    meta = {"example_id": row.get("example_id"), "index": index, "shard": shard,
            "tokens": len(row["input_ids"]), "instruction tokens": row.get("num_instruction_tokens"),
            "output tokens": row.get("num_output_tokens"), "truncated": row.get("truncated"),
            "policy": manifest.policy.get("name", "?"), "template": manifest.chat_template.get("name", "?")}
    title = path if "://" in path else os.path.normpath(path)
    return view_from_row(row, tok, title=f"{title} · example {index}", meta=meta)


# ------------------------------------------------------------------------------------------------- raw
def label_aliases(source) -> list[str]:
    """Every label ``prepare`` may have given the records of a local ``source`` when run from another folder:
    the label as given here, then the path relative to the current folder, absolute (also with symbolic links
    resolved) and every trailing part of those (``x.jsonl``, ``repo/x.jsonl``, ...); a URL or hub dataset
    only has its own label. Example ids hash the label, so an id made from ``x.jsonl`` is found through
    ``../repo/x.jsonl`` too."""
    labels = [source.label]
    if source.kind == "hub" or "://" in source.path:
        return labels
    given = os.path.normpath(source.path)
    suffix = source.label[len(given):] if source.label.startswith(given) else ""  # a DatasetDict's "[split]"
    for path in (os.path.abspath(source.path), os.path.realpath(source.path)):
        labels.append(os.path.relpath(path) + suffix)
        parts = path.strip(os.sep).split(os.sep)
        labels += [os.path.join(*parts[i:]) + suffix for i in range(len(parts) - 1, -1, -1)]
        labels.append(path + suffix)
    return list(dict.fromkeys(labels))


def find_raw_record(spec: str, index: int | None, example_id: str | None):
    """``(RawRecord, position, label)`` of the N-th record (reading order) or the one with ``example_id``;
    ``label``: the source label the id was made from (:func:`label_aliases`; the record's own for ``--index``)."""
    from im_data.shards import example_id as make_id
    from .read import InputError, expand_inputs, plan_splits, read_split

    try:
        sources = expand_inputs([spec])
    except InputError as exc:
        raise InspectError(str(exc).splitlines()[0]) from None
    aliases = {s.label: label_aliases(s) for s in sources}
    want = 0 if index is None and example_id is None else index
    position = 0
    for split in plan_splits(sources, 1 << 62):
        for rec in read_split(split):
            err = rec.payload
            if rec.index is None:
                raise InspectError(f"unreadable input: {rec.source}: {getattr(err, 'message', err)}".splitlines()[0])
            if example_id is not None:
                for label in aliases.get(rec.source, [rec.source]):
                    if make_id(label, rec.index) == example_id:
                        return rec, position, label
            elif position == want:
                return rec, position, rec.source
            position += 1
    if position == 0:
        raise InspectError(f"{spec}: the input holds no records")
    if example_id is not None:
        tried = sorted({a for labels in aliases.values() for a in labels}, key=len)
        raise InspectError(f"{spec}: no record has example_id {example_id!r} (ids hash the input path as prepare was "
                           f"given it and the line/row; tried {len(tried)} spellings of this path, e.g. "
                           f"{', '.join(tried[:3])}); the record is in another input, or inspect the prepared folder "
                           f"instead: im-data inspect OUTPUT_DIR --example-id {example_id}")
    raise InspectError(f"{spec}: --index {index} is out of range ({position:,} records)")


def view_from_raw(spec: str, args: argparse.Namespace):
    from im_data import RecordError, parse_json_line
    from im_data.render import view_from_example
    from im_data.tokenizer import TokenizerLoadError

    from im_data.shards import example_id as make_id

    options = encoder_options_from_args(args)
    try:
        tok = options.load_tokenizer()
        encoder = options.build(tok)
    except (TokenizerLoadError, ValueError, OSError) as exc:
        raise usage_error(exc) from None
    policy = options.policy
    rec, position, label = find_raw_record(spec, args.index, args.example_id)
    where = f"{rec.source}, record {position} (line/row {rec.index})"
    try:
        payload = rec.payload
        if isinstance(payload, RecordError):
            raise payload
        if isinstance(payload, (bytes, bytearray, str)):
            payload = parse_json_line(payload)
        ex = encoder.encode(payload)
    except RecordError as exc:
        raise InspectError(f"{where} is rejected: [{exc.reason}] {exc.message}".splitlines()[0]) from None
    meta = {"example_id": make_id(label, rec.index), "index": position, "tokens": len(ex),
            "instruction tokens": ex.num_instruction_tokens, "output tokens": ex.num_output_tokens,
            "truncated": ex.truncated, "policy": policy.name, "template": encoder.template.name}
    if label != rec.source:  # the id was made from another spelling of this file's path
        meta["example_id"] += f" (of {label})"
    return view_from_example(ex, tok, title=f"{rec.source} · example {position}", meta=meta)
