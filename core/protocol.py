"""The worker's event vocabulary: what the worker process says on its stdout and the measuring
parent reads. One JSON object per line with an ``event`` key (one of EVENTS) and ``mono``, the
worker's ``time.monotonic()`` (the parent's clock on Linux).

Shared by both sides (no torch, no store) so a renamed event or phase breaks both at once rather
than silently dropping a phase boundary from the measured window.
"""

from __future__ import annotations

PHASE = "phase"  # {"name": PHASE_NAME}: a phase boundary, stamped where it happened
DEVICE = "device"  # {"device", "uuid", "gpu_name", "threads"}: where the session runs
STEP = "step"  # throttled progress inside a phase
EPOCH = "epoch"  # one training epoch's eval figures
ROUND = "round"  # one lottery-ticket round
LOG = "log"  # a line for the user's log
RESULT = "result"  # the session's own summary (the last event of a run that finished)
ERROR = "error"  # {"kind": "user" | "internal", "message"}: why the session failed

EVENTS = (PHASE, DEVICE, STEP, EPOCH, ROUND, LOG, RESULT, ERROR)

# Phases the parent names itself, before the worker starts.
SETTLE_PHASE = "settle"  # waiting for power to settle after the previous run
IDLE_PHASE = "idle"  # the idle baseline
PRE_PHASE = "pre"  # before the first mark (worker start-up)
# The worker marks the end of the measured work with this phase, after a device sync: metrics,
# the result, saving and teardown come after it and are never charged to the measured window.
END_PHASE = "post"


def measured_phases(mode: str) -> tuple[str, ...]:
    """The phases a session's per-item figures are computed over."""
    return ("train", "eval") if mode == "train" else ("infer",)
