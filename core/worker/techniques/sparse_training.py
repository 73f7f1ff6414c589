"""The worker half of ``sparse-training``: gradual magnitude pruning during the session's training.
Declared (name, parameters, schedule, where it applies) in core/techniques/sparse_training.py.

``apply`` only registers a :class:`GradualPruning` hook on ``ctx.after_update``; the training
loop calls it after every optimizer step, and at the schedule's pruning steps it raises the
masks (``torch.nn.utils.prune``) to the sparsity the cubic schedule asks for. Masks only grow:
a masked weight is zero, so it ranks lowest at every later step. ``finalize`` makes them
permanent (unstructured), or removes the masked neurons and heads for real with the structured
pruning's slicing (structured), and reports what the weights really hold.

Structured masks cover both sides of a unit: the rows that produce it (and their bias) and the
columns that read it, so a masked unit contributes nothing while training and the layers it is
sliced out of lose nothing but zeros (an int8 converter's per-channel scales stay the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wattlab.core.techniques.base import Applied, Target
from wattlab.core.techniques.sparse_training import (
    SparseTraining,
    pruning_updates,
    scheduled_sparsity,
)
from wattlab.core.worker.techniques.pruning import (
    _has_gated_ffn,
    _keep,
    _prunable,
    bert_ffn_scores,
    bert_head_scores,
    gated_ffn_scores,
    gpt2_ffn_scores,
    gpt2_head_scores,
    sparsity_report,
    structured_prune,
)
from wattlab.core.worker.techniques.registry import Implementation, implements

BERT_LIKE = ("bert", "roberta", "electra")


@dataclass
class _Units:
    """One layer's prunable units (its FFN neurons, or its attention heads): their importance
    now, how many features each owns, the layers whose output features they are (module, the
    weight's output axis, how many fused copies: 3 for GPT-2's Q/K/V) and the layers that read
    them (module, the weight's input axis)."""

    key: str
    scores: Any
    width: int
    outputs: list[tuple[Any, int, int]]
    inputs: list[tuple[Any, int]]


def _layout(model: Any) -> tuple[str, list[Any]]:
    """Which structured layout the model has, and its transformer layers."""
    mt = getattr(model.config, "model_type", None)
    if mt in BERT_LIKE and hasattr(model, "base_model"):
        return "bert", list(model.base_model.encoder.layer)
    if mt == "gpt2":
        return "gpt2", list(model.transformer.h)
    if _has_gated_ffn(model):
        return "gated", list(model.model.layers)
    raise ValueError(f"structured sparse training does not know the layout of {mt!r} models")


def _bert_units(i: int, layer: Any, heads: bool) -> list[_Units]:
    ffn = _Units(
        f"{i}.ffn",
        bert_ffn_scores(layer),
        1,
        [(layer.intermediate.dense, 0, 1)],
        [(layer.output.dense, 1)],
    )
    if not heads:
        return [ffn]
    sa = layer.attention.self
    head = _Units(
        f"{i}.heads",
        bert_head_scores(layer),
        sa.attention_head_size,
        [(sa.query, 0, 1), (sa.key, 0, 1), (sa.value, 0, 1)],
        [(layer.attention.output.dense, 1)],
    )
    return [ffn, head]


def _gpt2_units(i: int, block: Any, heads: bool) -> list[_Units]:
    # Conv1D weights are (in, out): the output axis is 1.
    ffn = _Units(
        f"{i}.ffn", gpt2_ffn_scores(block), 1, [(block.mlp.c_fc, 1, 1)], [(block.mlp.c_proj, 0)]
    )
    if not heads:
        return [ffn]
    at = block.attn
    head = _Units(
        f"{i}.heads", gpt2_head_scores(block), at.head_dim, [(at.c_attn, 1, 3)], [(at.c_proj, 0)]
    )
    return [ffn, head]


def _gated_units(i: int, layer: Any) -> list[_Units]:
    mlp = layer.mlp
    return [
        _Units(
            f"{i}.ffn",
            gated_ffn_scores(layer),
            1,
            [(mlp.gate_proj, 0, 1), (mlp.up_proj, 0, 1)],
            [(mlp.down_proj, 1)],
        )
    ]


def structured_units(model: Any, heads: bool) -> list[_Units]:
    """Every layer's FFN neurons (and heads, except in grouped-query decoders, whose heads the
    structured pruning keeps), scored from the weights as they are now."""
    import torch

    kind, layers = _layout(model)
    out: list[_Units] = []
    with torch.no_grad():
        for i, layer in enumerate(layers):
            if kind == "bert":
                out += _bert_units(i, layer, heads)
            elif kind == "gpt2":
                out += _gpt2_units(i, layer, heads)
            else:
                out += _gated_units(i, layer)
    return out


def structure_counts(model: Any) -> dict[str, int]:
    """FFN neurons and attention heads the model really has (from its layers' shapes)."""
    kind, layers = _layout(model)
    if kind == "bert":
        ffn = sum(int(x.intermediate.dense.weight.shape[0]) for x in layers)
        heads = sum(int(x.attention.self.num_attention_heads) for x in layers)
    elif kind == "gpt2":
        ffn = sum(int(x.mlp.c_fc.weight.shape[1]) for x in layers)
        heads = sum(int(x.attn.num_heads) for x in layers)
    else:
        ffn = sum(int(x.mlp.gate_proj.weight.shape[0]) for x in layers)
        heads = int(model.config.num_attention_heads) * len(layers)  # kept: never pruned
    return {"ffn_neurons": ffn, "heads": heads}


def _feature_mask(mask: Any, axis: int, weight: Any) -> Any:
    """A per-feature 0/1 vector laid along ``axis`` of ``weight``, as a full-shape mask."""
    shape = [1] * weight.dim()
    shape[axis] = -1
    return mask.view(shape).expand_as(weight).to(weight.dtype).contiguous()


def _mask_units(units: _Units, keep: Any) -> None:
    """Mask (``prune.custom_from_mask``) every unit not in ``keep``, on both sides."""
    import torch
    import torch.nn.utils.prune as prune

    unit = torch.zeros(units.scores.numel(), device=units.scores.device)
    unit[keep] = 1.0
    feat = unit.repeat_interleave(units.width)
    for mod, axis, copies in units.outputs:
        fm = feat.repeat(copies)
        prune.custom_from_mask(mod, "weight", _feature_mask(fm, axis, mod.weight))
        if getattr(mod, "bias", None) is not None:
            prune.custom_from_mask(mod, "bias", fm.to(mod.bias.dtype))
    for mod, axis in units.inputs:
        prune.custom_from_mask(mod, "weight", _feature_mask(feat, axis, mod.weight))


def _refresh_masked(model: Any) -> None:
    """Recompute every masked tensor from its ``*_orig`` and mask now, as the forward pre-hook
    would: after an optimizer step the module's attribute still holds the previous values."""
    import torch
    import torch.nn.utils.prune as prune

    with torch.no_grad():
        for m in model.modules():
            for hook in list(m._forward_pre_hooks.values()):  # noqa: SLF001 - prune's own hooks
                if isinstance(hook, prune.BasePruningMethod):
                    setattr(m, hook._tensor_name, hook.apply_mask(m))  # noqa: SLF001


def _masked_count(layers: list[Any]) -> int:
    return sum(int((m.weight_mask == 0).sum()) for m in layers if hasattr(m, "weight_mask"))


def prune_unstructured_to(model: Any, sparsity: float) -> None:
    """Raise the global magnitude masks of the prunable layers so ``sparsity`` of their weights
    are masked: exactly round(sparsity x weights), the smallest of those not masked yet."""
    import torch
    import torch.nn.utils.prune as prune

    layers = [m for _, m in _prunable(model)]
    total = sum(m.weight.numel() for m in layers)
    more = int(round(sparsity * total)) - _masked_count(layers)
    if more <= 0:
        return
    _refresh_masked(model)
    with torch.no_grad():
        scores = {(m, "weight"): m.weight.detach().abs() for m in layers}
    prune.global_unstructured(
        list(scores), pruning_method=prune.L1Unstructured, importance_scores=scores, amount=more
    )


def prune_structured_to(model: Any, sparsity: float, heads: bool) -> None:
    """Mask, in every layer, the FFN neurons (and heads) of least importance so that
    ``sparsity`` of them are masked (the count the structured pruning removes for it)."""
    _refresh_masked(model)
    for units in structured_units(model, heads):
        keep = _keep(units.scores, sparsity)
        if int((units.scores != 0).sum()) == keep.numel():
            continue  # already masked to this count: no new mask
        _mask_units(units, keep)


@dataclass
class GradualPruning:
    """The ``after_update`` hook: at each pruning step of the schedule, raise the masks to the
    scheduled sparsity. Keeps what it did (``history``) for the report."""

    loaded: Any  # the session's LoadedModel: its model is read at every step
    params: dict[str, Any]
    total_updates: int | None = None
    steps: list[int] = field(default_factory=list)
    last_update: int = 0
    sparsity: float = 0.0  # the scheduled sparsity the masks were last raised to
    history: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, updates_done: int, total_updates: int) -> None:
        p = self.params
        if self.total_updates != total_updates:  # the first call (or a new training's plan)
            self.total_updates = total_updates
            self.steps = pruning_updates(total_updates, p["start"], p["end"], p["prunes"])
        due = any(self.last_update < s <= updates_done for s in self.steps)
        self.last_update = updates_done
        if not due:
            return
        target = scheduled_sparsity(updates_done, total_updates, p["target"], p["start"], p["end"])
        if target <= self.sparsity:
            return
        if p["method"] == "structured":
            prune_structured_to(self.loaded.model, target, p["heads"])
        else:
            prune_unstructured_to(self.loaded.model, target)
        self.sparsity = target
        self.history.append({"update": updates_done, "sparsity": round(target, 4)})


