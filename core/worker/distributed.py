"""Distributed data-parallel training inside the worker: one process per rank, started by
torchrun (``python -m torch.distributed.run``, see core/run/launch.py).

Why it is measured this way: DDP is a way of spending a machine's cores or GPUs on one
training; whether N ranks of 1/N of the cores train with less energy than one process with all
of them is what the session measures. Every rank trains on its shard of every epoch, the
gradients are averaged by ``DistributedDataParallel`` (gloo on the CPU, NCCL with one GPU per
rank), and the result counts the work of all ranks.

Rules every rank keeps, so that no collective is ever left waiting for a rank that went
elsewhere: all ranks run the same code path, and collectives happen only at points every rank
reaches the same number of times (DDP's own gradient all-reduce, one small all-reduce per batch
in ``sync_step``, the evaluation's gather, the setup). Shards have equal length (the epoch's
permutation is padded by wrapping around, as ``DistributedSampler`` does), so every rank runs
the same number of batches of the same size. A cancel or a non-finite loss seen by one rank is
agreed in ``sync_step`` and stops all of them at the same batch.

Only rank 0 writes events to the parent; the other ranks write only their errors, tagged with
their rank. A rank whose collective fails because a peer died waits a moment before it exits,
so torchrun names the rank that failed first (core/run/launch.py turns its report into the
run's message). Each rank dies with torchrun, and torchrun ends once its ranks have: a rank
watches both torchrun and the session runner (``hold_on_rank``).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import IO, Any

import numpy as np

from wattlab.core.errors import SpecError
from wattlab.core.hardware import threads_per_rank
from wattlab.core.tempdirs import remove_owned
from wattlab.core.worker.events import CancelToken, Emitter
from wattlab.core.worker.lifeline import (
    ORPHAN_EXIT_CODE,
    PARENT_ENV,
    arm_death_signal,
)

# How long a rank waits in a collective for the others before it fails (a hung or dead rank);
# a test may shorten it.
TIMEOUT_ENV = "WATTLAB_DDP_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 60.0
# Fault injection for the tests: "RANK:BATCH:exit|raise|hang" makes that rank fail at that batch.
FAULT_ENV = "WATTLAB_DDP_FAULT"
# A rank whose collective failed because a peer is gone waits this long before it exits, so
# torchrun sees the peer's failure first and names it as the root cause.
PEER_FAILURE_DELAY_S = 1.0
RANK_GRACE_S = 3.0  # a rank whose launcher or session runner is gone stops within this


@dataclass
class _State:
    """This process's place in the run; world 1 outside torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    backend: str | None = None
    device: str | None = None
    threads: int | None = None
    gpu_uuids: list[str | None] = field(default_factory=list)
    padded_items: int = 0  # items repeated per epoch so every shard has the same length
    ddp: Any = None  # the last DistributedDataParallel wrapper (its own timings)


_STATE = _State()


def launched() -> bool:
    """Whether this worker is one rank of a torchrun launch (its environment says so)."""
    return "TORCHELASTIC_RUN_ID" in os.environ and "WORLD_SIZE" in os.environ


def world() -> int:
    return _STATE.world


def rank() -> int:
    return _STATE.rank


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if math.isfinite(value) and value > 0 else DEFAULT_TIMEOUT_S


# -- events: only rank 0 speaks ------------------------------------------------------------------
class RankEmitter(Emitter):
    """Rank 0 writes every event; the other ranks write only errors. Errors carry the rank, and
    the device event says how many ranks ran (the parent counts every rank's GPU)."""

    def emit(self, event: str, **data: Any) -> None:
        st = _STATE
        if event == "error" and st.world > 1:
            data["message"] = f"rank {st.rank} of {st.world}: {data.get('message', '')}"
            data["rank"] = st.rank
        elif st.rank != 0:
            return
        if event == "device" and st.world > 1:
            data.update(ranks=st.world, backend=st.backend, threads_per_rank=data.get("threads"))
            if st.backend == "nccl":
                # One GPU per rank: no single UUID names them all, so the parent counts every
                # visible GPU (and says so); the ranks' own UUIDs travel beside it.
                data["uuids"], data["uuid"] = list(st.gpu_uuids), None
        super().emit(event, **data)


