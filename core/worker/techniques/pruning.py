"""The worker half of ``pruning``: applies it to the loaded model.
Declared (name, parameters, where it applies) in core/techniques/pruning.py."""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Applied, Target
from wattlab.core.techniques.pruning import Pruning
from wattlab.core.worker.techniques.registry import Implementation, implements

EXCLUDE = ("classifier", "lm_head", "score", "pooler", "embed", "wte", "wpe")


def _weight_layer_types() -> tuple[type, ...]:
    """torch's Linear, and transformers' Conv1D (GPT-2's linear layers) when it is installed."""
    import torch

    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        return (torch.nn.Linear,)
    return (torch.nn.Linear, Conv1D)


def _prunable(model: Any) -> list[tuple[str, Any]]:
    types = _weight_layer_types()
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, types) and not any(x in n for x in EXCLUDE)
    ]


def sparsity_report(model: Any) -> dict[str, Any]:
    layers = {}
    total = zeros = 0
    for n, m in _prunable(model):
        w = m.weight.detach()
        z = int((w == 0).sum())
        layers[n] = round(z / w.numel(), 4)
        total += w.numel()
        zeros += z
    nnz = total - zeros
    return {
        "sparsity": zeros / total if total else 0.0,
        "per_layer": layers,
        "dense_bytes": total * 4,
        # CSR with fp32 values and int32 column indices (+ row pointers, small): what the same
        # weights would take in a sparse format. Not what this run stores or computes with.
        "csr_bytes_estimate": nnz * 8,
    }


def _slice(mod: Any, out_idx: Any = None, in_idx: Any = None) -> Any:
    """A copy of a Linear, or of transformers' Conv1D (weight stored as (in, out)), keeping only
    the output features ``out_idx`` and input features ``in_idx``; dtype and device are kept
    (transformers' ``prune_linear_layer`` would return fp32)."""
    import torch

    conv = not isinstance(mod, torch.nn.Linear)
    out_dim, in_dim = (1, 0) if conv else (0, 1)
    w = mod.weight.data
    if out_idx is not None:
        w = w.index_select(out_dim, torch.as_tensor(out_idx, device=w.device))
    if in_idx is not None:
        w = w.index_select(in_dim, torch.as_tensor(in_idx, device=w.device))
    n_in, n_out = w.shape[in_dim], w.shape[out_dim]
    new: torch.nn.Module
    if conv:
        from transformers.pytorch_utils import Conv1D

        new = Conv1D(n_out, n_in).to(w.device, w.dtype)
    else:
        new = torch.nn.Linear(
            n_in, n_out, bias=mod.bias is not None, device=w.device, dtype=w.dtype
        )
    new.weight.data.copy_(w)
    if mod.bias is not None:
        new.bias.data.copy_(mod.bias.data[out_idx] if out_idx is not None else mod.bias.data)
    return new


def _keep(scores: Any, amount: float) -> Any:
    import torch

    n = scores.numel()
    k = max(1, n - int(round(n * amount)))
    return torch.sort(torch.topk(scores, k).indices).values


def _head_columns(keep_h: Any, head_dim: int) -> Any:
    """The feature indices of the kept heads (each head owns ``head_dim`` consecutive ones)."""
    import torch

    return (keep_h[:, None] * head_dim + torch.arange(head_dim)).flatten()


def bert_ffn_scores(layer: Any) -> Any:
    """Each FFN neuron's importance: the L2 norms of its in and out weights, multiplied."""
    return layer.intermediate.dense.weight.norm(dim=1) * layer.output.dense.weight.norm(dim=0)


def _prune_bert_ffn(layer: Any, amount: float) -> int:
    """Keep the FFN neurons whose in and out weights matter most; returns how many went."""
    inter, out = layer.intermediate.dense, layer.output.dense
    keep = _keep(bert_ffn_scores(layer), amount)
    layer.intermediate.dense = _slice(inter, out_idx=keep)
    layer.output.dense = _slice(out, in_idx=keep)
    return int(inter.out_features - keep.numel())


def bert_head_scores(layer: Any) -> Any:
    """Each attention head's importance: the L2 norms of its Q/K/V and output weights."""
    import torch

    sa, so = layer.attention.self, layer.attention.output
    hd, nh = sa.attention_head_size, sa.num_attention_heads
    w = torch.stack([sa.query.weight, sa.key.weight, sa.value.weight]).view(3, nh, hd, -1)
    return (
        w.pow(2).sum(dim=(0, 2, 3)).sqrt()
        * so.dense.weight.view(so.dense.out_features, nh, hd).pow(2).sum(dim=(0, 2)).sqrt()
    )


