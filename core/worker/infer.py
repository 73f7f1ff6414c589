"""Inference: warm-up batches first (excluded from the measured phase), then the eval set (or N
batches), each batch timed to the device's completion for honest latency percentiles."""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wattlab.core.models.metrics import classification_metrics
from wattlab.core.worker import device as devmod
from wattlab.core.worker.batching import batches, collate
from wattlab.core.worker.events import END_PHASE, CancelToken, Emitter
from wattlab.core.worker.prepared import AutocastFactory, InferSettings, PreparedData


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
    scored_items: list[int] = field(default_factory=list)  # eval index of each logits row

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

    def __init__(self, loaded: Any, dev: Any, autocast: AutocastFactory | None = None) -> None:
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
            with (self.autocast or nullcontext)():
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


def _must_extend(s: InferSettings, dev: Any, one_pass_s: float) -> bool:
    """Repeat the batches on a GPU, or when one pass spans fewer than ten sensor updates."""
    if s.min_measure_s <= 0 or one_pass_s >= s.min_measure_s:
        return False
    return dev.type == "cuda" or one_pass_s < MIN_SENSOR_UPDATES * s.sensor_update_s


@dataclass
class _Tally:
    """What the measured loop collected: per-batch latencies, totals, and what is scored once
    per eval item (classifier logits with their item indices, or LM losses with their weights)."""

    latencies_s: list[float] = field(default_factory=list)
    items: int = 0
    tokens: int = 0
    logits: list[np.ndarray] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    losses: list[tuple[float, int]] = field(default_factory=list)  # (mean loss, target tokens)


def _warm_up(
    fwd: Forward,
    data: PreparedData,
    order: list[np.ndarray],
    s: InferSettings,
    emit: Emitter,
    cancel: CancelToken,
) -> None:
    """Run the warm-up batches (caches, lazy init, clocks) before the measured phase."""
    if not s.warmup_batches:
        return
    emit.phase("warmup")
    lm = not data.classify
    for k in range(s.warmup_batches):
        if cancel.cancelled:
            break
        b = order[k % len(order)]
        fwd(*collate([data.eval_ids[i] for i in b], data.pad_id), lm)


def _start_measured_phase(fwd: Forward, emit: Emitter) -> None:
    emit.phase("infer")
    devmod.reset_peak(fwd.dev)
    reset = getattr(fwd.loaded.model, "reset_stats", None)
    if reset is not None:
        reset()  # e.g. early exit's histogram: count the measured phase only


def _run_batch(fwd: Forward, data: PreparedData, b: np.ndarray, tally: _Tally, score: bool) -> None:
    """Time one batch to the device's completion; keep its output for scoring when ``score``
    (the first pass over the eval items: repeats are timed, never scored twice)."""
    x, m = collate([data.eval_ids[i] for i in b], data.pad_id)
    lm = not data.classify
    t = time.perf_counter()
    lg, loss = fwd(x, m, lm)
    tally.latencies_s.append(time.perf_counter() - t)
    tally.items += len(b)
    tally.tokens += int(m.sum())
    if not score:
        return
    if lm:
        tally.losses.append((loss, int(m[:, 1:].sum())))
    else:
        assert lg is not None, "a classifier's forward returns logits"
        tally.logits.append(lg)
        tally.seen.extend(int(i) for i in b)


def _measured_loop(
    fwd: Forward,
    data: PreparedData,
    order: list[np.ndarray],
    s: InferSettings,
    emit: Emitter,
    cancel: CancelToken,
) -> tuple[_Tally, bool]:
    """The measured batches: ``infer_batches`` (or one pass), repeated when a pass is too short
    for the sensors; returns what was collected and whether the batches were repeated."""
    n_batches = s.infer_batches or len(order)
    tally = _Tally()
    t0 = time.perf_counter()
    k = 0
    extend = False
    while not cancel.cancelled:
        if k == n_batches:
            extend = _must_extend(s, fwd.dev, time.perf_counter() - t0)
            if extend:
                emit.log(
                    f"one pass took {time.perf_counter() - t0:.2f} s: repeating the batches until "
                    f"the measured phase lasts {s.min_measure_s:g} s (accuracy is scored once "
                    "per item)"
                )
        if k >= n_batches and not (extend and time.perf_counter() - t0 < s.min_measure_s):
            break
        # Score each eval item once even when batches repeat (an LM: every batch of the first
        # pass, or of the infer_batches asked for when that is more).
        score = k < (max(n_batches, len(order)) if not data.classify else len(order))
        _run_batch(fwd, data, order[k % len(order)], tally, score)
        k += 1
        emit.step(
            force=k == n_batches,
            batch=k,
            batches=max(n_batches, k),
            items=tally.items,
            tokens=tally.tokens,
        )
    return tally, extend


def _score(tally: _Tally, data: PreparedData) -> tuple[dict[str, Any], np.ndarray | None]:
    """Perplexity (causal LM) or classification metrics over the items scored; the logits too."""
    if not data.classify and tally.losses:
        losses = tally.losses
        loss = float(np.average([l_ for l_, _ in losses], weights=[w for _, w in losses]))
        perplexity = math.exp(loss) if loss < 50 else float("inf")
        return {"eval_loss": loss, "perplexity": perplexity}, None
    if data.classify and tally.logits:
        all_logits = np.concatenate(tally.logits)
        metrics: dict[str, Any] = {}
        if data.eval_labels is not None:
            labels = data.eval_labels
            metrics = classification_metrics(
                all_logits, np.array([labels[i] for i in tally.seen]), data.num_labels
            )
        metrics["scored_items"] = len(tally.seen)
        return metrics, all_logits
    return {}, None


def run_inference(
    fwd: Forward,
    data: PreparedData,
    s: InferSettings,
    emit: Emitter,
    cancel: CancelToken,
) -> InferOutcome:
    """Warm up, run the measured batches over ``data``'s eval split, end the measured phase,
    then score (scoring is not charged to the measured phase)."""
    order = list(batches(len(data.eval_ids), s.batch_size))
    if not order:
        raise ValueError("no evaluation data")
    _warm_up(fwd, data, order, s, emit, cancel)
    _start_measured_phase(fwd, emit)
    t0 = time.perf_counter()
    tally, extended = _measured_loop(fwd, data, order, s, emit, cancel)
    devmod.sync(fwd.dev)
    elapsed = time.perf_counter() - t0
    emit.phase(END_PHASE)  # the measured work ends here; scoring below is not charged to it
    metrics, all_logits = _score(tally, data)
    return InferOutcome(
        metrics,
        tally.items,
        tally.tokens,
        len(tally.latencies_s),
        tally.latencies_s,
        elapsed,
        cancel.cancelled,
        all_logits,
        extended,
        tally.seen,
    )
