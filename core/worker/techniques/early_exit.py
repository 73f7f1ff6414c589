"""The worker half of ``early-exit``: applies it to the loaded model.
Declared (name, parameters, where it applies) in core/techniques/early_exit.py."""

from __future__ import annotations

import functools
import hashlib
import operator
from typing import Any

import numpy as np

from wattlab.core.paths import exit_heads_dir
from wattlab.core.techniques.base import Applied
from wattlab.core.techniques.early_exit import EarlyExit
from wattlab.core.worker.techniques.registry import Implementation, implements

ENCODERS = ("bert", "roberta", "electra", "xlm-roberta", "camembert")
CURVE = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 0.999)


def _confidence(probs: Any, criterion: str) -> Any:
    import torch

    if criterion == "maxprob":
        return probs.max(-1).values
    ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
    return 1.0 - ent / np.log(probs.shape[-1])  # 1 = certain, 0 = uniform


class EarlyExitModel:
    """Wraps a BERT-style classifier; callable like the model (returns an object with .logits)."""

    def __init__(self, model: Any, heads: Any, threshold: float, criterion: str) -> None:
        self.model = model
        self.heads = heads  # torch.nn.ModuleList, one per layer except the last
        self.threshold = threshold
        self.criterion = criterion
        self.n_layers = len(model.base_model.encoder.layer)
        self.reset_stats()
        self.config = model.config

    def reset_stats(self) -> None:
        self.exit_counts = np.zeros(self.n_layers, dtype=np.int64)

    def stats(self) -> dict[str, Any]:
        n = int(self.exit_counts.sum())
        mean = float((self.exit_counts * np.arange(1, self.n_layers + 1)).sum() / n) if n else None
        return {
            "exit_histogram": self.exit_counts.tolist(),
            "items": n,
            "mean_layers": mean,
            "layers": self.n_layers,
            "theoretical_speedup": self.n_layers / mean if mean else None,
        }

    def _layer_logits(self, i: int, h: Any) -> Any:
        if i == self.n_layers - 1:
            m = self.model
            return (
                m.classifier(m.dropout(m.base_model.pooler(h)))
                if m.base_model.pooler is not None
                else m.classifier(h[:, 0])
            )
        return self.heads[i](h[:, 0])

    def all_layer_logits(self, input_ids: Any, attention_mask: Any) -> list[Any]:
        """Logits at every layer for every sample (calibration, curves, head training)."""
        bert = self.model.base_model
        h = bert.embeddings(input_ids=input_ids)
        mask = bert._create_attention_masks(attention_mask, None, h, None, None)[0]
        out = []
        for i, layer in enumerate(bert.encoder.layer):
            h = layer(h, mask)
            out.append(self._layer_logits(i, h))
        return out

    def to(self, dev: Any) -> EarlyExitModel:
        self.model.to(dev)
        self.heads.to(dev)
        return self

    def eval(self) -> EarlyExitModel:
        self.model.eval()
        self.heads.eval()
        return self

    def parameters(self):  # noqa: ANN201 - like nn.Module
        yield from self.model.parameters()
        yield from self.heads.parameters()

    def __call__(self, input_ids: Any, attention_mask: Any, **_: Any) -> Any:
        import torch

        bert = self.model.base_model
        h = bert.embeddings(input_ids=input_ids)
        n = input_ids.shape[0]
        logits_out: Any = None
        active = torch.arange(n, device=input_ids.device)
        am = attention_mask
        for i, layer in enumerate(bert.encoder.layer):
            mask = bert._create_attention_masks(am, None, h, None, None)[0]
            h = layer(h, mask)
            lg = self._layer_logits(i, h)
            if logits_out is None:
                logits_out = torch.zeros(n, lg.shape[-1], dtype=lg.dtype, device=lg.device)
            if i == self.n_layers - 1:
                logits_out[active] = lg
                self.exit_counts[i] += int(active.numel())
                break
            done = _confidence(torch.softmax(lg.float(), -1), self.criterion) >= self.threshold
            if done.any():
                logits_out[active[done]] = lg[done].to(logits_out.dtype)
                self.exit_counts[i] += int(done.sum())
                keep = ~done
                active, h, am = active[keep], h[keep], am[keep]
                if active.numel() == 0:
                    break
        return type("Out", (), {"logits": logits_out})()