def _prune_bert_heads(layer: Any, amount: float) -> int:
    """Keep the attention heads with the largest Q/K/V and output weights; returns how many
    went (the layer's head count and size are updated to match)."""
    sa, so = layer.attention.self, layer.attention.output
    hd = sa.attention_head_size
    nh = sa.num_attention_heads
    keep_h = _keep(bert_head_scores(layer), amount)
    idx = _head_columns(keep_h, hd)
    sa.query = _slice(sa.query, out_idx=idx)
    sa.key = _slice(sa.key, out_idx=idx)
    sa.value = _slice(sa.value, out_idx=idx)
    so.dense = _slice(so.dense, in_idx=idx)
    sa.num_attention_heads = keep_h.numel()
    sa.all_head_size = idx.numel()
    return int(nh - keep_h.numel())


def gpt2_ffn_scores(block: Any) -> Any:
    """As for BERT; GPT-2's Conv1D weights are (in, out)."""
    return block.mlp.c_fc.weight.norm(dim=0) * block.mlp.c_proj.weight.norm(dim=1)


def _prune_gpt2_ffn(block: Any, amount: float) -> int:
    fc, proj = block.mlp.c_fc, block.mlp.c_proj  # Conv1D: weight is (in, out)
    keep = _keep(gpt2_ffn_scores(block), amount)
    block.mlp.c_fc = _slice(fc, out_idx=keep)
    block.mlp.c_proj = _slice(proj, in_idx=keep)
    return int(fc.weight.shape[1] - keep.numel())


def gpt2_head_scores(block: Any) -> Any:
    """As for BERT, on GPT-2's fused Q/K/V projection (three ``split_size`` column blocks)."""
    at = block.attn
    nh, hd = at.num_heads, at.head_dim
    qkv = at.c_attn.weight.view(-1, 3, nh, hd)
    return (
        qkv.pow(2).sum(dim=(0, 1, 3)).sqrt()
        * at.c_proj.weight.view(nh, hd, -1).pow(2).sum(dim=(1, 2)).sqrt()
    )


def _prune_gpt2_heads(block: Any, amount: float) -> int:
    """As for BERT, on GPT-2's fused Q/K/V projection (three ``split_size`` column blocks)."""
    import torch

    at = block.attn
    nh, hd, e = at.num_heads, at.head_dim, at.split_size
    keep_h = _keep(gpt2_head_scores(block), amount)
    idx = _head_columns(keep_h, hd)
    at.c_attn = _slice(at.c_attn, out_idx=torch.cat([idx, idx + e, idx + 2 * e]))
    at.c_proj = _slice(at.c_proj, in_idx=idx)
    at.num_heads = keep_h.numel()
    at.split_size = idx.numel()
    return int(nh - keep_h.numel())


def gated_ffn_scores(layer: Any) -> Any:
    """Llama, Mistral, Qwen2: a neuron's gate, up and down weights' L2 norms, multiplied."""
    mlp = layer.mlp
    return (
        mlp.gate_proj.weight.norm(dim=1)
        * mlp.up_proj.weight.norm(dim=1)
        * mlp.down_proj.weight.norm(dim=0)
    )


def _prune_gated_ffn(layer: Any, amount: float) -> int:
    """Llama, Mistral, Qwen2: gate, up and down projections lose the same neurons."""
    mlp = layer.mlp
    keep = _keep(gated_ffn_scores(layer), amount)
    removed = int(mlp.gate_proj.out_features - keep.numel())
    mlp.gate_proj = _slice(mlp.gate_proj, out_idx=keep)
    mlp.up_proj = _slice(mlp.up_proj, out_idx=keep)
    mlp.down_proj = _slice(mlp.down_proj, in_idx=keep)
    return removed


def _has_gated_ffn(model: Any) -> bool:
    return (
        hasattr(model, "model")
        and hasattr(model.model, "layers")
        and hasattr(model.model.layers[0], "mlp")
        and hasattr(model.model.layers[0].mlp, "gate_proj")
    )