def emitter(stream: IO[str]) -> Emitter:
    """The worker's emitter: a plain one, or a rank's when torchrun started this process."""
    if not launched():
        return Emitter(stream)
    _STATE.rank = int(os.environ.get("RANK", "0"))
    _STATE.world = int(os.environ.get("WORLD_SIZE", "1"))
    return RankEmitter(stream)


# -- lifeline: a rank never outlives torchrun or the session runner -------------------------------
def _ppid_of(pid: int) -> int | None:
    """The parent PID of ``pid`` from /proc (Linux), None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _runner_alive(launcher: int, runner: int | None) -> bool:
    """Whether the session runner still holds torchrun (torchrun re-parented means it died)."""
    if runner is None:
        return True
    ppid = _ppid_of(launcher)
    if ppid is not None:
        return ppid == runner
    try:
        os.kill(runner, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_on_stop_signal() -> None:
    """torchrun stops its ranks with a signal (SIGTERM when another rank failed or the run is
    being stopped; SIGINT, SIGHUP forwarded): a rank exits at once, even one stuck in a
    collective whose main thread never runs a Python signal handler again, since torchrun
    would otherwise wait 30 s before its SIGKILL. The C-level handler writes the signal's
    number to a wakeup socket (``signal.set_wakeup_fd``) that a thread reads. Needs the
    Python handlers the cancellation token installs."""
    import signal
    import socket

    stops = {int(signal.SIGTERM), int(signal.SIGINT), int(signal.SIGHUP)}
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    _WAKEUP.extend((reader, writer))  # kept open for the process's life

    def loop() -> None:
        while True:
            got = reader.recv(64)
            if not got:
                return
            hit = next((n for n in got if n in stops), None)
            if hit is not None:
                remove_owned(os.getpid())  # os._exit skips the folders' own cleanup
                os._exit(128 + hit)

    threading.Thread(target=loop, name="rank-stop", daemon=True).start()


_WAKEUP: list[Any] = []


def hold_on_rank(cancel: CancelToken, poll_s: float = 0.5) -> threading.Thread:
    """The rank's lifeline (worker/lifeline.py watches the runner, which is not a rank's
    parent): the kernel's death signal when torchrun dies, an exit at torchrun's stop signal,
    and a watchdog that cancels and exits when torchrun or the session runner above it is
    gone. Called from the main thread, after the token's signal handlers are installed."""
    launcher = os.getppid()
    raw = os.environ.get(PARENT_ENV, "")
    runner = int(raw) if raw.isdigit() else None
    arm_death_signal()
    _exit_on_stop_signal()

    def loop() -> None:
        while os.getppid() == launcher and _runner_alive(launcher, runner):
            time.sleep(poll_s)
        cancel.cancel()
        time.sleep(RANK_GRACE_S)
        remove_owned(os.getpid())
        os._exit(ORPHAN_EXIT_CODE)

    thread = threading.Thread(target=loop, name="rank-lifeline", daemon=True)
    thread.start()
    return thread


# -- setup and teardown ---------------------------------------------------------------------------
def _rank_device(spec: Any, local_rank: int, local_world: int) -> tuple[str, str]:
    """(device, backend) of this rank: one GPU per rank with NCCL, else the CPU with gloo."""
    import torch

    cuda = spec.device.startswith("cuda") or (spec.device == "auto" and torch.cuda.is_available())
    if not cuda:
        return "cpu", "gloo"
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if local_world > visible:
        raise SpecError(
            f"--nproc {local_world} on the GPU needs one GPU per rank, {visible} visible: use "
            f"--nproc {max(1, visible)} or --device cpu"
        )
    torch.cuda.set_device(local_rank)
    return f"cuda:{local_rank}", "nccl"