def _heads_key(model: Any) -> str:
    """The cache key of a backbone's exit heads: a digest of its weights (the first 4 KiB of
    each), so heads fitted on another backbone are never reused."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(_digest_bytes(v))
    return h.hexdigest()[:16]


def _digest_bytes(value: Any) -> bytes:
    """Bytes standing for one state_dict entry: a tensor's values (an int8 one dequantized),
    the parts of PyTorch's packed int8 parameters (a tuple), or the repr of anything else (a
    dtype), so a quantized backbone has a key too."""
    import torch

    if isinstance(value, (tuple, list)):
        return b"".join(_digest_bytes(v) for v in value)
    if isinstance(value, torch.Tensor):
        t = value.dequantize() if value.is_quantized else value
        return bytes(t.detach().float().cpu().numpy().tobytes()[:4096])
    return repr(value).encode()


def train_heads(
    wrapper: EarlyExitModel,
    ids: list[list[int]],
    labels: list[int],
    pad_id: int,
    dev: Any,
    epochs: int,
    batch_size: int,
    seed: int,
) -> list[float]:
    """Backbone frozen; the sum of the exit heads' cross-entropies. Returns loss per epoch."""
    import torch

    from wattlab.core.worker.batching import batches, collate

    torch.manual_seed(seed)
    for p in wrapper.model.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(wrapper.heads.parameters(), lr=2e-3)
    rng = np.random.default_rng(seed)
    y_all = np.array(labels)
    losses = []
    for _ in range(epochs):
        tot, nb = 0.0, 0
        wrapper.model.eval()
        wrapper.heads.train()
        for b in batches(len(ids), batch_size, rng.permutation(len(ids))):
            x, m = collate([ids[i] for i in b], pad_id)
            y = torch.from_numpy(y_all[b]).to(dev)
            with torch.no_grad():
                bert = wrapper.model.base_model
                h = bert.embeddings(input_ids=torch.from_numpy(x).to(dev))
                mask = bert._create_attention_masks(
                    torch.from_numpy(m).to(dev), None, h, None, None
                )[0]
                states = []
                for layer in bert.encoder.layer[:-1]:
                    h = layer(h, mask)
                    states.append(h[:, 0])
            # Summed left to right (as sum() would, without its int start): one backward pass.
            loss = functools.reduce(
                operator.add,
                [
                    torch.nn.functional.cross_entropy(head(s), y)
                    for head, s in zip(wrapper.heads, states, strict=True)
                ],
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach())
            nb += 1
        losses.append(tot / max(1, nb))
    wrapper.heads.eval()
    return losses


def per_layer_probs(
    wrapper: EarlyExitModel, ids: list[list[int]], pad_id: int, dev: Any
) -> np.ndarray:
    """(layers, items, classes) softmax outputs of every exit."""
    import torch

    from wattlab.core.worker.batching import batches, collate

    outs: list[list[np.ndarray]] = [[] for _ in range(wrapper.n_layers)]
    with torch.inference_mode():
        for b in batches(len(ids), 64):
            x, m = collate([ids[i] for i in b], pad_id)
            for i, lg in enumerate(
                wrapper.all_layer_logits(torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev))
            ):
                outs[i].append(torch.softmax(lg.float(), -1).cpu().numpy())
    return np.stack([np.concatenate(o) for o in outs])


def simulate(
    probs: np.ndarray, y: np.ndarray, threshold: float, criterion: str
) -> tuple[float, float]:
    """(accuracy, mean layers run) if exiting at ``threshold``; matches EarlyExitModel."""
    import torch

    layers, n, _ = probs.shape
    conf = _confidence(torch.from_numpy(probs), criterion).numpy()  # (layers, n)
    passed = conf >= threshold
    passed[-1] = True
    exit_at = passed.argmax(0)
    pred = probs[exit_at, np.arange(n)].argmax(-1)
    return float((pred == y).mean()), float((exit_at + 1).mean())


def calibrate(
    probs: np.ndarray, y: np.ndarray, criterion: str, tolerance: float
) -> tuple[float, list[dict[str, float]]]:
    full_acc = float((probs[-1].argmax(-1) == y).mean())
    grid = sorted(set(np.round(np.linspace(0.3, 0.999, 71), 4).tolist() + list(CURVE)))
    best_t, best_layers = 1.0, float(probs.shape[0])
    table = []
    for t in grid:
        acc, layers = simulate(probs, y, t, criterion)
        table.append({"threshold": t, "accuracy": acc, "mean_layers": layers})
        if acc >= full_acc - tolerance and layers < best_layers:
            best_t, best_layers = t, layers
    return best_t, table


