"""Fairness across the groups of a sensitive attribute (``--sensitive-column``), on the eval items.

Why: a technique that saves energy (quantization, pruning, distillation) can cost one group of
users more accuracy than another while the overall accuracy barely moves. These figures put the
per-group accuracy and the usual group-fairness measures beside the energy, so baseline and
optimized can be compared on them too.

The definitions are fairlearn's (a maintained library, not formulas written again here):
demographic parity difference and ratio (the ratio is "disparate impact"), and the equalized-odds
difference (the larger of the between-group ranges of the true- and false-positive rates).
fairlearn defines them for a binary prediction, so:
- a binary task takes class 1 (the second label) as the positive prediction;
- a multi-class task takes every class one-vs-rest ("predicted c" is the positive prediction) and
  reports the worst class: the largest difference, the smallest ratio. ``method`` says which was
  done, and ``per_class`` keeps every class's figures.
A true- or false-positive rate is undefined in a group without positives (negatives) for that
class; fairlearn would score it 0 and report a disparity that is only an empty cell, so such a
group is left out of that rate's range instead (``undefined_rates`` counts how often).
Groups with fewer than ``MIN_GROUP_ITEMS`` eval items are named in ``small_groups`` and warned
about: their rates move by several points with one item.

fairlearn (with pandas and scikit-learn) takes about a second to import: it is imported inside the
function, after the measured phase, and only when a sensitive column was asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MIN_GROUP_ITEMS = 30

METHOD_BINARY = (
    "fairlearn {version} on the eval items scored: selection rate = share predicted as the "
    "positive class ({positive!r}, class 1); demographic parity difference = largest minus "
    "smallest group selection rate; disparate impact = smallest / largest (demographic parity "
    "ratio); equalized-odds difference = larger of the between-group ranges of the true- and "
    "false-positive rates (groups where a rate is undefined left out)"
)
METHOD_MULTICLASS = (
    "fairlearn {version} on the eval items scored, one-vs-rest per class ({classes} classes; "
    "selection rate of class c = share predicted as c): demographic parity difference and "
    "equalized-odds difference are the largest over classes, disparate impact (demographic "
    "parity ratio) the smallest, so each figure is the worst class's; equalized odds leaves out "
    "groups where a rate is undefined"
)


def _finite(x: object) -> float | None:
    """``x`` as a float, or None when it is undefined (NaN, inf, missing): unknown, never 0."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


PARITY_FIGURES = (
    "demographic_parity_difference",
    "equalized_odds_difference",
    "disparate_impact",
)


def _range(values: list[float | None]) -> float | None:
    """Largest minus smallest of the defined values; None when none is defined."""
    vs = [v for v in values if v is not None]
    return max(vs) - min(vs) if vs else None


def group_accuracy(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray
) -> dict[str, dict[str, Any]]:
    """{group: {"n", "accuracy"}} in group-name order, through fairlearn's MetricFrame."""
    from fairlearn.metrics import MetricFrame, count
    from sklearn.metrics import accuracy_score

    frame = MetricFrame(
        metrics={"accuracy": accuracy_score, "n": count},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=groups,
    )
    rows = frame.by_group.to_dict("index")
    return {
        str(g): {"n": int(rows[g]["n"]), "accuracy": _finite(rows[g]["accuracy"])}
        for g in sorted(rows, key=str)
    }


def _equalized_odds(yt: np.ndarray, yp: np.ndarray, groups: np.ndarray) -> tuple[float | None, int]:
    """fairlearn's equalized-odds difference (worst case), with the groups where a rate is
    undefined left out of that rate's range; returns (difference, undefined rates)."""
    from fairlearn.metrics import MetricFrame, false_positive_rate, true_positive_rate

    frame = MetricFrame(
        metrics={
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "pos": lambda t, p: int(np.sum(t == 1)),
            "neg": lambda t, p: int(np.sum(t != 1)),
        },
        y_true=yt,
        y_pred=yp,
        sensitive_features=groups,
    )
    rows = frame.by_group.to_dict("index").values()
    tpr = [_finite(r["tpr"]) if r["pos"] else None for r in rows]
    fpr = [_finite(r["fpr"]) if r["neg"] else None for r in rows]
    undefined = sum(v is None for v in tpr + fpr)
    ranges = [x for x in (_range(tpr), _range(fpr)) if x is not None]
    return (max(ranges) if ranges else None), undefined


