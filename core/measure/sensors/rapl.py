"""CPU package and DRAM energy from Intel RAPL (also AMD Zen) via the Linux powercap tree.

Which zones count: every top-level ``package-N`` plus every ``dram`` zone. ``core`` and
``uncore`` are parts of a package and ``psys`` is a superset of it, so adding any of them would
count the same joules twice; ``intel-rapl-mmio`` zones mirror the MSR package zone on some
laptops and are skipped for the same reason.

The counters wrap at ``max_energy_range_uj`` (about every minute on a busy server), so deltas
are unwrapped by the sampler with that range. Since 2020 (CVE-2020-8694) ``energy_uj`` is
root-only on most distributions: that is reported as "permission denied", never silently
replaced by an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wattlab.core.measure.sensors.base import EnergyChannel, Reading, SensorStatus

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class RaplZone:
    path: Path
    domain: str  # "package-0", "dram-0" (dram named after its package)
    max_range_uj: int


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def find_zones(root: Path) -> tuple[list[RaplZone], list[str]]:
    """Zones to count, and notes about zones skipped (for discovery's details)."""
    zones: list[RaplZone] = []
    notes: list[str] = []
    if not root.is_dir():
        return zones, notes
    for top in sorted(root.glob("intel-rapl:*")):
        if top.name.count(":") != 1:
            continue  # subzones are visited from their package
        name = (top / "name").read_text().strip() if (top / "name").exists() else ""
        if not name.startswith("package"):
            notes.append(f"{top.name} ({name or 'unnamed'}) skipped: not a package zone")
            continue
        pkg = name.split("-", 1)[1] if "-" in name else top.name.split(":")[1]
        zones.append(RaplZone(top, name, _read_int(top / "max_energy_range_uj")))
        # /sys/class/powercap lists subzones flat beside their package (as links); the device
        # tree nests them inside it. Accept both, once each.
        subs = {p.resolve(): p for p in [*root.glob(f"{top.name}:*"), *top.glob(f"{top.name}:*")]}
        for sub in sorted(subs.values()):
            sub_name = (sub / "name").read_text().strip() if (sub / "name").exists() else ""
            if sub_name == "dram":
                zones.append(RaplZone(sub, f"dram-{pkg}", _read_int(sub / "max_energy_range_uj")))
    return zones, notes


class RaplSensor:
    name = "rapl"

    def __init__(self, zones: list[RaplZone]) -> None:
        self.zones = zones

    def channels(self) -> list[EnergyChannel]:
        return [
            EnergyChannel(
                source="cpu" if z.domain.startswith("package") else "ram",
                key=f"rapl.{z.domain}.energy_uj",
                kind="counter",
                label="measured",
                method=f"RAPL energy_uj ({z.path.name} {z.domain})",
                scale_j=1e-6,
                wrap=float(z.max_range_uj),
                update_period_s=0.001,
            )
            for z in self.zones
        ]

    def read(self) -> Reading:
        out: Reading = {}
        for z in self.zones:
            try:
                out[f"rapl.{z.domain}.energy_uj"] = float(_read_int(z.path / "energy_uj"))
            except (OSError, ValueError):
                out[f"rapl.{z.domain}.energy_uj"] = None
        return out

    @property
    def has_dram(self) -> bool:
        return any(z.domain.startswith("dram") for z in self.zones)

    def close(self) -> None:
        pass


def probe_rapl(root: Path = DEFAULT_POWERCAP_ROOT) -> tuple[RaplSensor | None, SensorStatus]:
    if not root.is_dir():
        return None, SensorStatus("rapl", False, f"{root} does not exist (no powercap driver)")
    try:
        zones, notes = find_zones(root)
    except (OSError, ValueError) as exc:
        return None, SensorStatus("rapl", False, f"cannot read powercap zones under {root}: {exc}")
    if not zones:
        return None, SensorStatus(
            "rapl", False, f"no RAPL package zone under {root}", {"notes": notes}
        )
    readable: list[RaplZone] = []
    denied: list[str] = []
    for z in zones:
        try:
            _read_int(z.path / "energy_uj")
            readable.append(z)
        except PermissionError:
            denied.append(str(z.path / "energy_uj"))
        except (OSError, ValueError) as exc:
            notes.append(f"{z.path.name}: unreadable ({exc})")
    if denied and not readable:
        return None, SensorStatus(
            "rapl",
            False,
            f"permission denied reading {denied[0]} (root-only since CVE-2020-8694; run as root "
            "or grant read access, e.g. a udev rule or `sudo chmod o+r` on energy_uj)",
            {"denied": denied},
        )
    if not any(z.domain.startswith("package") for z in readable):
        return None, SensorStatus(
            "rapl", False, "no readable RAPL package zone", {"notes": notes, "denied": denied}
        )
    details: dict[str, object] = {"zones": [f"{z.path.name} {z.domain}" for z in readable]}
    if denied:
        details["denied"] = denied
    if notes:
        details["notes"] = notes
    return RaplSensor(readable), SensorStatus("rapl", True, None, details)
