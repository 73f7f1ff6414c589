"""The worker half of ``power-limit``: the limit itself is set by the measuring parent
(core/run/power_limit.py) before this process starts; here the worker reads, through NVML, the
limit its own GPU enforces, so the result shows the cap really was in force during the run.
Declared (name, parameters, where it applies) in core/techniques/power_limit.py."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from wattlab.core.techniques.base import Applied, Target
from wattlab.core.techniques.power_limit import PowerLimit
from wattlab.core.worker import device as devmod
from wattlab.core.worker.techniques.registry import Implementation, implements

# A cap this far from the one asked is not the one asked (NVML reports whole milliwatts; boards
# round to their own step).
TOLERANCE_W = 1.0


def _bare(uuid: str) -> str:
    """``GPU-abc``, ``abc`` -> ``abc`` (torch prints CUDA UUIDs without NVML's prefix)."""
    u = uuid.strip().lower()
    return u[4:] if u.startswith(("gpu-", "mig-")) else u


def _handle_for(nvml: ModuleType, uuid: str | None, index: int) -> Any:
    """The NVML handle of the worker's GPU: by UUID where torch gives one, else by index."""
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    if uuid:
        for h in handles:
            if _bare(str(nvml.nvmlDeviceGetUUID(h))) == _bare(uuid):
                return h
    return handles[index]


def enforced_limit_w(nvml: ModuleType, uuid: str | None, index: int = 0) -> float:
    """The power limit NVML says the GPU enforces now, in watts (the lowest of every limit
    in force: ours, the driver's, another tool's)."""
    nvml.nvmlInit()
    try:
        h = _handle_for(nvml, uuid, index)
        return float(nvml.nvmlDeviceGetEnforcedPowerLimit(h)) / 1000
    finally:
        nvml.nvmlShutdown()


def _read_enforced(dev: Any) -> tuple[float | None, str | None]:
    """(enforced watts, None), or (None, why NVML could not tell) in this process."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed"
    uuid = devmod.gpu_uuid(dev) if dev.type == "cuda" else None
    try:
        return enforced_limit_w(pynvml, uuid, dev.index or 0), None
    except (pynvml.NVMLError, IndexError) as exc:
        return None, f"NVML: {exc}"


@implements
class PowerLimitImpl(Implementation, PowerLimit):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        asked = float(params["watts"])
        enforced, why = _read_enforced(ctx.dev)
        details: dict[str, Any] = {"requested_w": asked, "enforced_w": enforced}
        warnings = [self.warning(Target(ctx.spec.mode, ctx.dev.type, ctx.loaded.kind), params)]
        if enforced is None:
            details["unverified_reason"] = why
            desc = (
                f"GPU power limit of {asked:g} W, set by the measuring process (not verified "
                f"from the worker: {why})"
            )
        else:
            desc = (
                f"GPU power limit of {asked:g} W, set by the measuring process; NVML reports "
                f"{enforced:g} W enforced on {ctx.dev}"
            )
            if abs(enforced - asked) > TOLERANCE_W:
                warnings.append(
                    f"the GPU enforces {enforced:g} W, not the {asked:g} W asked: another "
                    "limit (the driver's, another tool's) is in force"
                )
        return Applied(self.name, params, desc, details, [w for w in warnings if w])
