"""Energy per query for cache hits and for misses, from the run's own power samples.

Queries are far shorter than a sampling interval, so no sensor sees one query. What can be done
honestly: replay the run's stored samples through the same accumulator that measured the run,
with each query's wall-clock interval marked as a phase ("hit" or "miss"); every sample interval's
energy is then split across the queries inside it in proportion to time (the accumulator's rule
for phases). A 1 ms hit inside a 100 ms interval is charged 1% of that interval: its share of the
time at the power that interval averaged. The figures are labelled ``attributed`` (a split by
time, never ``measured``); ``of_label`` keeps the label of the energy that was split.
"""

from __future__ import annotations

from typing import Any

from wattlab.core.measure.energy import EnergyAccumulator
from wattlab.core.measure.sampling import Sample
from wattlab.core.measure.sensors.base import EnergyChannel, weakest_label

METHOD = "attributed by time: each query's share of the power samples over its own interval"


def attribute_queries(
    query_log: list[dict[str, Any]],
    samples: list[Sample],
    channels: list[EnergyChannel],
    wall_to_monotonic: float,
) -> dict[str, Any]:
    """``wall_to_monotonic`` is ``time.monotonic() - time.time()`` in the measuring process
    (query times come from the worker's wall clock, samples from the parent's monotonic)."""
    acc = EnergyAccumulator(channels)
    counts = {"hit": 0, "miss": 0}
    for q in query_log:
        if q.get("t0") is None or q.get("t1") is None:
            continue
        cls = "hit" if q.get("hit") else "miss"
        counts[cls] += 1
        acc.mark_phase(q["t0"] + wall_to_monotonic, f"q:{cls}")
        acc.mark_phase(q["t1"] + wall_to_monotonic, "q:between")
    for s in samples:
        acc.add(s.t, s.values)
    end = samples[-1].t if samples else 0.0
    per_class = {"hit": 0.0, "miss": 0.0}
    for src in acc.results(end):
        for cls in per_class:
            per_class[cls] += src.by_phase_j.get(f"q:{cls}", 0.0)
    of_label = weakest_label([c.label for c in channels]) or None
    return {
        cls: {
            "queries": counts[cls],
            "energy_j": per_class[cls] if counts[cls] else None,
            "energy_per_query_j": per_class[cls] / counts[cls] if counts[cls] else None,
        }
        for cls in per_class
    } | {"label": "attributed", "of_label": of_label, "method": METHOD}
