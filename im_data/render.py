"""What exactly gets trained: a token-by-token view of one example, for the terminal and for HTML.

Pure (no Beam, no I/O). :func:`build_view` turns the arrays of an encoded example or of a shard row
(``input_ids``, ``roles``, ``loss_weights``) into an :class:`ExampleView`; :func:`render_terminal` prints
it with ``rich``, :func:`render_html` returns a standalone HTML page (inline CSS, no scripts).

Visual encoding, the same in both renderings:

* **role -> background colour** (legend printed), from :data:`im_data.roles.ROLE_TABLE`: template grey, system
  purple, user blue, tool teal, assistant green, assistant_end olive, reasoning brown, tool_call steel blue.
* **loss weight -> text brightness / opacity**, continuous: ``level = sqrt(min(w, 1))``, 0 -> dim,
  1 -> full. The square root spreads small weights so a WIT prompt weight of 0.1 is visibly brighter than
  0 (IT) and visibly dimmer than 1 (IM). Weights above 1 are shown at full brightness, in bold.

Token text is reconstructed per token from the tokenizer's vocabulary with an incremental UTF-8 decoder,
so a character split over several byte-level tokens appears on the token that completes it (the earlier
ones are shown empty); the concatenation of all token texts equals the decoded sequence.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import html
import math
import re
from typing import Any, Iterable, Sequence

import numpy as np

from .roles import ROLE_LABELS, ROLE_TABLE, Role

#: Background colour per role, terminal (dark theme) and HTML (light theme), indexed by role code.
TERMINAL_BG: dict[str, tuple[int, int, int]] = {r.name: r.terminal_bg for r in ROLE_TABLE}
HTML_BG: dict[str, str] = {r.name: r.html_bg for r in ROLE_TABLE}
#: Text brightness at weight 0 and 1 (terminal, 0-255 grey level).
DIM_LEVEL = 85
FULL_LEVEL = 255
#: Text opacity at weight 0 and 1 (HTML).
DIM_OPACITY = 0.28
LEGEND_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0)


# --------------------------------------------------------------------------------------------- token text
@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level mapping, unicode char -> byte."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and "ByteLevel" in repr(decoder)


def token_texts(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The text each token contributes, in order; ``"".join(result)`` is the decoded sequence."""
    ids = [int(i) for i in ids]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    added = {int(i) for i in getattr(tokenizer, "added_tokens_decoder", {})}
    byte_level = _is_byte_level(tokenizer)
    bmap = _byte_decoder()
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    out: list[str] = []
    for token_id, piece in zip(ids, pieces):
        if piece is None:
            out.append(decoder.decode(b"", final=True) + f"<unk:{token_id}>")
            decoder.reset()
            continue
        if token_id in added:
            out.append(decoder.decode(b"", final=True) + piece)
            decoder.reset()
            continue
        if byte_level and all(c in bmap for c in piece):
            data = bytes(bmap[c] for c in piece)
        else:
            m = _BYTE_FALLBACK.match(piece)
            data = bytes([int(m.group(1), 16)]) if m else piece.replace("\u2581", " ").encode("utf-8")
        out.append(decoder.decode(data))
    tail = decoder.decode(b"", final=True)
    if tail and out:
        out[-1] += tail
    return out


# ---------------------------------------------------------------------------------------------- view data
@dataclasses.dataclass(frozen=True)
class TokenCell:
    token_id: int
    text: str
    role: str
    weight: float


@dataclasses.dataclass(frozen=True)
class RoleRow:
    role: str
    tokens: int
    weight_mass: float
    mass_share: float          # share of the example's total weight mass (0 when the total is 0)
    mean_weight: float         # weight mass / tokens (0 when no tokens)


@dataclasses.dataclass(frozen=True)
class ExampleView:
    cells: tuple[TokenCell, ...]
    roles: tuple[RoleRow, ...]
    title: str = ""
    meta: tuple[tuple[str, str], ...] = ()

    @property
    def total_tokens(self) -> int:
        return len(self.cells)

    @property
    def total_weight_mass(self) -> float:
        return float(sum(r.weight_mass for r in self.roles))

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "meta": dict(self.meta),
            "tokens": [dataclasses.asdict(c) for c in self.cells],
            "roles": [dataclasses.asdict(r) for r in self.roles],
        }


