"""WattLab's Python API: measure your own code the way ``wattlab profile`` measures a command.

    import wattlab

    with wattlab.track(label="finetune", out="reports/ft") as t:
        t.phase("train")
        for batch in loader:
            ...
            t.step(items=len(batch))
        t.metric("accuracy", 0.91)
    print(t.result["energy_per_item_j"])

Importing this package is light (no torch, no Qt, no sampler): the names below are looked up
on first use, so ``python -m wattlab.core.worker`` and the app, which import this package on the
way to their own modules, pay nothing for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wattlab.core.run.track import EnergySoFar, Track, TrackError, current, track

__all__ = ["EnergySoFar", "Track", "TrackError", "current", "track"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from wattlab.core.run import track as _track

        return getattr(_track, name)
    raise AttributeError(f"module 'wattlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