def join(spec: Any, emit: Emitter) -> Any:
    """Join the process group when torchrun started this worker and return the spec this rank
    runs (its own GPU, its share of the cores); ``spec`` unchanged otherwise."""
    if not launched():
        return spec
    from datetime import timedelta

    import torch.distributed as dist

    from wattlab.core.techniques.compose import spec_with_overrides

    spec = spec_with_overrides(spec)  # ddp:nproc=N, a threads knob: as the session will run
    if spec.mode != "train":
        raise SpecError(f"distributed ranks train only; {spec.mode} runs in one process")
    st = _STATE
    st.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    st.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(st.world)))
    st.device, st.backend = _rank_device(spec, st.local_rank, st.local_world)
    st.threads = threads_per_rank(spec.threads, st.local_world)
    dist.init_process_group(st.backend, timeout=timedelta(seconds=timeout_s()))
    if st.backend == "nccl":
        st.gpu_uuids = _gather_uuids(st.device)
    emit.log(
        f"distributed training: {st.world} ranks ({st.backend}), {st.threads} thread(s) per "
        f"rank, device {'cuda:LOCAL_RANK' if st.backend == 'nccl' else 'cpu'}"
    )
    return replace(spec, device=st.device, threads=st.threads)


def _gather_uuids(device: str) -> list[str | None]:
    import torch
    import torch.distributed as dist

    try:
        mine: str | None = str(torch.cuda.get_device_properties(device).uuid)
    except (AttributeError, RuntimeError):
        mine = None
    out: list[Any] = [None] * _STATE.world
    dist.all_gather_object(out, mine)
    return out


def leave() -> None:
    """Leave the process group after a run that ended normally."""
    if _STATE.world == 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


# -- failures --------------------------------------------------------------------------------------
_PEER_PHRASES = (
    "connection reset by peer",
    "connection closed by peer",
    "timed out waiting",
    "gloo/transport",
    "nccl communicator",
    "broken pipe",
)


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another rank died or hung (gloo
    raises a plain RuntimeError naming its transport) rather than this rank's own error."""
    if _STATE.world == 1:
        return False
    try:
        import torch.distributed as dist

        if isinstance(exc, dist.DistError):
            return True
    except ImportError:
        pass
    low = str(exc).lower()
    return any(p in low for p in _PEER_PHRASES)


def record_failure(exc: BaseException, emit: Emitter) -> bool:
    """Write this rank's error where torchrun reads it (its per-rank TORCHELASTIC_ERROR_FILE);
    True when it was a peer's failure: then the rank says so in a log line (the peer reports
    its own error) and waits a moment, so torchrun sees the peer's failure first. Called from
    an ``except`` block (the error file carries the traceback)."""
    if _STATE.world == 1:
        return False
    peer = is_peer_failure(exc)
    recorded: BaseException = exc
    if peer:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        why = (
            f"another rank stopped answering (it died, or hung past the {timeout_s():g} s timeout)"
        )
        emit.log(f"rank {_STATE.rank}: a collective failed, {why}: {first}")
        recorded = RuntimeError(f"{why}: {type(exc).__name__}: {first}")
        # torchrun names the failure with the earliest time as the root cause: a peer that
        # died without an error file is stamped when torchrun notices it, so this one is
        # stamped after that.
        time.sleep(PEER_FAILURE_DELAY_S)
    try:
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(recorded)  # the traceback is the one being handled
    except (ImportError, OSError):
        pass
    return peer


def _inject_fault(batch: int) -> None:
    """The tests' failing rank (``WATTLAB_DDP_FAULT=RANK:BATCH:exit|raise|hang``)."""
    raw = os.environ.get(FAULT_ENV)
    if not raw:
        return
    parts = raw.split(":")
    if len(parts) != 3 or parts[0] != str(_STATE.rank) or parts[1] != str(batch):
        return
    if parts[2] in ("exit", "hang"):
        remove_owned(os.getpid())  # as tidy as a real crash's next sweep would leave it
    if parts[2] == "exit":
        os._exit(7)
    if parts[2] == "hang":
        while True:
            time.sleep(1)
    raise RuntimeError(f"injected failure at batch {batch}")


# -- the training loop's hooks ---------------------------------------------------------------------
class AgreedCancel(CancelToken):
    """A rank's cancellation as all ranks agreed it at the last ``sync_step``: a cancel line or
    signal reaches one rank (they share the worker's stdin), and a rank that stopped alone would
    leave the others waiting in a collective."""

    def __init__(self, token: CancelToken) -> None:
        super().__init__()
        self.token = token

    @property
    def requested(self) -> bool:
        """This rank's own request, not yet agreed."""
        return self.token.cancelled

    def cancel(self) -> None:
        self.token.cancel()

    def agree(self) -> None:
        self.token.cancel()
        self._event.set()


