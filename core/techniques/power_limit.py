"""GPU power limit: cap the board power through NVML (``nvmlDeviceSetPowerManagementLimit``),
the knob Zeus's power-limit optimizer and DVFS studies turn: a lower cap lowers clocks under load,
often saving more energy than it costs in time.

The limit belongs to the GPU, not to a process, so the measuring parent sets it
(core/run/power_limit.py): it checks the value against the GPU's allowed range and the permission
to set it before anything runs, sets it just before the worker starts and restores the previous
limit as soon as the worker exits, however it ends (failure, exception, Ctrl-C). The worker only
reads the limit NVML says is enforced on its device, to show it was really in force. Setting a
limit needs root on Linux; the run is refused with that reason otherwise.
"""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Param, Target, Technique, register


@register
class PowerLimit(Technique):
    name = "power-limit"
    label = "GPU power limit"
    order = 100  # changes no model: reported after every technique that does
    summary = "Cap the GPU's board power (NVML power limit), restored after the run"
    params = (
        Param(
            "watts",
            float,
            250.0,
            "the power cap in watts; must lie in the GPU's allowed range (checked before the run)",
            min=10.0,
            max=2000.0,
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.device != "cuda":
            return False, (
                "a GPU power limit needs an NVIDIA GPU (set through NVML); this session runs on "
                f"the {t.device.upper() if t.device == 'cpu' else t.device}"
            )
        return True, None

    def warning(self, t: Target, params: dict[str, Any]) -> str | None:
        return (
            "the limit applies to the whole GPU, other processes on it included, while the "
            "session runs"
        )
