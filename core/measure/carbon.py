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


# -- plain equivalents ---------------------------------------------------------------------------
# A footprint in kWh and grams means little to most readers; these turn it into everyday things.
# Each constant names where it comes from (shown to the user with the figure), and an equivalent
# inherits the label of the energy it is made from: it is never stronger than that energy.

# US EPA, "Greenhouse Gas Emissions from a Typical Passenger Vehicle" (EPA-420-F-23-014, 2023):
# about 400 g CO2 per mile of tailpipe emissions, i.e. 400 / 1.609 = 249 g per km.
CAR_G_CO2_PER_KM = 400.0 / 1.609344
CAR_SOURCE = "US EPA, typical passenger car: 400 g CO2 per mile (EPA-420-F-23-014, 2023)"
# A full charge of a 4,500 mAh, 3.85 V phone battery (17.3 Wh) at about 90% charger efficiency:
# 0.019 kWh, the figure the US EPA Greenhouse Gas Equivalencies Calculator uses per charge.
PHONE_CHARGE_J = 0.019 * J_PER_KWH
PHONE_SOURCE = (
    "one smartphone charge = 0.019 kWh (4,500 mAh x 3.85 V battery at ~90% charger "
    "efficiency; US EPA Greenhouse Gas Equivalencies Calculator)"
)
# Physics: 1 litre of water heated from 15 to 100 C takes 4186 J/(kg K) x 1 kg x 85 K = 356 kJ;
# an electric kettle delivers about 80% of what it draws to the water.
KETTLE_J = 4186.0 * 1.0 * 85.0 / 0.8
KETTLE_SOURCE = (
    "boiling 1 litre of water from 15 C: 4.186 kJ/(kg K) x 85 K = 356 kJ, over an assumed "
    "80% kettle efficiency = 0.12 kWh"
)


@dataclass(frozen=True)
class Equivalent:
    """One everyday quantity a footprint equals, with the source of its conversion factor."""

    what: str  # "km driven by an average car"
    amount: float
    based_on: str  # "energy" or "CO2": which figure it was converted from
    source: str


def equivalents(energy_j: float | None, co2: float | None) -> list[Equivalent]:
    """Plain equivalents of an energy figure and its CO2; unknown figures give none (never 0).
    Phone charges and kettle boils follow the energy alone; the car follows the CO2, so it
    moves with the region's carbon intensity."""
    out: list[Equivalent] = []
    if co2 is not None:
        out.append(
            Equivalent("km driven by an average car", co2 / CAR_G_CO2_PER_KM, "CO2", CAR_SOURCE)
        )
    if energy_j is not None:
        out.append(
            Equivalent("smartphone charges", energy_j / PHONE_CHARGE_J, "energy", PHONE_SOURCE)
        )
        out.append(
            Equivalent("kettles of 1 litre boiled", energy_j / KETTLE_J, "energy", KETTLE_SOURCE)
        )
    return out
