"""The GPU power limit a session asks for (``power-limit:watts=N``), set by the measuring parent.

A power limit belongs to the GPU, not to a process, and outlives the process that set it: so the
parent sets it, around the worker's run, and puts the previous limit back in ``finally`` whatever
way the run ends (failure, exception, Ctrl-C). Everything that can refuse is checked when the
limit is built, before anything runs: NVML present, the session's GPU found, the value within the
range the board allows, and the permission to set a limit (NVML is asked to set the current
limit again, which changes nothing). Each refusal is one line (``UserError``) with its reason.

The record (GPU, previous and set watts, whether the restore worked) goes into the run's result;
a failed restore adds a warning with the command that restores the limit by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import ModuleType, TracebackType
from typing import Any

from wattlab.core.errors import UserError
from wattlab.core.measure.sensors.nvml import import_pynvml, visible_indices
from wattlab.core.spec import RunSpec
from wattlab.core.techniques.base import Target
from wattlab.core.techniques.catalog import get

TECHNIQUE = "power-limit"

# NVML return codes (nvml.h), as pynvml's NVMLError.value carries them.
_INVALID_ARGUMENT = 2
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12


@dataclass
class PowerLimitRecord:
    """What the run's result says about the limit: on which GPU, what it was, what was set, the
    range the board allows, and whether the previous limit was put back."""

    gpu: str  # gpu0, gpu1... as CUDA numbers them (the labels of the energy figures)
    gpu_name: str
    nvml_index: int
    previous_w: float
    set_w: float
    default_w: float | None
    min_w: float
    max_w: float
    restored: bool = False
    restore_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def restore_command(self) -> str:
        return f"sudo nvidia-smi -i {self.nvml_index} -pl {self.previous_w:g}"


def requested_watts(spec: RunSpec) -> float | None:
    """The watts the spec's ``power-limit`` technique asks for, or None when it has none;
    refused (one line) where the declaration says it cannot run (the CPU, a RAG session)."""
    raw = next((t for t in spec.techniques if t.get("name") == TECHNIQUE), None)
    if raw is None:
        return None
    from wattlab.core.techniques.compose import availability

    tech = get(TECHNIQUE)
    params = tech.parse_params(raw.get("params") or {})
    device = "cpu" if spec.device == "cpu" else "cuda"
    ok, why = availability(tech, Target(spec.mode, device, "hf"), params)
    if not ok:
        raise UserError(f"{TECHNIQUE} cannot run here: {why}")
    return float(params["watts"])


def _code(exc: BaseException) -> int | None:
    return getattr(exc, "value", None)


def _nvml_refusal(exc: BaseException, what: str, index: int, watts: float) -> UserError:
    """One line saying why NVML refused ``what``, and what would let it through."""
    code = _code(exc)
    if code == _NO_PERMISSION:
        why = (
            "no permission: setting a GPU power limit needs root (run WattLab with sudo, or set "
            f"it yourself with `sudo nvidia-smi -i {index} -pl {watts:g}`; `sudo nvidia-smi "
            "-pm 1` keeps it while no process holds the GPU)"
        )
    elif code == _NOT_SUPPORTED:
        why = "this GPU does not let software set its power limit (NVML: not supported)"
    elif code == _INVALID_ARGUMENT:
        why = "NVML rejected the value"
    else:
        why = f"NVML error: {exc}"
    return UserError(f"{TECHNIQUE}: could not {what}: {why}")


def _init(nvml: ModuleType | None) -> ModuleType:
    """NVML, initialised; or one line saying why there is none to set a limit through."""
    if nvml is None:
        try:
            nvml = import_pynvml()
        except ImportError:
            raise UserError(
                f"{TECHNIQUE}: a GPU power limit is set through NVML, and nvidia-ml-py "
                "(pynvml) is not installed"
            ) from None
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        code = _code(exc)
        if code in (_LIBRARY_NOT_FOUND, _DRIVER_NOT_LOADED):
            why = "no NVIDIA driver is loaded on this machine"
        else:
            why = f"NVML failed to initialise ({exc})"
        raise UserError(f"{TECHNIQUE}: a GPU power limit needs an NVIDIA GPU: {why}") from None
    return nvml


def _cuda_index(device: str) -> int:
    """The CUDA device the worker will use: ``cuda:N`` is N; ``cuda`` and ``auto`` are 0."""
    return int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0


def _find_gpu(nvml: ModuleType, device: str, env: Mapping[str, str]) -> tuple[int, Any]:
    """(NVML index, handle) of the session's GPU, read through CUDA_VISIBLE_DEVICES."""
    try:
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [str(nvml.nvmlDeviceGetUUID(h)) for h in handles]
    except nvml.NVMLError as exc:
        raise UserError(f"{TECHNIQUE}: NVML could not list the GPUs ({exc})") from None
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    visible = visible_indices(cvd, uuids)
    cuda = _cuda_index(device)
    if cuda >= len(visible):
        shown = f" with CUDA_VISIBLE_DEVICES={cvd!r}" if cvd is not None else ""
        raise UserError(
            f"{TECHNIQUE}: the session's GPU (CUDA device {cuda}) is not among the "
            f"{len(visible)} NVIDIA GPU(s) NVML sees{shown}"
        )
    return visible[cuda], handles[visible[cuda]]


