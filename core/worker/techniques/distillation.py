"""The worker half of ``distillation``: builds the student from the teacher, swaps it in and
trains it on the teacher's soft targets. Declared (name, parameters, where it applies) in
core/techniques/distillation.py.

The student is built from the teacher's config with fewer layers (a real, smaller model that
``save_pretrained`` writes and loads back as it is), and its weights are copied from the teacher:
embeddings, head, and the evenly spaced layers DistilBERT's recipe takes (6 of 12: 0 2 4 7 9 11).
The teacher stays on the device, frozen and in eval mode, for the loss only.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from wattlab.core.errors import SpecError
from wattlab.core.results import UNTRAINED_HEAD_MARK
from wattlab.core.techniques.base import Applied
from wattlab.core.techniques.distillation import Distillation
from wattlab.core.worker.techniques.registry import Implementation, implements


def layer_count(model: Any) -> int:
    """The teacher's transformer layers, from its config (``num_hidden_layers``, which GPT-2's
    and DistilBERT's configs map onto ``n_layer`` and ``n_layers``)."""
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if not isinstance(n, int) or n < 1:
        mt = getattr(getattr(model, "config", None), "model_type", "this")
        raise SpecError(f"distillation: {mt} models give no layer count (num_hidden_layers)")
    return n


def layer_stack(model: Any) -> str:
    """The dotted name of the one ModuleList holding the model's ``num_hidden_layers`` layers
    (``bert.encoder.layer``, ``transformer.h``, ``model.layers``); refused when there is none
    or more than one (an encoder-decoder), rather than guessing which to cut."""
    import torch

    n = layer_count(model)
    found = [
        name
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n and name
    ]
    if len(found) != 1:
        mt = model.config.model_type
        what = "no" if not found else f"{len(found)}"
        raise SpecError(
            f"distillation: {mt} models have {what} stack(s) of {n} layers; the student is cut "
            "from exactly one (encoder or decoder models, not encoder-decoders)"
        )
    return found[0]


def spaced_layers(n_teacher: int, n_student: int) -> list[int]:
    """Evenly spaced teacher layers, first and last included (DistilBERT: 6 of 12 ->
    0 2 4 7 9 11); a one-layer student takes the first layer, which reads the embeddings."""
    if n_student == 1:
        return [0]
    step = (n_teacher - 1) / (n_student - 1)
    return [int(round(i * step)) for i in range(n_student)]


