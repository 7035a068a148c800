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
from .shard_dir import is_shard_dir, read_arrow_table, read_manifest


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
    target = os.path.expanduser(args.target)
    if os.path.isdir(target) and is_shard_dir(target):
        return view_from_shard_dir(target, args)
    return view_from_raw(args.target, args)


# ------------------------------------------------------------------------------------------- shard dirs
def _shard_tokenizer(manifest: dict[str, Any], override: str | None):
    """The tokenizer to show token texts with: ``--tokenizer`` or the manifest's; ``None`` (ids only) if neither
    loads. A fingerprint mismatch is a warning."""
    from im_data import load_tokenizer, tokenizer_fingerprint
    from im_data.tokenizer import TokenizerLoadError

    name = override or (manifest.get("tokenizer") or {}).get("name_or_path")
    try:
        tok = load_tokenizer(name)
    except TokenizerLoadError as exc:
        print(f"im-data inspect: warning: {str(exc).splitlines()[0]}; showing token ids only (pass --tokenizer)",
              file=sys.stderr)
        return None
    expected = (manifest.get("tokenizer") or {}).get("fingerprint")
    if expected and tokenizer_fingerprint(tok) != expected:
        print(f"im-data inspect: warning: tokenizer {name!r} differs from the one the shards were made with "
              f"(fingerprint {tokenizer_fingerprint(tok)} != {expected}); token texts may be wrong", file=sys.stderr)
    return tok


def find_shard_row(path: str, manifest: dict[str, Any], index: int | None, example_id: str | None
                   ) -> tuple[dict[str, Any], int, str]:
    """``(row, global index, shard path)`` for ``--index`` or ``--example-id``."""
    def read_table(spath: str, columns=None):
        return read_arrow_table(spath, columns)

    shards = manifest["shards"]
    total = sum(int(s.get("num_rows", 0)) for s in shards)
    if total == 0:
        raise InspectError(f"{path}: the shard directory holds no examples")
    offset = 0
    for shard in shards:
        spath = os.path.join(path, shard["path"])
        if example_id is not None:
            ids = read_table(spath, ["example_id"]).column("example_id").to_pylist()
            if example_id in ids:
                row = ids.index(example_id)
                return read_table(spath).slice(row, 1).to_pylist()[0], offset + row, shard["path"]
        else:
            n = int(shard.get("num_rows", 0))
            want = index or 0
            if want < offset + n:
                table = read_table(spath)
                if want - offset >= table.num_rows:
                    raise InspectError(f"{spath}: holds {table.num_rows} rows, the manifest says {n}")
                return table.slice(want - offset, 1).to_pylist()[0], want, shard["path"]
        offset += int(shard.get("num_rows", 0))
    if example_id is not None:
        raise InspectError(f"{path}: no example with example_id {example_id!r}")
    raise InspectError(f"{path}: --index {index} is out of range ({total:,} examples)")


def view_from_shard_dir(path: str, args: argparse.Namespace):
    from im_data.render import view_from_row

    manifest = read_manifest(path)
    if args.mode is not None or args.weights or args.prompt_weight is not None or args.chat_template:
        print("im-data inspect: warning: --mode/--weights/--prompt-weight/--chat-template are ignored for a shard "
              "directory (its loss weights were fixed by `prepare`)", file=sys.stderr)
    row, index, shard = find_shard_row(path, manifest, args.index, args.example_id)
    tok = _shard_tokenizer(manifest, args.tokenizer)
    policy = manifest.get("policy") or {}
    meta = {"example_id": row.get("example_id"), "index": index, "shard": shard,
            "tokens": len(row["input_ids"]), "instruction tokens": row.get("num_instruction_tokens"),
            "output tokens": row.get("num_output_tokens"), "truncated": row.get("truncated"),
            "policy": policy.get("name", "?"), "template": (manifest.get("chat_template") or {}).get("name", "?")}
    return view_from_row(row, tok, title=f"{os.path.normpath(path)} · example {index}", meta=meta)


# ------------------------------------------------------------------------------------------------- raw
def find_raw_record(spec: str, index: int | None, example_id: str | None):
    """``(RawRecord, position)`` of the N-th record (reading order) or the one with ``example_id``."""
    from im_data.shards import example_id as make_id
    from .read import InputError, expand_inputs, plan_splits, read_split

    try:
        sources = expand_inputs([spec])
    except InputError as exc:
        raise InspectError(str(exc).splitlines()[0]) from None
    want = 0 if index is None and example_id is None else index
    position = 0
    for split in plan_splits(sources, 1 << 62):
        for rec in read_split(split):
            err = rec.payload
            if rec.index is None:
                raise InspectError(f"unreadable input: {rec.source}: {getattr(err, 'message', err)}".splitlines()[0])
            if example_id is not None:
                if make_id(rec.source, rec.index) == example_id:
                    return rec, position
            elif position == want:
                return rec, position
            position += 1
    if position == 0:
        raise InspectError(f"{spec}: the input holds no records")
    if example_id is not None:
        raise InspectError(f"{spec}: no record with example_id {example_id!r}")
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
    rec, position = find_raw_record(spec, args.index, args.example_id)
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
    meta = {"example_id": make_id(rec.source, rec.index), "index": position, "tokens": len(ex),
            "instruction tokens": ex.num_instruction_tokens, "output tokens": ex.num_output_tokens,
            "truncated": ex.truncated, "policy": policy.name, "template": encoder.template.name}
    return view_from_example(ex, tok, title=f"{rec.source} · example {position}", meta=meta)
