"""Knowledge distillation: a smaller student learns from the user's model (the teacher).

The student is the teacher's own architecture with fewer transformer layers (and optionally a
narrower FFN), initialised from the teacher's embeddings, head and evenly spaced layers, as
DistilBERT was. It trains on ``alpha`` x the hard-label loss + ``(1 - alpha)`` x T^2 x KL between
the teacher's and the student's temperature-softened outputs (Hinton et al., 2015): class logits
for a classifier, every non-padding token's next-token distribution for a causal LM.

- **train mode**: the student is the model the session trains; every step also runs the frozen
  teacher's forward pass, and that cost is part of the measured training.
- **infer mode**: the student is distilled inside the prepare phase (its energy is reported as
  preparation, never as the measured work), then its inference is measured.

The teacher's layer count is known only once the model is loaded, so ``student_layers`` against
it is checked by the worker (one line, with both numbers).
"""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Param, Target, Technique, register

# Model types whose layer stack the student cannot be cut from, with why.
REFUSED_TYPES = {
    "albert": "ALBERT shares one layer's weights across all its layers, so fewer layers "
    "remove no parameters",
}
# Where a narrower FFN (width < 1) is known: the layouts structured pruning slices.
WIDTH_TYPES = ("bert", "roberta", "electra", "gpt2", "llama", "mistral", "qwen2")


@register
class Distillation(Technique):
    name = "distillation"
    label = "Knowledge distillation"
    order = 5  # first: it replaces the model every later technique works on
    summary = "Train a smaller student (fewer layers) on the model's soft targets"
    params = (
        Param(
            "student_layers",
            int,
            0,
            "transformer layers of the student (0: half the teacher's)",
            min=0,
            max=1000,
        ),
        Param(
            "temperature",
            float,
            2.0,
            "softmax temperature of the soft targets",
            min=0.5,
            max=20.0,
        ),
        Param(
            "alpha",
            float,
            0.5,
            "weight of the hard-label loss (1 - alpha on the soft targets)",
            min=0.0,
            max=1.0,
        ),
        Param(
            "width",
            float,
            1.0,
            "fraction of the teacher's FFN neurons each student layer keeps",
            min=0.1,
            max=1.0,
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.mode == "rag":
            return False, "distillation trains a student model; RAG sessions take rag-cache only"
        if t.model_kind == "onnx":
            return False, (
                "distillation trains a PyTorch student from the teacher's weights; an ONNX "
                "file cannot be trained here"
            )
        if t.model_type in REFUSED_TYPES:
            return False, REFUSED_TYPES[t.model_type]
        if params.get("width", 1.0) < 1.0 and t.model_type and t.model_type not in WIDTH_TYPES:
            return False, (
                f"a narrower FFN (width < 1) is not known for {t.model_type} models; "
                "use width=1 (fewer layers only)"
            )
        return True, None
