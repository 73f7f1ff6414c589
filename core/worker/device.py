"""Device choice, synchronisation at phase boundaries, and peak memory, per device kind."""

from __future__ import annotations

import resource
from typing import Any

from wattlab.core.errors import SpecError


def resolve(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise SpecError(
            f"CUDA was requested but there is no usable GPU (torch "
            f"{torch.__version__}, {build}); use --device cpu or auto"
        )
    d = torch.device(device)
    if d.index is not None and d.index >= torch.cuda.device_count():
        raise SpecError(f"{device} does not exist: {torch.cuda.device_count()} GPU(s) visible")
    return d


def sync(dev: Any) -> None:
    if dev.type == "cuda":
        import torch

        torch.cuda.synchronize(dev)


def _clear_rss_peak() -> bool:
    """Reset VmHWM (Linux >= 4.0) so the peak covers the measured phase only, not model loading
    or technique preparation."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _vm_hwm() -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


_RSS_RESET = {"done": False}


def reset_peak(dev: Any) -> None:
    if dev.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(dev)
    else:
        _RSS_RESET["done"] = _clear_rss_peak()


def peak_memory(dev: Any) -> tuple[int, str]:
    """(bytes, how it was measured)."""
    if dev.type == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated(dev)), "torch.cuda.max_memory_allocated"
    hwm = _vm_hwm()
    if _RSS_RESET["done"] and hwm is not None:
        return hwm, "peak RSS of the measured phase (VmHWM after clear_refs)"
    return (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak RSS since the worker started (getrusage)",
    )


def describe(dev: Any) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if dev.type == "cuda":
        out["gpu_name"] = torch.cuda.get_device_name(dev)
        out["compute_capability"] = list(torch.cuda.get_device_capability(dev))
        out["uuid"] = gpu_uuid(dev)
    return out


def gpu_uuid(dev: Any) -> str | None:
    """The CUDA device's UUID, which the parent matches against NVML's to count only this GPU
    (for a MIG instance CUDA reports the instance's UUID; NVML maps it to its GPU)."""
    import torch

    try:
        return str(torch.cuda.get_device_properties(dev).uuid)
    except (AttributeError, RuntimeError):
        return None