def _attach_heads(ctx: Any, params: dict[str, Any]) -> EarlyExitModel:
    """Wrap the classifier with one fresh exit head after each layer but the last, on its device
    and in its dtype (a model cast to bf16 gets bf16 heads)."""
    import torch

    model = ctx.loaded.model
    n_layers = len(model.base_model.encoder.layer)
    hidden = model.config.hidden_size
    heads = torch.nn.ModuleList(
        torch.nn.Linear(hidden, model.config.num_labels) for _ in range(n_layers - 1)
    )
    dtype = next(model.base_model.embeddings.parameters()).dtype
    heads.to(ctx.dev, dtype)
    return EarlyExitModel(model, heads, params["threshold"], params["criterion"])


def _fit_or_load_heads(
    ctx: Any,
    wrapper: EarlyExitModel,
    params: dict[str, Any],
    fit_ids: list[list[int]],
    fit_y: list[int],
) -> dict[str, Any]:
    """Heads trained earlier for the same weights and epochs are loaded from the cache; others
    are trained now (backbone frozen) and cached. Returns what happened, for the details."""
    import time

    from safetensors.torch import load_file, save_file

    key = f"{_heads_key(wrapper.model)}-{params['head_epochs']}"
    cache = exit_heads_dir() / f"{key}.safetensors"
    details: dict[str, Any] = {"heads_cache": str(cache)}
    if cache.is_file():
        wrapper.heads.load_state_dict(load_file(str(cache), device=str(ctx.dev)))
        details["heads"] = "loaded from cache"
        return details
    t0 = time.perf_counter()
    losses = train_heads(
        wrapper, fit_ids, fit_y, ctx.pad_id, ctx.dev, params["head_epochs"], 32, ctx.spec.seed
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in wrapper.heads.state_dict().items()}, str(tmp))
    tmp.replace(cache)
    details.update(
        {
            "heads": "trained (backbone frozen)",
            "head_losses": losses,
            "head_training_s": time.perf_counter() - t0,
        }
    )
    return details


def _calibration(
    ctx: Any,
    wrapper: EarlyExitModel,
    params: dict[str, Any],
    hold_ids: list[list[int]],
    hold_y: np.ndarray,
) -> dict[str, Any]:
    """Pick the threshold on held-out training items (never eval) that keeps accuracy within
    the tolerance of the full model's; used when ``calibrate`` is set, reported either way."""
    hold_probs = per_layer_probs(wrapper, hold_ids, ctx.pad_id, ctx.dev)
    chosen_t, table = calibrate(hold_probs, hold_y, params["criterion"], params["tolerance"])
    if params["calibrate"]:
        wrapper.threshold = chosen_t
    return {
        "split": f"held-out {len(hold_ids)} training items (never eval)",
        "full_model_accuracy": float((hold_probs[-1].argmax(-1) == hold_y).mean()),
        "chosen_threshold": chosen_t,
        "table": table,
    }


def _eval_curve(ctx: Any, wrapper: EarlyExitModel, criterion: str) -> list[dict[str, float]] | None:
    """Accuracy and mean layers at each threshold of CURVE on the eval split: reported beside
    the measured result, never used to choose anything. None without labelled eval data."""
    ev_ids, ev_y = ctx.eval_ids, ctx.eval_labels
    if ev_ids is None or ev_y is None:
        return None
    probs = per_layer_probs(wrapper, ev_ids, ctx.pad_id, ctx.dev)
    curve = []
    for t in CURVE:
        acc, layers = simulate(probs, np.array(ev_y), t, criterion)
        curve.append({"threshold": t, "accuracy": acc, "mean_layers": layers})
    return curve


@implements
class EarlyExitImpl(Implementation, EarlyExit):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        wrapper = _attach_heads(ctx, params)
        ids, labels = ctx.calib_ids, ctx.calib_labels
        if labels is None:
            raise ValueError("early exit needs labelled training data")
        k = max(1, len(ids) // 10)
        details = _fit_or_load_heads(ctx, wrapper, params, ids[:-k], labels[:-k])
        details["calibration"] = _calibration(ctx, wrapper, params, ids[-k:], np.array(labels[-k:]))
        curve = _eval_curve(ctx, wrapper, params["criterion"])
        if curve is not None:
            details["curve"] = curve
        ctx.loaded.model = wrapper
        ctx.early_exit = wrapper
        details["threshold_used"] = wrapper.threshold
        return Applied(
            self.name,
            params,
            f"exit heads after each of {wrapper.n_layers - 1} layers, threshold "
            f"{wrapper.threshold:.3f} ({params['criterion']}"
            f"{', calibrated' if params['calibrate'] else ''})",
            details,
        )
