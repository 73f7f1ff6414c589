"""Inference: warm-up batches first (excluded from the measured phase), then the eval set (or N
batches), each batch timed to the device's completion for honest latency percentiles."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from wattlab.core.models.metrics import classification_metrics
from wattlab.core.worker import device as devmod
from wattlab.core.worker.batching import batches, collate
from wattlab.core.worker.events import END_PHASE, CancelToken, Emitter


@dataclass
class InferOutcome:
    metrics: dict[str, Any]
    items: int
    tokens: int
    batches: int
    latencies_s: list[float]
    infer_time_s: float
    cancelled: bool
    logits: np.ndarray | None = None
    extended: bool = False  # batches repeated to reach the minimum measured duration

    def summary(self) -> dict[str, Any]:
        lat = np.array(self.latencies_s) * 1000
        return {
            "items": self.items,
            "tokens": self.tokens,
            "batches": self.batches,
            "infer_time_s": self.infer_time_s,
            "extended_to_min_duration": self.extended,
            "latency_ms": {
                "p50": float(np.percentile(lat, 50)) if lat.size else None,
                "p95": float(np.percentile(lat, 95)) if lat.size else None,
                "mean": float(lat.mean()) if lat.size else None,
            },
            "throughput": {
                "items_per_s": self.items / self.infer_time_s if self.infer_time_s > 0 else None,
                "tokens_per_s": self.tokens / self.infer_time_s if self.infer_time_s > 0 else None,
            },
            "metrics": self.metrics,
        }


class Forward:
    """One batch forward for either backend: returns (logits as numpy, LM loss or None)."""

    def __init__(self, loaded: Any, dev: Any, autocast: Any = None) -> None:
        self.loaded = loaded
        self.dev = dev
        self.autocast = autocast

    def __call__(self, x: np.ndarray, m: np.ndarray, lm: bool) -> tuple[np.ndarray | None, float]:
        if self.loaded.kind == "onnx":
            feed = {"input_ids": x}
            if "attention_mask" in self.loaded.onnx_inputs:
                feed["attention_mask"] = m
            if "token_type_ids" in self.loaded.onnx_inputs:
                feed["token_type_ids"] = np.zeros_like(x)
            logits = self.loaded.session.run(None, feed)[0]
            if lm:
                return None, _lm_loss_np(logits, x, m)
            return logits, float("nan")
        import torch

        with torch.inference_mode():
            xt, mt = torch.from_numpy(x).to(self.dev), torch.from_numpy(m).to(self.dev)
            ctx = self.autocast() if self.autocast else _Null()
            with ctx:
                if lm:
                    out = self.loaded.model(
                        input_ids=xt, attention_mask=mt, labels=xt.masked_fill(mt == 0, -100)
                    )
                    loss = float(out.loss)
                    devmod.sync(self.dev)
                    return None, loss
                out = self.loaded.model(input_ids=xt, attention_mask=mt)
            logits = out.logits.float().cpu().numpy()  # .cpu() waits for the device
            return logits, float("nan")


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def _lm_loss_np(logits: np.ndarray, x: np.ndarray, m: np.ndarray) -> float:
    lg = logits[:, :-1].astype(np.float64)
    tgt = x[:, 1:]
    mm = m[:, 1:].astype(bool)
    lg = lg - lg.max(-1, keepdims=True)
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, tgt[..., None], -1)[..., 0]
    return float(nll[mm].mean())


# A pass shorter than this many updates of the slowest sensor is repeated (DESIGN.md).
MIN_SENSOR_UPDATES = 10


def _must_extend(spec: Any, dev: Any, one_pass_s: float) -> bool:
    """Repeat the batches on a GPU, or when one pass spans fewer than ten sensor updates."""
    if spec.min_measure_s <= 0 or one_pass_s >= spec.min_measure_s:
        return False
    return dev.type == "cuda" or one_pass_s < MIN_SENSOR_UPDATES * spec.sensor_update_s


def run_inference(
    fwd: Forward,
    ids: list[list[int]],
    labels: list[int] | None,
    pad_id: int,
    spec: Any,
    task: str,
    num_labels: int,
    emit: Emitter,
    cancel: CancelToken,
) -> InferOutcome:
    lm = task == "causal-lm"
    order = list(batches(len(ids), spec.batch_size))
    if not order:
        raise ValueError("no evaluation data")
    if spec.warmup_batches:
        emit.phase("warmup")
        for k in range(spec.warmup_batches):
            if cancel.cancelled:
                break
            b = order[k % len(order)]
            fwd(*collate([ids[i] for i in b], pad_id), lm)
    n_batches = spec.infer_batches or len(order)
    emit.phase("infer")
    devmod.reset_peak(fwd.dev)
    reset = getattr(fwd.loaded.model, "reset_stats", None)
    if reset is not None:
        reset()  # e.g. early exit's histogram: count the measured phase only
    lat: list[float] = []
    logits: list[np.ndarray] = []
    seen: list[int] = []
    losses: list[tuple[float, int]] = []
    items = tokens = 0
    t0 = time.perf_counter()
    k = 0
    extend = False
    while not cancel.cancelled:
        if k == n_batches:
            extend = _must_extend(spec, fwd.dev, time.perf_counter() - t0)
            if extend:
                emit.log(
                    f"one pass took {time.perf_counter() - t0:.2f} s: repeating the batches until "
                    f"the measured phase lasts {spec.min_measure_s:g} s (accuracy is scored once "
                    "per item)"
                )
        if k >= n_batches and not (extend and time.perf_counter() - t0 < spec.min_measure_s):
            break
        b = order[k % len(order)]
        x, m = collate([ids[i] for i in b], pad_id)
        t = time.perf_counter()
        lg, loss = fwd(x, m, lm)
        lat.append(time.perf_counter() - t)
        items += len(b)
        tokens += int(m.sum())
        if lm:
            if k < max(n_batches, len(order)):
                losses.append((loss, int(m[:, 1:].sum())))
        elif k < len(order):  # score each eval item once even when batches repeat
            logits.append(lg)
            seen.extend(int(i) for i in b)
        k += 1
        emit.step(
            force=k == n_batches, batch=k, batches=max(n_batches, k), items=items, tokens=tokens
        )
    devmod.sync(fwd.dev)
    elapsed = time.perf_counter() - t0
    emit.phase(END_PHASE)  # the measured work ends here; scoring below is not charged to it
    metrics: dict[str, Any] = {}
    all_logits = None
    if lm and losses:
        loss = float(np.average([l_ for l_, _ in losses], weights=[w for _, w in losses]))
        metrics = {"eval_loss": loss, "perplexity": math.exp(loss) if loss < 50 else float("inf")}
    elif logits:
        all_logits = np.concatenate(logits)
        if labels is not None:
            metrics = classification_metrics(
                all_logits, np.array([labels[i] for i in seen]), num_labels
            )
        metrics["scored_items"] = len(seen)
    return InferOutcome(
        metrics, items, tokens, len(lat), lat, elapsed, cancel.cancelled, all_logits, extend
    )
