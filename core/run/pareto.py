"""Pareto fronts and dominance over measured points: which technique sets are worth having.

Pure functions on plain numbers, so the sweep's choice can be tested on known points without
measuring anything. Every objective is minimised; a caller turns "higher is better" (accuracy)
into a minimised value by negating it. A point with an unknown objective (None) is left out of
that front: unknown is never treated as good or bad.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Point = Sequence[float | None]


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` on every objective and strictly better on one."""
    if any(x is None for x in a) or any(y is None for y in b):
        return False
    pairs = list(zip(a, b, strict=True))
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)  # type: ignore[operator]


def front(points: Mapping[str, Point]) -> list[str]:
    """The keys no other known point dominates, in the mapping's order."""
    known = {k: p for k, p in points.items() if all(x is not None for x in p)}
    return [k for k, p in known.items() if not any(dominates(q, p) for q in known.values())]


def dominated_by(points: Mapping[str, Point]) -> dict[str, list[str]]:
    """For each dominated key, the keys that dominate it (a point on the front maps to [])."""
    return {
        k: [j for j, q in points.items() if j != k and dominates(q, p)] for k, p in points.items()
    }