def student_layers_for(teacher: Any, asked: int) -> int:
    """The student's layer count: ``asked`` (0: half the teacher's), which must be fewer than
    the teacher's; refused with both numbers otherwise."""
    n = layer_count(teacher)
    k = asked or max(1, n // 2)
    if n < 2:
        raise SpecError(f"distillation: the teacher has {n} layer; a student needs fewer than it")
    if k >= n:
        raise SpecError(
            f"distillation: student_layers={k} must be fewer than the teacher's {n} layers "
            f"(use {'1' if n == 2 else f'1 to {n - 1}'})"
        )
    return k


def _student_config(teacher: Any, chosen: list[int]) -> Any:
    """The teacher's config with the chosen layers only (per-layer lists such as Qwen2's
    ``layer_types`` keep the chosen layers' entries)."""
    cfg = copy.deepcopy(teacher.config)
    n = cfg.num_hidden_layers
    cfg.num_hidden_layers = len(chosen)
    types = getattr(cfg, "layer_types", None)
    if isinstance(types, list) and len(types) == n:
        cfg.layer_types = [types[j] for j in chosen]
    return cfg


def _teacher_weights(teacher: Any, stack: str, chosen: list[int], keys: list[str]) -> dict:
    """The teacher's tensors under the student's names: the student's layer ``i`` is the
    teacher's layer ``chosen[i]``; everything outside the stack is taken as it is."""
    src = teacher.state_dict()
    pat = re.compile(rf"^{re.escape(stack)}\.(\d+)\.")
    out = {}
    for key in keys:
        m = pat.match(key)
        name = key if m is None else f"{stack}.{chosen[int(m.group(1))]}.{key[m.end() :]}"
        out[key] = src[name]
    return out


def build_student(teacher: Any, n_student: int) -> tuple[Any, list[int]]:
    """A model of the teacher's class with ``n_student`` layers, initialised from the teacher
    (same dtype and device); returns it and the teacher layers it was initialised from."""
    stack = layer_stack(teacher)
    chosen = spaced_layers(layer_count(teacher), n_student)
    student = type(teacher)(_student_config(teacher, chosen))
    weights = _teacher_weights(teacher, stack, chosen, list(student.state_dict()))
    student.load_state_dict(weights, strict=True)
    p = next(teacher.parameters())
    return student.to(device=p.device, dtype=p.dtype), chosen


def narrow_ffn(student: Any, width: float) -> int:
    """Keep ``width`` of every layer's FFN neurons (the most important by weight norm, as
    structured pruning chooses them) and write the new width into the config, so the student
    saves and loads as it is; returns the width."""
    from wattlab.core.worker.techniques.pruning import structured_prune

    structured_prune(student, 1.0 - width, heads=False)
    base = student.base_model
    if student.config.model_type == "gpt2":
        size = int(base.h[0].mlp.c_fc.weight.shape[1])  # Conv1D: (in, out)
        student.config.n_inner = size
    elif hasattr(base, "encoder"):
        size = int(base.encoder.layer[0].intermediate.dense.out_features)
        student.config.intermediate_size = size
    else:
        size = int(base.layers[0].mlp.gate_proj.out_features)
        student.config.intermediate_size = size
    return size


@dataclass
class DistillationLoss:
    """The student's loss from a batch (the session's LossHook): ``alpha`` x the model's own
    loss (cross-entropy on the labels, or the LM loss) + ``(1 - alpha)`` x T^2 x KL(teacher ||
    student) on temperature-softened outputs; T^2 keeps the soft gradients' scale independent
    of T (Hinton et al.). For a causal LM the KL is averaged over non-padding positions."""

    teacher: Any
    temperature: float
    alpha: float
    classify: bool

    def __call__(self, out: Any, input_ids: Any, attention_mask: Any, labels: Any) -> Any:
        if self.alpha >= 1.0:
            return out.loss  # no weight on the soft targets: the teacher's pass would be waste
        import torch

        with torch.no_grad():
            t_logits = self.teacher(input_ids=input_ids, attention_mask=attention_mask).logits
        soft = self.soft_loss(out.logits, t_logits, attention_mask)
        return self.alpha * out.loss + (1.0 - self.alpha) * soft

    def soft_loss(self, s_logits: Any, t_logits: Any, attention_mask: Any) -> Any:
        import torch.nn.functional as F

        T = self.temperature
        if not self.classify:  # one distribution per non-padding token
            keep = attention_mask.bool()
            s_logits, t_logits = s_logits[keep], t_logits[keep]
        log_s = F.log_softmax(s_logits.float() / T, dim=-1)
        log_t = F.log_softmax(t_logits.float() / T, dim=-1)
        return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * T * T


def _param_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _num_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_teacher_head(loaded: Any) -> None:
    """A classifier whose head was just added or re-initialised knows nothing yet: its soft
    targets would teach noise."""
    bad = next((n for n in loaded.notes if UNTRAINED_HEAD_MARK in n or "re-initialised" in n), "")
    if loaded.task == "classify" and bad:
        raise SpecError(
            "distillation: the teacher's classification head is untrained ("
            + bad.split(":")[0]
            + "); train the model first (--mode train --save-model DIR) and distil from DIR"
        )


def _teacher(ctx: Any) -> Any:
    """The teacher's LoadedModel: the session's model, or for a demo training session (which
    loads an untrained demo) the demo's cached trained weights, with the same vocabulary."""
    if not (ctx.spec.model == "demo" and ctx.spec.mode == "train"):
        _check_teacher_head(ctx.loaded)
        return ctx.loaded
    from wattlab.core.worker.inputs import _cached_demo

    names = ctx.data.label_names if ctx.data is not None else ctx.loaded.label_names
    cached = _cached_demo(ctx.spec, names)
    if cached.tokenizer.get_vocab() != ctx.loaded.tokenizer.get_vocab():
        raise SpecError(
            "distillation: the cached demo teacher was trained with another vocabulary (a "
            "different --eval-fraction?); distil with the demo's default split"
        )
    cached.model.to(ctx.dev)
    return cached


def _freeze(model: Any) -> None:
    model.eval()
    model.requires_grad_(False)


@implements
class DistillationImpl(Implementation, Distillation):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        teacher_loaded = _teacher(ctx)
        teacher = teacher_loaded.model
        k = student_layers_for(teacher, params["student_layers"])
        student, chosen = build_student(teacher, k)
        details: dict[str, Any] = {
            "teacher_layers": layer_count(teacher),
            "student_layers": k,
            "student_initialised_from_layers": chosen,
            "teacher_params": _num_params(teacher),
            "teacher_bytes": _param_bytes(teacher),
            "temperature": params["temperature"],
            "alpha": params["alpha"],
        }
        if params["width"] < 1.0:
            details["student_ffn_width"] = narrow_ffn(student, params["width"])
        details["student_params"] = _num_params(student)
        details["student_bytes"] = _param_bytes(student)
        _freeze(teacher)
        loss = DistillationLoss(
            teacher, params["temperature"], params["alpha"], ctx.task == "classify"
        )
        if ctx.spec.mode == "train":
            ctx.loss_hook = loss
            what = (
                "the session trains the student as its measured work (each step also runs "
                "the teacher's forward pass)"
            )
        else:
            details.update(_distil(ctx, student, loss))
            what = "distilled in the prepare phase, then its inference is measured"
        _swap_in(ctx, student, teacher_loaded, k)
        warnings = []
        if params["alpha"] >= 1.0:
            warnings.append(
                "alpha=1 puts no weight on the teacher's soft targets: the student trains on "
                "the labels alone (the teacher is not run)"
            )
        return Applied(self.name, params, _describe(details, what), details, warnings)

    def finalize(self, ctx: Any, params: dict[str, Any], applied: Applied) -> None:
        """After training the teacher is done with: drop the loss that holds it, so a
        lifecycle run serves the student alone and its serving peak memory is the student's."""
        if isinstance(ctx.loss_hook, DistillationLoss):
            ctx.loss_hook = None
            import gc

            gc.collect()


def _distil(ctx: Any, student: Any, loss: DistillationLoss) -> dict[str, Any]:
    """Train the student inside the prepare phase; what the distillation did and reached."""
    from wattlab.core.worker.prepare_training import train_while_preparing

    out = train_while_preparing(ctx, student, "distilling the student", loss_hook=loss)
    last = out.epochs[-1] if out.epochs else {}
    figures: dict[str, Any] = {
        "distill_items": out.items,
        "distill_steps": out.steps,
        "distill_time_s": out.train_time_s,
        "distill_cancelled": out.cancelled,
    }
    key = "accuracy" if ctx.task == "classify" else "perplexity"
    figures[f"student_eval_{key}"] = last.get(key)
    return figures


def _swap_in(ctx: Any, student: Any, teacher_loaded: Any, k: int) -> None:
    """The student becomes the session's model: its size and parameter count are what the
    result reports as the model."""
    loaded = ctx.loaded
    student.eval()
    loaded.model = student
    loaded.tokenizer = teacher_loaded.tokenizer
    loaded.size_bytes = _param_bytes(student)
    loaded.num_params = _num_params(student)
    loaded.folder = None  # no folder holds these weights
    loaded.source = f"{k}-layer student distilled from {teacher_loaded.source}"


def _describe(d: dict[str, Any], what: str) -> str:
    ffn = f", FFN width {d['student_ffn_width']}" if "student_ffn_width" in d else ""
    text = (
        f"{d['student_layers']}-layer student{ffn} (from teacher layers "
        f"{' '.join(map(str, d['student_initialised_from_layers']))} of {d['teacher_layers']}): "
        f"{d['student_params']:,} parameters ({d['student_bytes'] / 1e6:.2f} MB) vs the "
        f"teacher's {d['teacher_params']:,} ({d['teacher_bytes'] / 1e6:.2f} MB); "
        f"T={d['temperature']:g}, alpha={d['alpha']:g}; {what}"
    )
    if "distill_steps" in d:
        text += f" ({d['distill_steps']} steps, {d['distill_time_s']:.1f} s"
        acc, ppl = d.get("student_eval_accuracy"), d.get("student_eval_perplexity")
        if isinstance(acc, float):
            text += f", eval accuracy {acc:.3f}"
        elif isinstance(ppl, float):
            text += f", eval perplexity {ppl:.3g}"
        text += ")"
    return text
