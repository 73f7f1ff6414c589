"""The worker half of ``ddp:nproc=N``. The work is done before the technique is applied: the
parent launched N ranks through torchrun (core/run/launch.py) and each joined the process group
(core/worker/distributed.py); the training loop wraps the model in DistributedDataParallel and
trains on this rank's shard. ``apply`` checks that this worker really is one of N ranks (a
technique that claimed DDP in a single process would report what did not run), and
``finalize`` reports how the ranks ran, with DDP's own step timings. Declared in
core/techniques/ddp.py."""

from __future__ import annotations

from typing import Any

from wattlab.core.errors import SpecError
from wattlab.core.techniques.base import Applied
from wattlab.core.techniques.ddp import DistributedDataParallel
from wattlab.core.worker import distributed
from wattlab.core.worker.techniques.registry import Implementation, implements


def _pct(x: Any) -> str:
    return f"{x:.0%}" if isinstance(x, float) else "unknown"


@implements
class DistributedDataParallelImpl(Implementation, DistributedDataParallel):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        n = params["nproc"]
        if distributed.world() != n:
            raise SpecError(
                f"ddp:nproc={n} needs the worker started as {n} ranks through torchrun (wattlab "
                f"run and compare do that); this worker is {distributed.world()} rank(s)"
            )
        rep = distributed.report(ctx.spec.batch_size)
        text = (
            f"{n} ranks x {rep['threads_per_rank']} thread(s) ({rep['backend']}), each trains on "
            f"its shard of every epoch; global batch {rep['global_batch']} = {n} x "
            f"{rep['per_rank_batch']}, gradients averaged by DistributedDataParallel"
        )
        warnings = []
        if rep["global_batch"] != ctx.spec.batch_size:
            warnings.append(
                f"batch size {ctx.spec.batch_size} does not split evenly between {n} ranks: "
                f"each takes {rep['per_rank_batch']}, {rep['global_batch']} per step"
            )
        return Applied(self.name, params, text, rep, warnings)

    def finalize(self, ctx: Any, params: dict[str, Any], applied: Applied) -> None:
        """After training: DDP's sampled timings of rank 0 (forward, backward, the all-reduce
        and its overlap with the backward pass) and the items each epoch repeated to keep the
        shards equal."""
        rep = distributed.report(ctx.spec.batch_size)
        applied.details.update(rep)
        if rep.get("parallel_efficiency") is not None:
            applied.description += (
                f"; the all-reduce left {_pct(rep['comm_exposed_share'])} of a step waiting "
                f"(parallel efficiency {_pct(rep['parallel_efficiency'])}, DDP's sampled "
                "timings of rank 0)"
            )
        if rep["padded_items_per_epoch"]:
            applied.warnings.append(
                f"{rep['padded_items_per_epoch']} item(s) per epoch trained twice so every "
                "rank's shard has the same length (counted in items)"
            )