def role_rows(roles: np.ndarray, weights: np.ndarray) -> tuple[RoleRow, ...]:
    """Per-role token counts and weight mass (every role of the role table, in role-code order)."""
    roles = np.asarray(roles, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    counts = np.bincount(roles, minlength=len(ROLE_LABELS))[: len(ROLE_LABELS)]
    mass = np.bincount(roles, weights=weights, minlength=len(ROLE_LABELS))[: len(ROLE_LABELS)]
    total = float(mass.sum())
    rows = []
    for code, label in enumerate(ROLE_LABELS):
        n = int(counts[code])
        m = float(mass[code])
        rows.append(RoleRow(role=label, tokens=n, weight_mass=m, mass_share=(m / total) if total > 0 else 0.0,
                            mean_weight=(m / n) if n else 0.0))
    return tuple(rows)


def build_view(input_ids: Iterable[int], roles: Iterable[int], loss_weights: Iterable[float], *,
               tokenizer: Any = None, texts: Sequence[str] | None = None, title: str = "",
               meta: dict[str, Any] | None = None) -> ExampleView:
    """Build the view from the three per-token arrays. Token texts come from ``texts`` if given, else from
    ``tokenizer`` (see :func:`token_texts`), else the ids are shown as ``[id]``."""
    ids = np.asarray(list(input_ids) if not isinstance(input_ids, np.ndarray) else input_ids, dtype=np.int64)
    rs = np.asarray(list(roles) if not isinstance(roles, np.ndarray) else roles, dtype=np.int64)
    ws = np.asarray(list(loss_weights) if not isinstance(loss_weights, np.ndarray) else loss_weights,
                    dtype=np.float64)
    if not (len(ids) == len(rs) == len(ws)):
        raise ValueError(f"input_ids, roles and loss_weights differ in length ({len(ids)}, {len(rs)}, {len(ws)})")
    if len(rs) and (rs.min() < 0 or rs.max() >= len(ROLE_LABELS)):
        raise ValueError(f"role codes must be in 0..{len(ROLE_LABELS) - 1}")
    if texts is None:
        texts = token_texts(tokenizer, ids.tolist()) if tokenizer is not None else [f"[{i}]" for i in ids.tolist()]
    if len(texts) != len(ids):
        raise ValueError("one text per token expected")
    cells = tuple(TokenCell(int(i), str(t), Role(int(r)).label, float(w)) for i, t, r, w in zip(ids, texts, rs, ws))
    return ExampleView(cells=cells, roles=role_rows(rs, ws), title=title,
                       meta=tuple((str(k), str(v)) for k, v in (meta or {}).items()))


def view_from_example(example: Any, tokenizer: Any, *, title: str = "", meta: dict[str, Any] | None = None
                      ) -> ExampleView:
    """View of an ``EncodedExample`` (anything with ``input_ids``, ``roles``, ``loss_weights``)."""
    return build_view(example.input_ids, example.roles, example.loss_weights, tokenizer=tokenizer, title=title,
                      meta=meta)


def view_from_row(row: dict[str, Any], tokenizer: Any, *, title: str = "", meta: dict[str, Any] | None = None
                  ) -> ExampleView:
    """View of a shard row (``input_ids``, ``roles``, ``loss_weights`` columns)."""
    return build_view(row["input_ids"], row["roles"], row["loss_weights"], tokenizer=tokenizer, title=title,
                      meta=meta)


# ------------------------------------------------------------------------------------------------- colours
def weight_level(weight: float) -> float:
    """Continuous display level in [0, 1]: ``sqrt(clip(w, 0, 1))``."""
    if not math.isfinite(weight) or weight <= 0:
        return 0.0
    return math.sqrt(min(weight, 1.0))


def terminal_fg(weight: float) -> tuple[int, int, int]:
    g = round(DIM_LEVEL + (FULL_LEVEL - DIM_LEVEL) * weight_level(weight))
    return (g, g, g)


def html_opacity(weight: float) -> float:
    return round(DIM_OPACITY + (1.0 - DIM_OPACITY) * weight_level(weight), 3)


def _display(text: str) -> str:
    """Make whitespace visible where it would otherwise vanish: newline -> '↵' + newline, tab -> '⇥'."""
    return text.replace("\r", "␍").replace("\t", "⇥").replace("\n", "↵\n")


def _rgb(c: tuple[int, int, int]) -> str:
    return f"rgb({c[0]},{c[1]},{c[2]})"


# ------------------------------------------------------------------------------------------------ terminal
def terminal_renderables(view: ExampleView) -> list[Any]:
    """rich renderables: header, legend, the coloured token stream, the per-role table."""
    from rich.text import Text

    out: list[Any] = []
    if view.title:
        out.append(Text(view.title, style="bold"))
    if view.meta:
        out.append(Text("  ".join(f"{k}: {v}" for k, v in view.meta), style="italic"))
    legend = Text("roles (background): ")
    for label in ROLE_LABELS:
        legend.append(f" {label} ", style=f"{_rgb(terminal_fg(1.0))} on {_rgb(TERMINAL_BG[label])}")
        legend.append(" ")
    out.append(legend)
    scale = Text("weight (brightness): ")
    for w in LEGEND_WEIGHTS:
        scale.append(f" {w:g} ", style=f"{_rgb(terminal_fg(w))} on {_rgb(TERMINAL_BG['user'])}")
        scale.append(" ")
    out.append(scale)
    out.append(Text(""))
    stream = Text()
    for cell in view.cells:
        style = f"{_rgb(terminal_fg(cell.weight))} on {_rgb(TERMINAL_BG[cell.role])}"
        if cell.weight > 1.0:
            style += " bold"
        stream.append(_display(cell.text), style=style)
    out.append(stream)
    out.append(Text(""))
    out.append(role_table(view))
    return out


def role_table(view: ExampleView) -> Any:
    from rich.table import Table

    table = Table(title="tokens and weight mass per role", title_justify="left")
    table.add_column("role", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("weight", justify="right")
    table.add_column("weight mass", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    for r in view.roles:
        table.add_row(f"[{_rgb(terminal_fg(1.0))} on {_rgb(TERMINAL_BG[r.role])}] {r.role} [/]", str(r.tokens),
                      f"{r.mean_weight:.3g}" if r.tokens else "-", f"{r.weight_mass:.4g}", f"{r.mass_share:.1%}")
    total_mass = view.total_weight_mass
    table.add_row("[bold]total[/]", str(view.total_tokens), "", f"{total_mass:.4g}", "100.0%" if total_mass else "-")
    return table


def render_terminal(view: ExampleView, console: Any = None) -> None:
    """Print the view to ``console`` (a ``rich.console.Console``; a default one when None)."""
    from rich.console import Console

    console = console or Console()
    for item in terminal_renderables(view):
        console.print(item)


def render_text(view: ExampleView, *, width: int = 100, color: bool = True) -> str:
    """The terminal rendering as a string, at a fixed width (ANSI colour codes when ``color``)."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system="truecolor" if color else None, force_terminal=color,
                      no_color=not color, legacy_windows=False, soft_wrap=False)
    render_terminal(view, console)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- HTML
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #111; max-width: 70em; }
h1 { font-size: 1.3em; }
.meta { color: #555; font-size: 0.9em; }
.legend span.sw { display: inline-block; padding: 0.1em 0.5em; margin-right: 0.4em; border-radius: 3px;
                  font-family: ui-monospace, Menlo, Consolas, monospace; }
.stream { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-all;
          line-height: 1.7; border: 1px solid #ccc; padding: 1em; border-radius: 4px; background: #fff; }
.tok { border-right: 1px solid rgba(255,255,255,0.9); padding: 0.08em 0; }
.tok:hover { outline: 1px solid #333; }
.tok.heavy { font-weight: bold; }
table { border-collapse: collapse; margin-top: 1em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
"""


def _weight_attr(weight: float) -> str:
    """Shortest text that round-trips the float32 weight (``0.2``, not ``0.20000000298023224``)."""
    return np.format_float_positional(np.float32(weight), trim="-")


def _html_style(role: str, weight: float) -> str:
    return f"background:{HTML_BG[role]};color:rgba(0,0,0,{html_opacity(weight)})"


def render_token_rows(view: ExampleView) -> str:
    """One aligned line per token (position, token text, id, role, weight): plain text for logs and diffs.

    >>> print(render_token_rows(build_view([5, 7], [2, 4], [1.0, 0.5], texts=["Hi", "!"])))
      # token     id role          weight
      0 'Hi'       5 user               1
      1 '!'        7 assistant        0.5
    """
    width = max([len("token")] + [len(repr(c.text)) for c in view.cells])
    lines = [f"{'#':>3} {'token':<{width}} {'id':>6} {'role':<13} {'weight':>6}"]
    for i, c in enumerate(view.cells):
        lines.append(f"{i:>3} {c.text!r:<{width}} {c.token_id:>6} {c.role:<13} {c.weight:>6g}")
    return "\n".join(lines)


def render_html(view: ExampleView) -> str:
    """A standalone HTML page: one ``<span class="tok">`` per token with ``data-role``, ``data-weight``,
    ``data-token-id`` attributes (and a title tooltip), the legend and the per-role table."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{esc(view.title or 'im-data inspect')}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<h1>{esc(view.title or 'im-data inspect')}</h1>"]
    if view.meta:
        parts.append('<p class="meta">' + " &middot; ".join(f"{esc(k)}: {esc(v)}" for k, v in view.meta) + "</p>")
    parts.append('<p class="legend">roles (background): ' + "".join(
        f'<span class="sw" data-legend-role="{label}" style="{_html_style(label, 1.0)}">{label}</span>'
        for label in ROLE_LABELS) + "</p>")
    parts.append('<p class="legend">loss weight (text opacity): ' + "".join(
        f'<span class="sw" data-legend-weight="{w:g}" style="{_html_style("user", w)}">{w:g}</span>'
        for w in LEGEND_WEIGHTS) + "</p>")
    toks = []
    for i, c in enumerate(view.cells):
        cls = "tok heavy" if c.weight > 1.0 else "tok"
        tip = f"#{i} id {c.token_id} · {c.role} · weight {_weight_attr(c.weight)}"
        toks.append(f'<span class="{cls}" data-index="{i}" data-role="{c.role}" '
                    f'data-weight="{_weight_attr(c.weight)}" data-token-id="{c.token_id}" title="{esc(tip)}" '
                    f'style="{_html_style(c.role, c.weight)}">'
                    f"{esc(_display(c.text))}</span>")
    parts.append('<div class="stream">' + "".join(toks) + "</div>")
    parts.append('<table class="roles"><thead><tr><th>role</th><th>tokens</th><th>weight</th><th>weight mass</th>'
                 "<th>share of mass</th></tr></thead><tbody>")
    for r in view.roles:
        parts.append(f'<tr data-role="{r.role}"><td><span class="sw" style="{_html_style(r.role, 1.0)}">{r.role}'
                     f"</span></td><td>{r.tokens}</td><td>{f'{r.mean_weight:.3g}' if r.tokens else '-'}</td>"
                     f"<td>{r.weight_mass:.4g}</td><td>{r.mass_share:.1%}</td></tr>")
    total = view.total_weight_mass
    parts.append(f'<tr data-role="total"><td><b>total</b></td><td>{view.total_tokens}</td><td></td>'
                 f"<td>{total:.4g}</td><td>{'100.0%' if total else '-'}</td></tr>")
    parts += ["</tbody></table>", "</body>", "</html>", ""]
    return "\n".join(parts)
