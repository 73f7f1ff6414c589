"""How the parent starts a session's worker: one plain process, or N ranks through torchrun.

A spec with ``nproc`` above 1 (``--nproc N``, or the ``ddp:nproc=N`` technique, whose override
is applied here because the launch is decided before any worker exists) starts::

    python -m torch.distributed.run --standalone --nproc-per-node N --max-restarts 0 \
        --monitor-interval 0.1 --shutdown-timeout 5 --log-dir TMP/torchrun \
        -m wattlab.core.worker SPEC

torchrun is the session runner's direct child; its ranks are torchrun's children. The sampler
measures the whole tree (core/measure/sensors/proctree.py walks every descendant), and the
kernel's exact CPU time of the reaped tree reaches the runner through torchrun, which reaps
its ranks. The ranks share the runner's stdin (a ``cancel`` line reaches one of them; they
agree on it at the next batch) and stdout (only rank 0 writes events).

Failure: with ``--max-restarts 0`` a rank that exits non-zero ends the run; torchrun stops the
others (SIGTERM, SIGKILL after ``--shutdown-timeout``) and exits non-zero. A hung rank makes
the others fail in their next collective after the gloo/NCCL timeout
(core/worker/distributed.py). A rank that reported its own error sent an ``error`` event; for
one that died silently (a signal, ``os._exit``) ``crash_detail`` reads torchrun's report (its
"Root Cause" block and the error file) so the run's message says which rank failed first.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wattlab.core.errors import SpecError
from wattlab.core.hardware import threads_per_rank
from wattlab.core.spec import RunSpec

SHUTDOWN_TIMEOUT_S = 5  # torchrun's wait between SIGTERM and SIGKILL of the other ranks
MONITOR_INTERVAL_S = 0.1  # how often torchrun checks its ranks
LAUNCHER_ERROR_FILE = "launcher-error.json"
# A parent that itself runs under torchrun must not make a plain worker believe it is a rank.
_RANK_ENV = (
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_ERROR_FILE",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def launch_spec(spec: RunSpec) -> RunSpec:
    """The spec as the session will run it (the techniques' overrides applied), which decides
    how many ranks start. ``--nproc`` and ``ddp:nproc`` that disagree are refused."""
    from wattlab.core.techniques.compose import spec_with_overrides

    run = spec_with_overrides(spec)
    if spec.nproc != 1 and run.nproc != spec.nproc:
        raise SpecError(
            f"--nproc {spec.nproc} and ddp:nproc={run.nproc} disagree; give one of them"
        )
    return run


def worker_command(spec: RunSpec, spec_path: Path) -> list[str]:
    """The worker's command line: ``python -m wattlab.core.worker SPEC`` for one process, the
    same module under torchrun for ``spec.nproc`` ranks (``spec`` as ``launch_spec`` gives)."""
    worker = ["-m", "wattlab.core.worker", str(spec_path)]
    if spec.nproc == 1:
        return [sys.executable, *worker]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(spec.nproc),
        "--max-restarts",
        "0",
        "--monitor-interval",
        str(MONITOR_INTERVAL_S),
        "--shutdown-timeout",
        str(SHUTDOWN_TIMEOUT_S),
        "--log-dir",
        str(spec_path.parent / "torchrun"),  # inside the run's own folder, removed with it
        *worker,
    ]


def worker_env(spec: RunSpec, env: Mapping[str, str], tmp: Path) -> dict[str, str]:
    """The worker's environment: ``env`` without another launch's rank variables; for ranks,
    OpenMP's threads per rank (torchrun would otherwise set 1 and say so) and the file where
    torchrun leaves the first failed rank's error."""
    out = {k: v for k, v in env.items() if k not in _RANK_ENV}
    if spec.nproc > 1:
        out["OMP_NUM_THREADS"] = str(threads_per_rank(spec.threads, spec.nproc))
        out["TORCHELASTIC_ERROR_FILE"] = str(tmp / LAUNCHER_ERROR_FILE)
    return out


def crash_detail(spec: RunSpec, tmp: Path, stderr_tail: str) -> str:
    """The worker's stderr tail, ending with which rank failed first and its error when
    torchrun reported a failed rank (the run's message is the tail's last line)."""
    if spec.nproc == 1:
        return stderr_tail
    line = root_cause_line(stderr_tail, tmp / LAUNCHER_ERROR_FILE, spec.nproc)
    return stderr_tail if line is None else f"{stderr_tail.rstrip()}\n{line}\n"


_ROOT = re.compile(r"Root Cause \(first observed failure\):(.*?)(?:={8,}|\Z)", re.S)


def root_cause_line(stderr_text: str, error_file: Path, nproc: int) -> str | None:
    """One line from torchrun's "Root Cause" block (rank, exit code) and its error file (the
    rank's own error, when it recorded one); None when torchrun reported no failed rank."""
    block = _ROOT.search(stderr_text)
    if block is None:
        return None
    rank = re.search(r"rank\s*:\s*(\d+)", block.group(1))
    code = re.search(r"exitcode\s*:\s*(-?\d+)", block.group(1))
    if rank is None or code is None:
        return None
    how = _exit_text(int(code.group(1)))
    message = _error_file_message(error_file)
    head = f"rank {rank.group(1)} of {nproc} failed first ({how})"
    return f"{head}: {message}" if message else f"{head} without an error message"


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _error_file_message(path: Path) -> str | None:
    """The first line of the error torchrun copied from the failed rank, if any."""
    import json

    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    msg = data.get("message") if isinstance(data, dict) else None
    if isinstance(msg, dict):
        msg = msg.get("message")
    if not isinstance(msg, str) or not msg.strip():
        return None
    return msg.strip().splitlines()[0][:300]