def _param_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _remove_masks(model: Any) -> None:
    """Make every mask permanent: plain parameters holding the masked values, no *_orig left."""
    import torch.nn.utils.prune as prune

    for m in model.modules():
        for name in ("weight", "bias"):
            if hasattr(m, f"{name}_orig") and hasattr(m, f"{name}_mask"):
                prune.remove(m, name)


@implements
class SparseTrainingImpl(Implementation, SparseTraining):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        model = ctx.loaded.model
        ctx.after_update.append(GradualPruning(ctx.loaded, params))
        details: dict[str, Any] = {"params_before": _param_count(model)}
        if params["method"] == "structured":
            details["structure_before"] = structure_counts(model)
        else:
            details["nonzero_weights_before"] = _nonzero_prunable(model)
        warning = self.warning(Target("train", "", ""), params)
        return Applied(self.name, params, _plan(params), details, [warning] if warning else [])

    def finalize(self, ctx: Any, params: dict[str, Any], applied: Applied) -> None:
        pruner = next(h for h in ctx.after_update if isinstance(h, GradualPruning))
        model = ctx.loaded.model
        _remove_masks(model)
        applied.details["schedule"] = _schedule_report(pruner)
        if params["method"] == "structured":
            _finalize_structured(ctx, params, applied, pruner.sparsity)
        else:
            _finalize_unstructured(model, params, applied)
        applied.details["params_after"] = _param_count(ctx.loaded.model)
        if pruner.sparsity < params["target"]:
            applied.warnings.append(_short_warning(pruner, params["target"]))


