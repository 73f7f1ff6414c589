"""Early exit: a small classifier after every encoder layer; a sample leaves at the first layer
whose confidence passes a threshold, and the batch shrinks as samples leave, so exited samples
cost nothing more.

- Exit heads (Linear on the [CLS] state of layers 1..L-1; layer L keeps the model's own pooler
  and classifier) are trained with the backbone frozen on the training split, minus a held-out
  tenth used only for calibration, and cached under the data dir keyed by the weights' digest.
- ``calibrate=true`` picks, on that held-out slice (never the eval split), the threshold that
  saves the most layers while losing at most ``tolerance`` accuracy against the full model.
- The report gives the exit-layer histogram of the measured phase, the mean layers run, the
  theoretical speedup (layers / mean layers) to set beside the measured time and energy, and
  accuracy vs threshold on the eval split for a range of thresholds (one pass, all layers).
"""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Param, Target, Technique, register

ENCODERS = ("bert", "roberta", "electra", "xlm-roberta", "camembert")


@register
class EarlyExit(Technique):
    name = "early-exit"
    label = "Early exit"
    order = 60
    summary = "Leave at the first layer whose exit classifier is confident enough"
    params = (
        Param("threshold", float, 0.9, "confidence needed to exit", min=0.0, max=1.0),
        Param(
            "criterion",
            str,
            "maxprob",
            "max softmax probability, or 1 - normalised entropy",
            choices=("maxprob", "entropy"),
        ),
        Param("calibrate", bool, False, "pick the threshold on a held-out training slice"),
        Param(
            "tolerance", float, 0.01, "calibration: accuracy you accept to lose", min=0.0, max=0.5
        ),
        Param(
            "head_epochs", int, 3, "epochs to train the exit heads (backbone frozen)", min=1, max=50
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.model_kind == "onnx":
            return False, "early exit needs the PyTorch model to run layer by layer"
        if t.task not in (None, "classify"):
            return False, "early exit is for classifiers (a causal LM has no exit classifier)"
        if t.model_type is not None and t.model_type not in ENCODERS:
            return False, f"early exit supports BERT-style encoders, not {t.model_type}"
        if t.mode != "infer":
            return False, (
                "exit heads are trained by the inference run itself (backbone "
                "frozen) and cached; choose inference mode"
            )
        return True, None
