"""The figures of marked work: per-phase energy, and energy per item over the work a script
marked, for a tracked block (``run.track``) and a profiled command (``run.profile``) alike.

Which phases are "the work": those in which steps were counted; without steps, every phase the
script marked; with no mark at all, the whole command. Start-up before the first mark and
everything after the end mark (``post``) are never part of it, as with the worker's sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wattlab.core import markers
from wattlab.core.markers import MarkerTally
from wattlab.core.run.client import phase_energy


def add_marked_figures(
    result: dict[str, Any],
    tally: MarkerTally,
    window_warnings: Callable[[float], list[str]] | None = None,
) -> None:
    """Per-phase energy of the marked phases, and per-item energy over the marked work.

    The work is the phases in which steps were counted; without steps, every marked phase;
    with no phase marked, the whole command (``energy_basis`` says which). Start-up before the
    first mark and everything after the end mark (``post``) are never part of it."""
    result["markers"] = tally.to_dict()
    result["phase_energy"] = {p: _one_phase(result, tally, p) for p in tally.reported_phases()}
    phases, basis = tally.work_phases()
    pe = phase_energy(result, phases, result.setdefault("warnings", []))
    result["markers"]["energy_basis"] = basis
    result["measured_phase"] = pe.to_dict()
    counted = markers.PhaseCount()
    for p in phases:
        c = tally.by_phase.get(p)
        if c is not None:
            counted.add(c.steps, c.items, c.tokens)
    items, tokens = counted.items, counted.tokens
    result["throughput_items_per_s"] = items / pe.duration_s if items and pe.duration_s else None
    result["energy_per_item_j"] = pe.gross_j / items if items else None
    result["energy_per_token_j"] = pe.gross_j / tokens if tokens else None
    result["net_energy_per_item_j"] = pe.net_j / items if items and pe.net_j is not None else None
    if window_warnings is not None:
        result["warnings"] += window_warnings(pe.duration_s)


def _one_phase(result: dict[str, Any], tally: MarkerTally, phase: str) -> dict[str, Any]:
    pe = phase_energy(result, (phase,)).to_dict()
    del pe["phases"]
    c = tally.by_phase.get(phase, markers.PhaseCount())
    per_item = pe["gross_j"] / c.items if c.items else None
    return {
        **pe,
        "steps": c.steps,
        "items": c.items,
        "tokens": c.tokens,
        "energy_per_item_j": per_item,
    }


__all__ = ["add_marked_figures"]