def agreed(cancel: CancelToken) -> CancelToken:
    """The token the training loop reads: agreed between ranks, ``cancel`` itself in one."""
    return AgreedCancel(cancel) if _STATE.world > 1 else cancel


@dataclass(frozen=True)
class Totals:
    """All ranks' counts after a batch: items and tokens since training began, the epoch's loss
    sum and batches, and whether any rank's loss was not finite."""

    items: int = 0
    tokens: int = 0
    loss_sum: float = 0.0
    batches: int = 0
    nonfinite: bool = False


def sync_step(
    cancel: CancelToken, items: int, tokens: int, loss_sum: float, n_batches: int, nonfinite: bool
) -> Totals:
    """One small all-reduce per batch: cancel and non-finite flags, counts and the epoch's loss
    (this rank's in one process). Every rank calls it once per batch, in step."""
    if _STATE.world == 1:
        return Totals(items, tokens, loss_sum, n_batches, nonfinite)
    import torch
    import torch.distributed as dist

    _inject_fault(n_batches)
    requested = cancel.requested if isinstance(cancel, AgreedCancel) else cancel.cancelled
    vec = torch.tensor(
        [float(requested), float(nonfinite), items, tokens, loss_sum, n_batches],
        dtype=torch.float64,
        device=_comm_device(),
    )
    dist.all_reduce(vec)
    v = vec.tolist()
    if v[0] > 0 and isinstance(cancel, AgreedCancel):
        cancel.agree()
    return Totals(int(v[2]), int(v[3]), float(v[4]), int(v[5]), v[1] > 0)


def _comm_device() -> Any:
    import torch

    return torch.device(_STATE.device or "cpu" if _STATE.backend == "nccl" else "cpu")


def wrap(model: Any, dev: Any) -> Any:
    """The module the training loop calls: ``DistributedDataParallel`` over ``model`` when there
    are ranks (its construction broadcasts rank 0's weights), ``model`` itself in one."""
    if _STATE.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [dev.index] if dev.type == "cuda" else None
    # Buffers (BERT's position ids) are the same on every rank: no broadcast per forward.
    _STATE.ddp = DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)
    return _STATE.ddp


def accumulating(net: Any, skip_sync: bool) -> Any:
    """A context for one backward: without the gradient all-reduce when the optimizer does not
    step after it (gradient accumulation), as ``DistributedDataParallel.no_sync`` allows."""
    from contextlib import nullcontext

    if skip_sync and _STATE.world > 1 and hasattr(net, "no_sync"):
        return net.no_sync()
    return nullcontext()


