"""The worker half of ``compile``: compiles the loaded model in place with ``torch.compile`` and
compiles it for real inside the prepare phase (a warm-up on a batch of the training split), so
the compile time is reported apart from the measured work.
Declared (name, parameters, where it applies) in core/techniques/compilation.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from wattlab.core.errors import SpecError
from wattlab.core.techniques.base import Applied, Target
from wattlab.core.techniques.compilation import Compilation
from wattlab.core.worker import device as devmod
from wattlab.core.worker.batching import collate
from wattlab.core.worker.techniques.registry import Implementation, implements


def dynamo_counts() -> dict[str, int]:
    """TorchDynamo's process-wide tallies: frames compiled (a recompile is one more), graphs
    produced, graph breaks. Read before and after to get what one step compiled."""
    from torch._dynamo.utils import counters

    return {
        "frames_compiled": int(counters["frames"]["total"]),
        "graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
    }


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


@dataclass
class CompileWatch:
    """Counts every compile that starts after the warm-up (a shape the warm-up did not see, a
    recompile on a guard failure, a lazily compiled backward) and the seconds they took, straight
    into the technique's report: the measured phase may include them, so they are never hidden.
    Each one is also logged, stamped, so the run's timeline shows where it fell."""

    details: dict[str, Any]
    log: Any
    clock: Callable[[], float] = time.perf_counter  # seconds; a test gives its own ticks
    _started: dict[str, float] = field(default_factory=dict)

    def start(self, args: Any = None) -> None:
        self._started[_compile_id(args)] = self.clock()

    def end(self, args: Any = None) -> None:
        t0 = self._started.pop(_compile_id(args), None)
        took = self.clock() - t0 if t0 is not None else 0.0
        self.details["compiles_after_warmup"] += 1
        self.details["compile_s_after_warmup"] += took
        self.log(
            f"compile: a new compile after the warm-up ({took:.2f} s): a shape or mode the "
            "warm-up did not see"
        )

    def register(self) -> None:
        import torch._dynamo

        torch._dynamo.callback_handler.register_start_callback(self.start)
        torch._dynamo.callback_handler.register_end_callback(self.end)

    def remove(self) -> None:
        import torch._dynamo

        torch._dynamo.callback_handler.remove_start_callback(self.start)
        torch._dynamo.callback_handler.remove_end_callback(self.end)


def _compile_id(args: Any) -> str:
    return str(getattr(args, "compile_id", ""))


def warmup_sizes(batch_size: int, split_sizes: list[int]) -> list[int]:
    """The batch sizes to compile for before the measured phase: a full batch, and a batch of
    one item when the session will meet one (Dynamo specialises sizes 0 and 1 even with dynamic
    shapes, so a last batch of one would recompile inside the measured phase)."""
    sizes = [batch_size]
    if batch_size > 1 and any(n % batch_size == 1 for n in split_sizes):
        sizes.append(1)
    return sizes


def _batch(ctx: Any, n: int) -> tuple[Any, Any, Any]:
    """A real batch of ``n`` items from the calibration slice (the training split, never the
    eval split): input ids, attention mask and labels, on the session's device."""
    import torch

    ids = ctx.calib_ids[:n]
    if not ids:
        raise SpecError("compile: the training split is empty: no batch to compile on")
    x, m = collate(ids, ctx.pad_id)
    xt, mt = torch.from_numpy(x).to(ctx.dev), torch.from_numpy(m).to(ctx.dev)
    if ctx.task == "classify" and ctx.calib_labels is not None:
        y = torch.tensor(list(ctx.calib_labels[: len(ids)]), device=ctx.dev)
    else:
        y = xt.masked_fill(mt == 0, -100)
    return xt, mt, y


def _warm_infer(ctx: Any, model: Any, n: int) -> None:
    """The call inference makes (core/worker/infer.py Forward): no gradients, labels only for a
    causal LM's loss. The batch is made inside inference mode as Forward makes it: inference
    tensors carry other dispatch keys, and Dynamo would recompile for them."""
    import torch

    with torch.inference_mode(), (ctx.autocast or nullcontext)():
        xt, mt, y = _batch(ctx, n)
        if ctx.task == "classify":
            model(input_ids=xt, attention_mask=mt)
        else:
            model(input_ids=xt, attention_mask=mt, labels=y)