def structured_prune(model: Any, amount: float, heads: bool = True) -> dict[str, Any]:
    """Remove ``amount`` of FFN neurons (and of heads) per layer; returns what was removed."""
    mt = model.config.model_type
    removed: dict[str, Any] = {"ffn_neurons": 0, "heads": 0, "layers": 0}
    if mt in ("bert", "roberta", "distilbert", "electra") and hasattr(model, "base_model"):
        for layer in model.base_model.encoder.layer:
            removed["ffn_neurons"] += _prune_bert_ffn(layer, amount)
            if heads:
                removed["heads"] += _prune_bert_heads(layer, amount)
            removed["layers"] += 1
    elif mt == "gpt2":
        for block in model.transformer.h:
            removed["ffn_neurons"] += _prune_gpt2_ffn(block, amount)
            if heads:
                removed["heads"] += _prune_gpt2_heads(block, amount)
            removed["layers"] += 1
    elif _has_gated_ffn(model):
        for layer in model.model.layers:
            removed["ffn_neurons"] += _prune_gated_ffn(layer, amount)
            removed["layers"] += 1
        removed["note"] = "attention heads kept (grouped-query attention is not pruned)"
    else:
        raise ValueError(f"structured pruning does not know the layout of {mt!r} models")
    return removed


def _param_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@implements
class PruningImpl(Implementation, Pruning):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        import torch
        import torch.nn.utils.prune as prune

        model = ctx.loaded.model
        method, amount = params["method"], params["amount"]
        if method == "lottery":
            ctx.lottery = params  # the session runs the rounds instead of one training
            return Applied(
                self.name,
                params,
                f"lottery ticket: {params['rounds']} rounds of "
                f"prune-and-rewind to {amount:.0%} sparsity",
                warnings=[self.warning(Target("", "", ""), params) or ""],
            )
        before = _param_bytes(model)
        if method == "structured":
            removed = structured_prune(model, amount, params["heads"])
            model.to(ctx.dev)
            after = _param_bytes(model)
            ctx.loaded.num_params = sum(p.numel() for p in model.parameters())
            ctx.loaded.size_bytes = after
            return Applied(
                self.name,
                params,
                f"structured: removed {removed['ffn_neurons']} FFN neurons and "
                f"{removed['heads']} attention heads over {removed['layers']} layers "
                f"(weights {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB)",
                {"removed": removed, "weights_bytes_before": before, "weights_bytes_after": after},
            )
        layers = _prunable(model)
        if method == "semi-structured":
            from torch.sparse import to_sparse_semi_structured

            converted = 0
            for _, m in layers:
                w = m.weight.detach()
                if w.dim() != 2 or w.shape[0] % 64 or w.shape[1] % 64:
                    continue  # the sparse kernels need multiples of 64
                groups = w.abs().reshape(-1, 4)
                keep = torch.zeros_like(groups, dtype=torch.bool)
                keep.scatter_(1, groups.topk(2, dim=1).indices, True)
                dense = (w.reshape(-1, 4) * keep).reshape_as(w).half().to(ctx.dev)
                m.weight = torch.nn.Parameter(to_sparse_semi_structured(dense), requires_grad=False)
                converted += 1
            return Applied(
                self.name,
                params,
                f"2:4 semi-structured sparsity on {converted} "
                "Linear layers (fp16 sparse tensor cores)",
                {"layers_converted": converted},
            )
        targets = [(m, "weight") for _, m in layers]
        if params["scope"] == "global":
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
        else:
            for m, p in targets:
                prune.l1_unstructured(m, p, amount=amount)
        applied = Applied(self.name, params, "", {})
        if ctx.spec.mode != "train":
            self.finalize(ctx, params, applied)
        else:
            applied.description = (
                f"unstructured magnitude pruning ({params['scope']}) to "
                f"{amount:.0%}, masks kept during training"
            )
        applied.warnings.append(self.warning(Target("", "", ""), params) or "")
        return applied

    def finalize(self, ctx: Any, params: dict[str, Any], applied: Applied) -> None:
        import torch.nn.utils.prune as prune

        if params["method"] != "unstructured":
            return
        model = ctx.loaded.model
        for _, m in _prunable(model):
            if prune.is_pruned(m) and hasattr(m, "weight_orig"):
                prune.remove(m, "weight")  # permanent: no weight_orig / weight_mask left
        rep = sparsity_report(model)
        applied.details.update(rep)
        applied.description = (
            f"unstructured magnitude pruning ({params['scope']}): {rep['sparsity']:.1%} of "
            f"prunable weights are zero; dense size unchanged ({rep['dense_bytes'] / 1e6:.2f} MB)"
            f", would be ~{rep['csr_bytes_estimate'] / 1e6:.2f} MB in CSR"
        )
