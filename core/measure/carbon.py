"""CO2 and cost from energy: bundled grid intensities (Ember 2023), user override, PUE, price.

CO2 and cost are derived figures: they inherit the label of the energy they come from
(``measured``, ``integrated`` or ``estimated``) and are never shown as anything stronger.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from wattlab.core.errors import SpecError

J_PER_KWH = 3.6e6


def table() -> dict:
    from wattlab.resources import RESOURCES_DIR

    return json.loads((RESOURCES_DIR / "carbon_intensity.json").read_text())


@dataclass(frozen=True)
class CarbonSettings:
    region: str = "WORLD"
    intensity_g_per_kwh: float | None = None  # overrides the region's value
    pue: float = 1.0
    price_per_kwh: float | None = None
    currency: str = "EUR"

    def resolved(self) -> dict:
        t = table()
        if self.pue < 1.0:
            raise SpecError(f"PUE must be at least 1.0, got {self.pue}")
        if self.intensity_g_per_kwh is not None:
            if self.intensity_g_per_kwh < 0:
                raise SpecError("carbon intensity cannot be negative")
            g, source = self.intensity_g_per_kwh, "user override"
        else:
            reg = t["regions"].get(self.region.upper())
            if reg is None:
                raise SpecError(
                    f"unknown carbon region {self.region!r}; known: "
                    f"{', '.join(sorted(t['regions']))}, or give --carbon-intensity"
                )
            g, source = reg["g_per_kwh"], f"{reg['name']}, {t['source']}"
        return {**asdict(self), "g_per_kwh": g, "intensity_source": source}


def co2_g(energy_j: float | None, c: dict) -> float | None:
    if energy_j is None:
        return None
    return energy_j / J_PER_KWH * c["pue"] * c["g_per_kwh"]


def cost(energy_j: float | None, c: dict) -> float | None:
    if energy_j is None or c.get("price_per_kwh") is None:
        return None
    return energy_j / J_PER_KWH * c["pue"] * c["price_per_kwh"]
