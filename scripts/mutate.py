"""A small mutation tester: AST mutations of one module applied one at a time, each run against the tests that
cover the module; a mutant is killed when those tests fail (or time out).

    python scripts/mutate.py --module im_data/dataset.py --tests "tests/core/x.py -k y" [--sample N] [--seed 0]
                             [--timeout 300] [--list]

Works on a copy of the repository (``--workdir``, default a temporary folder), never on the files themselves.
Operators (semantic mutants only): comparison flips (== !=, < <=, > >=, in / not in, is / is not), and <-> or,
``not x`` -> ``x``, ``if c`` -> ``if not c``, True <-> False, an int constant + 1, + <-> -, a ``raise`` or a call
statement deleted (logging calls excepted: a message, not behaviour), ``return x`` -> ``return None``.
Docstrings, string constants and logging are never mutated. ``--functions`` limits the mutants to named functions
(the safety code under test). Prints one line per mutant and a JSON summary.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLIP = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
        ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
LOG_NAMES = ("LOG", "logging", "warnings", "logger")


def _is_log_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    while isinstance(f, ast.Attribute):
        f = f.value
    return isinstance(f, ast.Name) and f.id in LOG_NAMES


def sites(tree: ast.AST) -> list[tuple[str, int, int, str]]:
    """(kind, node index in ast.walk order, line, description) of every mutation."""
    out = []
    for i, node in enumerate(ast.walk(tree)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                if type(op) in FLIP:
                    out.append(("compare", i, line, f"{type(op).__name__}->{FLIP[type(op)].__name__} #{k}"))
        elif isinstance(node, ast.BoolOp):
            out.append(("boolop", i, line, "and<->or"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append(("not", i, line, "not x -> x"))
        elif isinstance(node, (ast.If, ast.While)):
            out.append(("negate", i, line, f"{type(node).__name__.lower()} c -> not c"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            out.append(("bool", i, line, f"{node.value} -> {not node.value}"))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            out.append(("int", i, line, f"{node.value} -> {node.value + 1}"))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            out.append(("binop", i, line, "+<->-"))
        elif isinstance(node, ast.Raise):
            out.append(("delete", i, line, "raise deleted"))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and not _is_log_call(node.value):
            out.append(("delete", i, line, "call deleted"))
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append(("return", i, line, "return None"))
    return out


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first))
    return ids


def mutate(source: str, site: tuple[str, int, int, str]) -> str:
    tree = ast.parse(source)
    kind, index, _, desc = site
    node = list(ast.walk(tree))[index]
    if kind == "compare":
        k = int(desc.rsplit("#", 1)[1])
        node.ops[k] = FLIP[type(node.ops[k])]()
    elif kind == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind == "not":
        _replace(tree, node, node.operand)
    elif kind == "negate":
        node.test = ast.UnaryOp(ast.Not(), node.test)
    elif kind == "bool":
        node.value = not node.value
    elif kind == "int":
        node.value += 1
    elif kind == "binop":
        node.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
    elif kind == "delete":
        _replace(tree, node, ast.Pass())
    elif kind == "return":
        node.value = ast.Constant(None)
    return ast.unparse(ast.fix_missing_locations(tree))


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(v is old for v in value):
                setattr(parent, field, [new if v is old else v for v in value])
                return
    raise ValueError("node not found")


def _lines_of(tree: ast.AST, names: list[str]) -> set[int] | None:
    """Line numbers of the functions / classes / methods named (``Class.method`` or a bare name); None: all."""
    if not names:
        return None
    lines: set[int] = set()

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = f"{prefix}{child.name}"
                if qual in names or child.name in names:
                    lines.update(range(child.lineno, child.end_lineno + 1))
                visit(child, f"{qual}.")

    visit(tree, "")
    return lines


def candidate_sites(source: str, functions: list[str] | None = None) -> list[tuple[str, int, int, str]]:
    tree = ast.parse(source)
    docs = _docstring_nodes(tree)
    nodes = list(ast.walk(tree))
    wanted = _lines_of(tree, functions or [])
    out = []
    for site in sites(tree):
        node = nodes[site[1]]
        if id(node) in docs or (wanted is not None and site[2] not in wanted):
            continue
        try:
            mutated = mutate(source, site)
        except (ValueError, AttributeError):
            continue
        if mutated != ast.unparse(tree):
            out.append(site)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", required=True)
    ap.add_argument("--tests", required=True, help="pytest arguments, as one string")
    ap.add_argument("--sample", type=int, default=0, help="mutants to run, drawn at random (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--list", action="store_true", help="only list the mutation sites")
    ap.add_argument("--functions", default="", help="comma-separated functions, classes or Class.method to mutate "
                                                    "(default: the whole module)")
    args = ap.parse_args(argv)

    source = (REPO / args.module).read_text()
    all_sites = candidate_sites(source, [f for f in args.functions.split(",") if f])
    chosen = all_sites if not args.sample or args.sample >= len(all_sites) else \
        sorted(random.Random(args.seed).sample(all_sites, args.sample), key=lambda s: (s[2], s[1]))
    if args.list:
        for s in all_sites:
            print(f"{args.module}:{s[2]} {s[0]} {s[3]}")
        print(json.dumps({"module": args.module, "sites": len(all_sites)}))
        return 0
    work = Path(args.workdir or tempfile.mkdtemp(prefix="im-data-mutate-"))
    shutil.copytree(REPO, work, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    target = work / args.module
    env = dict(os.environ, PYTHONPATH=str(work), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *shlex.split(args.tests)]
    killed, survivors, started = 0, [], time.monotonic()
    base = subprocess.run(cmd, cwd=work, env=env, capture_output=True, timeout=args.timeout)
    if base.returncode != 0:  # the tests must pass on the module as it is, or no mutant can be judged
        print(base.stdout.decode()[-3000:])
        raise SystemExit(f"the tests fail without any mutation (exit {base.returncode}): {' '.join(cmd)}")
    print(f"baseline: the tests pass in {time.monotonic() - started:.0f} s", flush=True)
    try:
        for site in chosen:
            target.write_text(mutate(source, site))
            t0 = time.monotonic()
            try:
                rc = subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    timeout=args.timeout).returncode
            except subprocess.TimeoutExpired:
                rc = -1
            dead = rc != 0
            killed += dead
            if not dead:
                survivors.append(f"{args.module}:{site[2]} {site[0]} {site[3]}")
            print(f"{'KILLED ' if dead else 'SURVIVED'} {args.module}:{site[2]} {site[0]} {site[3]} "
                  f"({time.monotonic() - t0:.0f} s, rc {rc})", flush=True)
    finally:
        target.write_text(source)
    print(json.dumps({"module": args.module, "functions": args.functions or "all", "sites": len(all_sites),
                      "run": len(chosen), "killed": killed,
                      "survived": len(survivors), "survivors": survivors,
                      "seconds": round(time.monotonic() - started)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
