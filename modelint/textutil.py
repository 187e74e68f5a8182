"""Small helpers that rules share for naming code in messages."""

from __future__ import annotations

import libcst as cst

_EMPTY = cst.Module(body=[])


def code_of(node: cst.CSTNode, limit: int = 40) -> str:
    """Source text of an expression, shortened for a one-line message."""
    text = " ".join(_EMPTY.code_for_node(node).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: a transposition (`trian`) counts as one edit."""
    rows = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        rows[i][0] = i
    for j in range(len(b) + 1):
        rows[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[len(a)][len(b)]
