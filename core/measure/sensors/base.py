"""The small interface every sensor implements, and the records they produce.

Why one flat ``dict[str, float | None]`` per reading: sensors differ wildly in what they can
report, and a flat key space (``gpu0.power_w``, ``rapl.package-0.energy_uj``) stores, plots and
exports without a schema change each time a sensor learns a new field. ``None`` means "this
sensor cannot give this value now"; it is never replaced by a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Label = Literal["measured", "integrated", "estimated", "attributed"]
Reading = dict[str, "float | None"]

# How much a label weakens a figure: a total is only as good as its weakest part. "attributed"
# is a time-share split of one of the others (RAG's energy per query): weakest of all, since it
# adds a model of who used the energy on top of how it was obtained.
LABEL_RANK: dict[str, int] = {"measured": 0, "integrated": 1, "estimated": 2, "attributed": 3}


def weakest_label(labels: Sequence[str]) -> str | None:
    """The label a sum inherits from its parts (an estimate anywhere makes the sum estimated)."""
    return max(labels, key=LABEL_RANK.__getitem__) if labels else None


@dataclass(frozen=True)
class SensorStatus:
    """What discovery found for one source: present or not, and why not."""

    name: str
    available: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnergyChannel:
    """One stream of energy a sensor contributes to a run's total.

    ``kind`` says how the sampler turns readings into joules:
    - ``counter``: ``key`` is a monotonically increasing counter in ``scale_j`` joules per unit;
      wrap-around at ``wrap`` units is handled (RAPL's ``max_energy_range_uj``).
    - ``power``: ``key`` is instantaneous power in watts, integrated with the trapezoid rule.

    ``fallback_key`` (counters only): a power reading of the same device, integrated while the
    counter cannot be read and kept (labelled ``integrated``) if it never reads again.
    ``update_period_s``: how often the hardware refreshes the value; a window shorter than ten
    of these gets a warning.
    """

    source: str
    key: str
    kind: Literal["counter", "power"]
    label: Label
    method: str
    scale_j: float = 1.0
    wrap: float | None = None
    update_period_s: float = 0.0
    fallback_key: str | None = None


@runtime_checkable
class Sensor(Protocol):
    """A source of readings. ``read`` must be cheap (it runs every sampling tick) and must not
    raise: a value it cannot get is ``None``."""

    name: str

    def channels(self) -> list[EnergyChannel]: ...

    def read(self) -> Reading: ...

    def close(self) -> None: ...
