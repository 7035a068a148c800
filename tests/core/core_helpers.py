"""Helpers shared by the core tests."""

from __future__ import annotations

from im_data.roles import ROLE_TABLE


def content_runs(roles) -> list[tuple[int, list[int]]]:
    """Maximal runs of consecutive tokens with one content role (per the role table): (role, [token indices])."""
    runs: list[tuple[int, list[int]]] = []
    for i, r in enumerate(list(roles)):
        if not ROLE_TABLE[r].content:
            continue
        if runs and runs[-1][0] == r and runs[-1][1][-1] == i - 1:
            runs[-1][1].append(i)
        else:
            runs.append((r, [i]))
    return runs