def binary_parity(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Demographic parity difference and ratio, equalized-odds difference, for 0/1 arrays with
    1 the positive class."""
    from fairlearn.metrics import demographic_parity_difference, demographic_parity_ratio

    yt, yp = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    eod, undefined = _equalized_odds(yt, yp, groups)
    return {
        "demographic_parity_difference": _finite(
            demographic_parity_difference(yt, yp, sensitive_features=groups)
        ),
        "disparate_impact": _finite(demographic_parity_ratio(yt, yp, sensitive_features=groups)),
        "equalized_odds_difference": eod,
        "undefined_rates": undefined,
    }


def _worst(per_class: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The worst class's figure of each measure: largest difference, smallest ratio."""
    out: dict[str, Any] = {}
    for key, pick in (
        ("demographic_parity_difference", max),
        ("equalized_odds_difference", max),
        ("disparate_impact", min),
    ):
        defined = {c: f[key] for c, f in per_class.items() if f[key] is not None}
        worst = pick(defined, key=lambda c: defined[c]) if defined else None
        out[key] = defined[worst] if worst is not None else None
        out[f"{key}_class"] = worst
    out["undefined_rates"] = sum(f["undefined_rates"] for f in per_class.values())
    return out


def _class_names(num_labels: int, label_names: Sequence[str] | None) -> list[str]:
    if label_names and len(label_names) == num_labels:
        return [str(n) for n in label_names]
    return [str(c) for c in range(num_labels)]


def parity(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    num_labels: int,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The parity figures of a binary task (positive = class 1) or, one-vs-rest, the worst
    class's of a multi-class one, with ``method`` saying which and ``per_class`` every class's."""
    import fairlearn

    names = _class_names(num_labels, label_names)
    if num_labels == 2:
        out = binary_parity(y_true == 1, y_pred == 1, groups)
        out["method"] = METHOD_BINARY.format(version=fairlearn.__version__, positive=names[1])
        out["positive_class"] = names[1]
        return out
    per_class = {
        names[c]: binary_parity(y_true == c, y_pred == c, groups) for c in range(num_labels)
    }
    out = _worst(per_class)
    out["method"] = METHOD_MULTICLASS.format(version=fairlearn.__version__, classes=num_labels)
    out["per_class"] = per_class
    return out


def _warnings(groups: dict[str, dict[str, Any]], undefined: int) -> tuple[list[str], list[str]]:
    """(groups too small to trust, warning sentences)."""
    small = [g for g, f in groups.items() if f["n"] < MIN_GROUP_ITEMS]
    warnings = []
    if small:
        sizes = ", ".join(f"{g} (n={groups[g]['n']})" for g in small)
        warnings.append(
            f"fewer than {MIN_GROUP_ITEMS} eval items in group(s) {sizes}: their accuracy and "
            "rates move by several points with one item; do not read much into them"
        )
    if len(groups) < 2:
        warnings.append("only one group among the eval items: no disparity can be measured")
    if undefined:
        warnings.append(
            f"{undefined} true/false-positive rate(s) undefined (a group without positives or "
            "negatives of a class) were left out of the equalized-odds difference"
        )
    return small, warnings


def fairness_report(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    groups: Sequence[str],
    column: str,
    num_labels: int,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything the session result stores under ``fairness``: per-group accuracy, the worst
    group and the gap to the best, the parity figures, and warnings (small groups)."""
    yt, yp = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    g = np.asarray([str(x) for x in groups], dtype=object)
    if not (len(yt) == len(yp) == len(g)) or len(yt) == 0:
        raise ValueError(
            f"fairness needs aligned, non-empty arrays: {len(yt)}, {len(yp)}, {len(g)}"
        )
    by_group = group_accuracy(yt, yp, g)
    accs = {k: f["accuracy"] for k, f in by_group.items() if f["accuracy"] is not None}
    worst = min(accs, key=lambda k: accs[k]) if accs else None
    figures = parity(yt, yp, g, num_labels, label_names)
    small, warnings = _warnings(by_group, figures.pop("undefined_rates"))
    if len(accs) < 2:
        # With one group there is no disparity to measure: unknown, never a reassuring 0 (a
        # fairness budget would pass on it).
        figures = {k: (None if k in PARITY_FIGURES else v) for k, v in figures.items()}
    return {
        "column": column,
        "items": int(len(yt)),
        "groups": by_group,
        "worst_group": worst,
        "worst_group_accuracy": accs[worst] if worst is not None else None,
        "accuracy_gap": _range(list(accs.values())) if len(accs) >= 2 else None,
        **figures,
        "min_group_items": MIN_GROUP_ITEMS,
        "small_groups": small,
        "warnings": warnings,
    }
