"""``python -m wattlab.core.worker SPEC.json``: runs one session and streams JSON-lines events.

Why a separate process: torch/CUDA crashes, OOM and the GIL stay out of the GUI and the sampler,
and the sampler can attribute CPU time and memory to exactly this PID tree.

Exit codes: 0 done (also when cancelled), 2 the user's input was unusable (an ``error`` event
says why), 1 an internal error (traceback on stderr, an ``error`` event with its summary).
"""

from __future__ import annotations

import os
import sys
import traceback

from wattlab.core.errors import UserError
from wattlab.core.worker import distributed
from wattlab.core.worker.events import CancelToken
from wattlab.core.worker.lifeline import hold_on

# CUDA says "out of memory"; the CPU allocator says "can't allocate memory" (DefaultCPUAllocator)
# or "Cannot allocate memory" (ENOMEM from the OS).
_OOM_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(message: str) -> bool:
    """Whether an exception's text is a device or host allocation failure (the user's batch
    size or sequence length, not a WattLab bug)."""
    low = message.lower()
    return any(p in low for p in _OOM_PHRASES)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Events own the real stdout; anything else that prints (libraries, warnings) goes to stderr.
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    emit = distributed.emitter(events)  # a torchrun rank: only rank 0 speaks, errors from all
    cancel = CancelToken()
    cancel.watch_stdin()
    cancel.watch_signals()
    if distributed.launched():
        distributed.hold_on_rank(cancel)  # its parent is torchrun, not the session runner
    else:
        hold_on(cancel)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if len(argv) != 1:
        emit.emit("error", kind="user", message="usage: python -m wattlab.core.worker SPEC.json")
        return 2
    try:
        from pathlib import Path

        from wattlab.core.spec import RunSpec
        from wattlab.core.worker.runner import run_session

        spec = RunSpec.load(Path(argv[0])).validate()
        spec = distributed.join(spec, emit)  # a rank's process group, GPU and threads
        result = run_session(spec, emit, cancel)
        result = distributed.merge_result(result, spec.batch_size)  # every rank's share
        emit.emit("result", **result)
        distributed.leave()
        return 0
    except UserError as exc:
        emit.emit("error", kind="user", message=str(exc))
        return 2
    except MemoryError:
        emit.emit(
            "error", kind="user", message="out of memory: try a smaller --batch-size or --seq-len"
        )
        return 2
    except Exception as exc:  # noqa: BLE001 - report, never die silently
        msg = str(exc).splitlines()[0][:300] if str(exc) else ""
        if is_out_of_memory(msg):
            emit.emit(
                "error",
                kind="user",
                message=f"out of memory: {msg}; try a smaller --batch-size or --seq-len",
            )
            return 2
        traceback.print_exc()
        if distributed.record_failure(exc, emit):  # another rank failed first: it reports
            return 1
        emit.emit("error", kind="internal", message=f"{type(exc).__name__}: {msg}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