def _warm_train(ctx: Any, model: Any, n: int) -> None:
    """The calls training makes (core/worker/train.py): a training-mode forward and backward
    with labels, then evaluation's no-grad forward. Gradients are dropped: no weight changes."""
    import torch

    xt, mt, y = _batch(ctx, n)
    was_training = model.training
    model.train()
    with (ctx.autocast or nullcontext)():
        out = model(input_ids=xt, attention_mask=mt, labels=y)
    out.loss.backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        model(input_ids=xt, attention_mask=mt, labels=y)
    model.train(was_training)


def _split_sizes(ctx: Any) -> list[int]:
    data = ctx.data
    if data is None:
        return []
    sizes = [len(data.eval_ids)]
    if ctx.spec.mode == "train":
        sizes.append(len(data.train_ids))
    return sizes


def _compile_and_warm(ctx: Any, params: dict[str, Any]) -> tuple[float, list[int]]:
    """Compile the model in place and run the warm-up passes that make it compile now; returns
    the seconds it took (to the device's completion) and the batch sizes warmed up."""
    from torch._dynamo.exc import TorchDynamoException

    model = ctx.loaded.model
    warm = _warm_train if ctx.spec.mode == "train" else _warm_infer
    # One eager pass first: a model may set state on its first call (BERT's classifier sets
    # config.problem_type), which the compiled graph would otherwise guard on and recompile.
    warm(ctx, model, 1)
    # dynamic=True compiles shape-generic kernels at once; None is torch's own default (static
    # first, one recompile to dynamic when a shape changes).
    model.compile(mode=params["mode"], dynamic=True if params["dynamic"] else None)
    sizes = warmup_sizes(ctx.spec.batch_size, _split_sizes(ctx))
    t0 = time.perf_counter()
    try:
        for n in sizes:
            warm(ctx, model, n)
    except TorchDynamoException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(f"compile: torch.compile failed on this model: {first[:300]}") from None
    devmod.sync(ctx.dev)
    return time.perf_counter() - t0, sizes


def _check_model(ctx: Any) -> None:
    """Refuse what an earlier technique left that is not a PyTorch module (an ONNX Runtime
    session from quantization or onnx-runtime)."""
    import torch

    if ctx.loaded.kind != "hf" or not isinstance(ctx.loaded.model, torch.nn.Module):
        raise SpecError(
            "compile needs the PyTorch model, but an earlier technique turned it into an ONNX "
            "Runtime session; compare them separately"
        )


@implements
class CompilationImpl(Implementation, Compilation):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        _check_model(ctx)
        before = dynamo_counts()
        seconds, sizes = _compile_and_warm(ctx, params)
        details: dict[str, Any] = {
            "compile_time_s": seconds,
            "mode": params["mode"],
            "dynamic": params["dynamic"],
            "warmup_batch_sizes": sizes,
            **_delta(before, dynamo_counts()),
            "compiles_after_warmup": 0,
            "compile_s_after_warmup": 0.0,
        }
        CompileWatch(details, ctx.log).register()  # lives as long as the worker's session
        passes = "forward+backward and eval" if ctx.spec.mode == "train" else "inference"
        desc = (
            f"torch.compile(mode={params['mode']}, dynamic={params['dynamic']}) on "
            f"{ctx.dev.type}: {details['graphs']} graph(s) compiled in {seconds:.1f} s during "
            f"preparation ({passes} warm-up on batch sizes {', '.join(map(str, sizes))}), "
            f"{details['graph_breaks']} graph break(s)"
        )
        return Applied(self.name, params, desc, details, self._warnings(ctx, params, details))

    def _warnings(self, ctx: Any, params: dict[str, Any], details: dict[str, Any]) -> list[str]:
        out = [
            "a shape the warm-up did not see (a new sequence length with dynamic=false, a "
            "batch of one) recompiles when it appears, possibly inside the measured phase: "
            "compiles_after_warmup counts them"
        ]
        if details["graph_breaks"]:
            out.append(
                f"{details['graph_breaks']} graph break(s): parts of the model run eagerly "
                "between compiled graphs"
            )
        if params["mode"] == "reduce-overhead":
            out.append(
                "reduce-overhead records one CUDA graph per input shape: padded batches of "
                "many lengths record many graphs (memory and recording time)"
            )
        w = self.warning(Target(ctx.spec.mode, ctx.dev.type, ctx.loaded.kind), params)
        return out + ([w] if w else [])