def _short_warning(pruner: GradualPruning, target: float) -> str:
    """Said when the training stopped (cancel, early stopping) before the schedule's end."""
    if pruner.total_updates is None:
        return "training ended before its first optimizer step: nothing was pruned"
    return (
        f"training ended before the schedule's end (update {pruner.last_update} of "
        f"{pruner.total_updates}): sparsity {pruner.sparsity:.1%}, not {target:.0%}"
    )


def _plan(params: dict[str, Any]) -> str:
    what = "FFN neurons" + (" and attention heads" if params["heads"] else "")
    unit = "of weights (global magnitude)" if params["method"] == "unstructured" else f"of {what}"
    return (
        f"gradual {params['method']} pruning to {params['target']:.0%} {unit}, cubic schedule "
        f"from {params['start']:.0%} to {params['end']:.0%} of the optimizer steps "
        f"({params['prunes']} mask updates)"
    )


def _schedule_report(pruner: GradualPruning) -> dict[str, Any]:
    return {
        "total_updates": pruner.total_updates,
        "pruning_updates": pruner.steps,
        "history": pruner.history,
        "sparsity_scheduled": round(pruner.sparsity, 4),
    }


def _nonzero_prunable(model: Any) -> int:
    return sum(int((m.weight != 0).sum()) for _, m in _prunable(model))


def _finalize_unstructured(model: Any, params: dict[str, Any], applied: Applied) -> None:
    rep = sparsity_report(model)
    applied.details.update(rep)
    applied.details["nonzero_weights_after"] = _nonzero_prunable(model)
    applied.description = (
        f"{_plan(params)}: {rep['sparsity']:.1%} of prunable weights are zero; dense size "
        f"unchanged ({rep['dense_bytes'] / 1e6:.2f} MB), would be "
        f"~{rep['csr_bytes_estimate'] / 1e6:.2f} MB in CSR"
    )


def _finalize_structured(
    ctx: Any, params: dict[str, Any], applied: Applied, sparsity: float
) -> None:
    """Slice the masked neurons and heads out (they are the zero-importance ones, so the
    structured pruning at the same fraction removes exactly them)."""
    model = ctx.loaded.model
    before = applied.details["structure_before"]
    removed = structured_prune(model, sparsity, params["heads"]) if sparsity > 0 else {}
    model.to(ctx.dev)
    after = structure_counts(model)
    ctx.loaded.num_params = _param_count(model)
    ctx.loaded.size_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    ffn = 1 - after["ffn_neurons"] / before["ffn_neurons"]
    heads = 1 - after["heads"] / before["heads"] if before["heads"] else 0.0
    applied.details.update(
        {
            "structure_after": after,
            "removed": removed,
            "ffn_sparsity": round(ffn, 4),
            "head_sparsity": round(heads, 4),
            "weights_bytes_after": ctx.loaded.size_bytes,
        }
    )
    applied.description = (
        f"{_plan(params)}: {before['ffn_neurons'] - after['ffn_neurons']} of "
        f"{before['ffn_neurons']} FFN neurons ({ffn:.1%}) and {before['heads'] - after['heads']}"
        f" of {before['heads']} heads removed; parameters {applied.details['params_before']:,} "
        f"-> {ctx.loaded.num_params:,}"
    )
