"""Training on other data: a smaller subset (``data``) or augmented copies (``augment``).

Both change only the training split of a training session; the eval split is never touched, so
the quality the session measures is comparable with a baseline trained on all the data.

- ``data:keep=0.5,method=random|dedup|score`` keeps a subset of ``keep`` of the training items:
  a seeded random subset; near-duplicates removed (Jaccard similarity of token-bigram sets, found
  with MinHash LSH and then checked exactly), then a seeded random cut if more than ``keep``
  remain; or the hardest items by a data-pruning score (EL2N, Paul et al. 2021: the L2 distance
  between the softmax output and the one-hot label; the mean token loss for a causal LM) from a
  copy of the model trained for ``warmup_steps`` first, or from the model as loaded when
  ``warmup_steps=0`` (meaningful only for a model already trained on this task). The warm-up
  trains in the prepare phase, so its energy is reported as the data pruning's cost.
- ``augment:factor=1.0,ops=swap+delete+mask`` adds ``factor`` times as many augmented copies of
  the training items (each copy gets one op picked at random: adjacent swaps, deletions or
  [MASK]/[UNK] replacements at rate ``rate``), never touching special tokens; labels copied.
"""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Param, Target, Technique, register

TRAIN_ONLY = "it changes the training split, and {mode} sessions do not train; choose training mode"


def _train_only(t: Target) -> tuple[bool, str | None]:
    if t.mode != "train":
        return False, TRAIN_ONLY.format(mode="RAG" if t.mode == "rag" else "inference")
    return True, None


@register
class DataReduction(Technique):
    name = "data"
    label = "Dataset reduction"
    order = 4  # before anything that trains or calibrates on the training split
    summary = "Train on a subset: random, near-duplicates removed, or the hardest by EL2N"
    params = (
        Param("keep", float, 0.5, "fraction of training items kept", min=0.01, max=1.0),
        Param(
            "method",
            str,
            "random",
            "how the subset is chosen",
            choices=("random", "dedup", "score"),
        ),
        Param(
            "threshold",
            float,
            0.8,
            "dedup: Jaccard similarity of token-bigram sets from which items are duplicates",
            min=0.3,
            max=1.0,
        ),
        Param(
            "warmup_steps",
            int,
            20,
            "score: optimizer steps a model copy trains before scoring (0: the model as loaded)",
            min=0,
            max=100_000,
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        return _train_only(t)


@register
class Augmentation(Technique):
    name = "augment"
    label = "Text augmentation"
    order = 6  # after dataset reduction: augments the kept subset
    summary = "Add token-level augmented copies (swap, delete, mask) to the training split"
    params = (
        Param(
            "factor",
            float,
            1.0,
            "augmented copies added, as a multiple of the training items",
            min=0.01,
            max=10.0,
        ),
        Param(
            "ops",
            tuple,
            ("swap", "delete", "mask"),
            "the ops a copy may get, joined by +",
            choices=("swap", "delete", "mask"),
        ),
        Param(
            "rate", float, 0.1, "share of a text's tokens each op changes (at least one)", 0.01, 0.5
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        ok, why = _train_only(t)
        if ok and t.task == "causal-lm":
            return False, (
                "augmentation corrupts the text a language model learns to predict; "
                "it applies to classifiers"
            )
        if ok and not params.get("ops", ("swap",)):
            return False, "give at least one op: swap, delete or mask"
        return ok, why
