"""Quality metrics computed with numpy alone (no scikit-learn dependency for four formulas)."""

from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float((pred == y).mean()) if len(y) else float("nan")


def macro_f1(pred: np.ndarray, y: np.ndarray, num_labels: int) -> float:
    f1s = []
    for c in range(num_labels):
        tp = np.sum((pred == c) & (y == c))
        fp = np.sum((pred == c) & (y != c))
        fn = np.sum((pred != c) & (y == c))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s))


def roc(scores: np.ndarray, y: np.ndarray) -> tuple[float, list[tuple[float, float]]]:
    """AUC-ROC (ties counted half, the Mann-Whitney statistic) and the ROC points (fpr, tpr)."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan"), []
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], pos[order]
    tps = np.cumsum(p)
    fps = np.cumsum(~p)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # one point per distinct threshold
    tpr = np.r_[0.0, tps[last] / n_pos]
    fpr = np.r_[0.0, fps[last] / n_neg]
    auc = float(np.trapezoid(tpr, fpr))
    step = max(1, len(fpr) // 200)  # keep reports small: at most ~200 points
    pts = list(zip(fpr[::step].tolist(), tpr[::step].tolist(), strict=True))
    if pts[-1] != (1.0, 1.0):
        pts.append((1.0, 1.0))
    return auc, pts


def classification_metrics(logits: np.ndarray, y: np.ndarray, num_labels: int) -> dict:
    pred = logits.argmax(-1)
    out: dict[str, object] = {
        "accuracy": accuracy(pred, y),
        "macro_f1": macro_f1(pred, y, num_labels),
    }
    if num_labels == 2:
        z = logits - logits.max(-1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        out["auc_roc"], out["roc_points"] = roc(prob[:, 1], y)
    return out