def _read_record(
    nvml: ModuleType, handle: Any, index: int, cuda: int, watts: float
) -> PowerLimitRecord:
    """The GPU's current and default limits and the range it allows (milliwatts -> watts)."""
    try:
        name = nvml.nvmlDeviceGetName(handle)
        current = nvml.nvmlDeviceGetPowerManagementLimit(handle)
        low, high = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
    except nvml.NVMLError as exc:
        raise _nvml_refusal(exc, "read the GPU's power limits", index, watts) from None
    try:
        default: float | None = nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle) / 1000
    except nvml.NVMLError:
        default = None
    name = name.decode() if isinstance(name, bytes) else str(name)
    return PowerLimitRecord(
        f"gpu{cuda}", name, index, current / 1000, watts, default, low / 1000, high / 1000
    )


def _check_range(rec: PowerLimitRecord) -> None:
    if not rec.min_w <= rec.set_w <= rec.max_w:
        default = f"; its default is {rec.default_w:g} W" if rec.default_w is not None else ""
        raise UserError(
            f"{TECHNIQUE}: {rec.set_w:g} W is outside the range {rec.gpu} ({rec.gpu_name}) "
            f"allows: {rec.min_w:g}-{rec.max_w:g} W{default}"
        )


class GpuPowerLimit:
    """The limit for one session: built (and so checked) before anything runs, then used as a
    context manager around the worker's run: sets the limit on entry, restores the previous
    one on exit, however the block ends. Build it with :meth:`for_spec`."""

    def __init__(self, nvml: ModuleType, handle: Any, record: PowerLimitRecord) -> None:
        self._nvml, self._handle, self.record = nvml, handle, record

    @classmethod
    def for_spec(
        cls, spec: RunSpec, nvml: ModuleType | None = None, env: Mapping[str, str] | None = None
    ) -> GpuPowerLimit | None:
        """None when the spec asks for no power limit; otherwise a limit that can be set, or
        one ``UserError`` line saying why it cannot (checked now, before anything runs)."""
        watts = requested_watts(spec)
        if watts is None:
            return None
        import os

        nv = _init(nvml)
        try:
            index, handle = _find_gpu(nv, spec.device, os.environ if env is None else env)
            rec = _read_record(nv, handle, index, _cuda_index(spec.device), watts)
            _check_range(rec)
            _probe_permission(nv, handle, rec)
        except BaseException:
            _shutdown(nv)
            raise
        return cls(nv, handle, rec)

    def __enter__(self) -> PowerLimitRecord:
        rec = self.record
        try:
            self._nvml.nvmlDeviceSetPowerManagementLimit(self._handle, round(rec.set_w * 1000))
        except self._nvml.NVMLError as exc:
            _shutdown(self._nvml)
            raise _nvml_refusal(
                exc, f"set {rec.gpu}'s power limit to {rec.set_w:g} W", rec.nvml_index, rec.set_w
            ) from None
        return rec

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        rec = self.record
        try:
            self._nvml.nvmlDeviceSetPowerManagementLimit(self._handle, round(rec.previous_w * 1000))
            rec.restored = True
        except self._nvml.NVMLError as err:
            rec.restore_error = str(err)
        finally:
            _shutdown(self._nvml)

    def warnings(self) -> list[str]:
        """What the run must say about the limit: a restore that failed, with the command."""
        rec = self.record
        if rec.restored:
            return []
        return [
            f"the power limit of {rec.gpu} ({rec.gpu_name}) could not be restored to "
            f"{rec.previous_w:g} W (NVML: {rec.restore_error or 'not attempted'}): it is still "
            f"{rec.set_w:g} W; restore it by hand: {rec.restore_command()}"
        ]

    def report(self, final: dict[str, Any]) -> None:
        """Put the record, and any warning, into the run's final result."""
        final["power_limit"] = self.record.to_dict()
        final.setdefault("warnings", []).extend(self.warnings())


def _probe_permission(nvml: ModuleType, handle: Any, rec: PowerLimitRecord) -> None:
    """Set the current limit again (a change of nothing): a missing permission or a board
    without software limits is refused now, not after the measurement has started."""
    try:
        nvml.nvmlDeviceSetPowerManagementLimit(handle, round(rec.previous_w * 1000))
    except nvml.NVMLError as exc:
        raise _nvml_refusal(
            exc, f"set {rec.gpu}'s power limit", rec.nvml_index, rec.set_w
        ) from None


def _shutdown(nvml: ModuleType) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - closing NVML must never mask the run's own outcome
        pass