def rank_batch_size(batch_size: int) -> int:
    """Each rank's batch: the global batch (``--batch-size``) split between the ranks, so one
    optimizer step sees as many items as in one process and the recipe stays the same."""
    return max(1, batch_size // _STATE.world)


def shard_len(n: int) -> int:
    return -(-n // _STATE.world) if _STATE.world > 1 else n


def shard(order: np.ndarray) -> np.ndarray:
    """This rank's part of an epoch's permutation: padded by wrapping around to a multiple of
    the ranks (every shard the same length), then every world-th item from this rank's."""
    w = _STATE.world
    if w == 1:
        return order
    total = shard_len(len(order)) * w
    _STATE.padded_items = total - len(order)
    return np.resize(order, total)[_STATE.rank :: w]


def eval_share(n: int) -> np.ndarray:
    """The eval items this rank scores (every world-th one); no padding, the gather merges."""
    return np.arange(n)[_STATE.rank :: _STATE.world]


def gather_eval(
    share: np.ndarray, losses: list[float], weights: list[int], logits: list[np.ndarray]
) -> tuple[list[float], list[int], list[np.ndarray]]:
    """Every rank's eval losses (with their weights) and logits, the logits back in eval order,
    so every rank computes the same metrics as one process would."""
    if _STATE.world == 1:
        return losses, weights, logits
    import torch.distributed as dist

    mine = (share.tolist(), losses, weights, np.concatenate(logits) if logits else None)
    parts: list[Any] = [None] * _STATE.world
    dist.all_gather_object(parts, mine)
    all_losses = [x for p in parts for x in p[1]]
    all_weights = [x for p in parts for x in p[2]]
    filled = [p for p in parts if p[3] is not None]
    if not filled:
        return all_losses, all_weights, []
    n = sum(len(p[0]) for p in parts)
    full = np.empty((n, *filled[0][3].shape[1:]), dtype=filled[0][3].dtype)
    for idx, _, _, lg in filled:
        full[np.asarray(idx, dtype=int)] = lg
    return all_losses, all_weights, [full]


# -- what the run reports -------------------------------------------------------------------------
def merge_result(result: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """The session's result as rank 0 reports it for all ranks: how the ranks ran
    (``distributed``) and the peak memory of every rank summed (each rank measured its own).
    A collective: every rank calls it once, with its own result, after the session."""
    if _STATE.world == 1:
        return result
    import torch.distributed as dist

    peaks: list[Any] = [None] * _STATE.world
    dist.all_gather_object(peaks, result.get("peak_mem_bytes"))
    out = dict(result, distributed=report(batch_size))
    _exclude_padding(out)
    if all(isinstance(p, int) for p in peaks):
        out["peak_mem_bytes"] = sum(peaks)
        out["peak_mem_source"] = (
            f"sum over {_STATE.world} ranks of each one's {result.get('peak_mem_source')}"
        )
    return out


def _exclude_padding(result: dict[str, Any]) -> None:
    """Items counted are the training split's, as one process counts them: the repeats that pad
    every rank's shard to the same length are trained on but are not more items of the split,
    so they are taken out of the result's items (energy per item stays comparable with one
    process); the tokens still include them, and the report says how many were padding."""
    padded = _STATE.padded_items
    epochs = len(result.get("epochs") or [])
    if not padded or not epochs or not isinstance(result.get("items"), int):
        return
    excluded = min(padded * epochs, result["items"])
    result["items"] -= excluded
    result["distributed"]["padded_items_excluded"] = excluded
    result["distributed"]["tokens_include_padding"] = True


def report(batch_size: int) -> dict[str, Any]:
    """How the ranks ran, for the ddp technique's report: ranks, backend, threads, batches, and
    DDP's own sampled timings of rank 0 (forward, backward, the all-reduce and how much of it
    overlapped the backward pass): ``comm_exposed_share`` is the share of a step spent waiting
    for the all-reduce, ``parallel_efficiency`` what is left for computing."""
    st = _STATE
    out: dict[str, Any] = {
        "ranks": st.world,
        "backend": st.backend,
        "threads_per_rank": st.threads,
        "per_rank_batch": rank_batch_size(batch_size),
        "global_batch": rank_batch_size(batch_size) * st.world,
        "padded_items_per_epoch": st.padded_items,
    }
    out.update(_ddp_timings())
    return out


def _ddp_timings() -> dict[str, Any]:
    ddp = _STATE.ddp
    if ddp is None:
        return {}
    try:
        data = ddp._get_ddp_logging_data()  # noqa: SLF001 - DDP's own sampled step timings
    except (AttributeError, RuntimeError):
        return {}
    keys = {
        "forward_ms": "avg_forward_compute_time",
        "backward_compute_ms": "avg_backward_compute_time",
        "allreduce_ms": "avg_backward_comm_time",
        "overlap_ms": "avg_backward_compute_comm_overlap_time",
    }
    ms = {k: data.get(v) for k, v in keys.items()}
    if not all(isinstance(v, (int, float)) and v > 0 for v in ms.values()):
        return {}
    out: dict[str, Any] = {k: float(v) / 1e6 for k, v in ms.items()}
    exposed = max(0.0, out["allreduce_ms"] - out["overlap_ms"])
    step = out["forward_ms"] + out["backward_compute_ms"] + exposed
    out["comm_exposed_share"] = exposed / step if step > 0 else None
    out["parallel_efficiency"] = 1 - exposed / step if step > 0 else None
    return out
