"""The worker half of ``data`` (dataset reduction) and ``augment`` (text augmentation): both
replace the session's training split (``ctx.data``) with a changed copy; the eval split is never
touched. Declared (parameters, where they apply) in core/techniques/data_reduction.py.

Near-duplicates are found without comparing every pair (quadratic in the items): MinHash
signatures of each item's token-bigram set put similar items in the same LSH buckets, and only
items that share a bucket are compared, by their exact Jaccard similarity. The bands are chosen
so that a pair at the threshold shares a bucket with probability >= 0.99; the hash functions are
fixed, so the same data always gives the same duplicates."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from wattlab.core.errors import SpecError
from wattlab.core.techniques.base import Applied
from wattlab.core.techniques.data_reduction import Augmentation, DataReduction
from wattlab.core.worker.prepared import PreparedData
from wattlab.core.worker.techniques.registry import Implementation, implements

CALIB_ITEMS = 2048  # the training slice calibrating techniques get (as the runner's)
NUM_PERM = 128  # MinHash hash functions
_PRIME = 4_294_967_311  # the smallest prime above 2**32: (a*x + b) mod p over 32-bit hashes
_MASK32 = 0xFFFFFFFF


# -- shared --------------------------------------------------------------------------------------
def kept_count(n: int, keep: float) -> int:
    """How many of ``n`` items ``keep`` leaves: round(keep * n), at least one."""
    return max(1, min(n, round(keep * n)))


def subset(data: PreparedData, idx: list[int]) -> PreparedData:
    """``data`` with only the training items ``idx`` (ids and labels together, in their
    original order); the eval split is the same object."""
    idx = sorted(idx)
    labels = data.train_labels
    return dataclasses.replace(
        data,
        train_ids=[data.train_ids[i] for i in idx],
        train_labels=[labels[i] for i in idx] if labels is not None else None,
    )


def special_ids(ctx: Any) -> set[int]:
    """Token ids no technique here may change or count as content: CLS, SEP, PAD, ..."""
    ids = set(getattr(ctx.loaded.tokenizer, "all_special_ids", None) or [])
    ids.add(ctx.pad_id)
    return ids


def _session_data(ctx: Any, name: str) -> PreparedData:
    if ctx.data is None:
        raise SpecError(f"{name} needs the session's training data")
    data: PreparedData = ctx.data
    return data


def _use_data(ctx: Any, data: PreparedData) -> None:
    """Train on ``data`` from now on; the calibration slice follows it."""
    ctx.data = data
    ctx.calib_ids = data.train_ids[:CALIB_ITEMS]
    labels = data.train_labels
    ctx.calib_labels = labels[:CALIB_ITEMS] if labels is not None else None


# -- random --------------------------------------------------------------------------------------
def random_indices(n: int, k: int, seed: int) -> list[int]:
    """A seeded random choice of ``k`` of ``n`` indices, sorted."""
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=k, replace=False))


# -- dedup ---------------------------------------------------------------------------------------
def shingles(ids: list[int], specials: set[int]) -> frozenset[int]:
    """The 32-bit hashes of an item's token bigrams, special tokens left out (a one-token item:
    its token). Python hashes tuples of ints the same in every process."""
    toks = [t for t in ids if t not in specials]
    grams = [tuple(toks[i : i + 2]) for i in range(len(toks) - 1)] or (
        [tuple(toks)] if toks else []
    )
    return frozenset(hash(g) & _MASK32 for g in grams)


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    if not a and not b:
        return 1.0  # two items with no content are the same
    return len(a & b) / len(a | b)


def rows_per_band(threshold: float) -> int:
    """The most MinHash rows per LSH band (the fewest needless comparisons) that still bring a
    pair of similarity ``threshold`` together with probability >= 0.99."""
    for r in (8, 4, 2):
        if 1 - (1 - threshold**r) ** (NUM_PERM // r) >= 0.99:
            return r
    return 1


def _minhash(sh: frozenset[int], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not sh:
        return np.full(NUM_PERM, _PRIME, dtype=np.uint64)
    x = np.fromiter(sh, dtype=np.uint64, count=len(sh))
    return ((x[:, None] * a + b) % _PRIME).min(axis=0)  # a, b, x < 2**32: no uint64 overflow


def dedup_indices(ids: list[list[int]], specials: set[int], threshold: float) -> list[int]:
    """The items kept when near-duplicates go: an item goes when its Jaccard similarity to an
    item already kept is >= ``threshold``, so the first of each group stays."""
    rng = np.random.default_rng(0)  # fixed: which items are duplicates is the data's property
    a = rng.integers(1, 1 << 32, NUM_PERM, dtype=np.uint64)
    b = rng.integers(0, 1 << 32, NUM_PERM, dtype=np.uint64)
    r = rows_per_band(threshold)
    sets = [shingles(x, specials) for x in ids]
    buckets: dict[tuple[int, bytes], list[int]] = {}
    kept: list[int] = []
    for i, sh in enumerate(sets):
        sig = _minhash(sh, a, b)
        keys = [(band, sig[band * r : (band + 1) * r].tobytes()) for band in range(NUM_PERM // r)]
        candidates = {j for k in keys for j in buckets.get(k, ())}
        if any(jaccard(sh, sets[j]) >= threshold for j in candidates):
            continue
        kept.append(i)
        for k in keys:
            buckets.setdefault(k, []).append(i)
    return kept


def _dedup(ctx: Any, data: PreparedData, k: int, params: dict[str, Any]) -> tuple[Any, ...]:
    """Near-duplicates removed, then a seeded random cut to ``k`` when more remain."""
    n, thr = len(data.train_ids), params["threshold"]
    unique = dedup_indices(data.train_ids, special_ids(ctx), thr)
    details: dict[str, Any] = {"duplicates": n - len(unique), "after_dedup": len(unique)}
    text = (
        f"dedup: {n - len(unique)} of {n} items were near-duplicates (Jaccard >= {thr:g} of "
        f"token bigrams), {len(unique)} left"
    )
    if len(unique) > k:
        chosen = random_indices(len(unique), k, ctx.spec.seed)
        idx = [unique[i] for i in chosen]
        details["random_cut"] = True
        text += f", cut at random to {k} (keep={params['keep']:g})"
    else:
        idx = unique
        details["random_cut"] = False
        text += f" (no more than keep={params['keep']:g} of them: no random cut)"
    return idx, text, details


# -- score ---------------------------------------------------------------------------------------
def item_scores(model: Any, data: PreparedData, batch_size: int, dev: Any) -> np.ndarray:
    """Per training item, how hard the model finds it: EL2N (the L2 norm of softmax output
    minus one-hot label) for a classifier, the mean next-token loss for a causal LM."""
    import torch
    import torch.nn.functional as F

    from wattlab.core.worker.batching import batches, collate

    model.eval()
    out: list[np.ndarray] = []
    with torch.no_grad():
        for b in batches(len(data.train_ids), batch_size):
            x, m = collate([data.train_ids[i] for i in b], data.pad_id)
            xt, mt = torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev)
            logits = model(input_ids=xt, attention_mask=mt).logits.float()
            if data.classify:
                assert data.train_labels is not None, "classification data carries labels"
                y = torch.tensor([data.train_labels[i] for i in b], device=dev)
                err = logits.softmax(-1) - F.one_hot(y, logits.shape[-1])
                out.append(err.norm(dim=-1).cpu().numpy())
            else:
                loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), xt[:, 1:], reduction="none")
                w = mt[:, 1:].float()
                out.append(((loss * w).sum(1) / w.sum(1).clamp(min=1)).cpu().numpy())
    return np.concatenate(out)


def highest(scores: np.ndarray, k: int) -> list[int]:
    """The indices of the ``k`` highest scores (ties: the earlier item), sorted; a NaN ranks
    last."""
    s = np.where(np.isfinite(scores), scores, -np.inf)
    return sorted(int(i) for i in np.argsort(-s, kind="stable")[:k])


def _warmed_copy(ctx: Any, steps: int) -> tuple[Any, Any]:
    """A copy of the model trained ``steps`` optimizer steps on the full training split in the
    prepare phase (enough epochs to reach them); returns it and the training's outcome."""
    import copy

    from wattlab.core.worker.prepare_training import train_while_preparing

    spec, data = ctx.spec, ctx.data
    per_epoch = math.ceil(math.ceil(len(data.train_ids) / spec.batch_size) / spec.grad_accum)
    epochs = max(1, math.ceil(steps / per_epoch))
    warm = dataclasses.replace(ctx, spec=dataclasses.replace(spec, max_steps=steps, epochs=epochs))
    model = copy.deepcopy(ctx.loaded.model)
    out = train_while_preparing(warm, model, f"data pruning warm-up ({steps} steps)")
    return model, out


def _score(ctx: Any, data: PreparedData, k: int, params: dict[str, Any]) -> tuple[Any, ...]:
    """The ``k`` hardest items by EL2N (or LM loss), scored after a warm-up or as loaded."""
    steps = params["warmup_steps"]
    details: dict[str, Any] = {"score": "el2n" if data.classify else "mean token loss"}
    if steps:
        model, out = _warmed_copy(ctx, steps)
        details.update(warmup_steps=out.steps, warmup_items=out.items)
        details["warmup_time_s"] = out.train_time_s
        scored_by = f"a model copy trained {out.steps} steps first (prepare phase)"
    else:
        model = ctx.loaded.model
        scored_by = "the model as loaded (meaningful only if it is already trained on this task)"
    scores = item_scores(model, data, ctx.spec.batch_size, ctx.dev)
    del model
    idx = highest(scores, k)
    details.update(
        score_min_kept=float(scores[idx].min()),
        score_max=float(np.nanmax(scores)) if np.isfinite(scores).any() else None,
        nonfinite_scores=int((~np.isfinite(scores)).sum()),
    )
    text = f"score: kept the {k} hardest items by {details['score']}, scored by {scored_by}"
    return idx, text, details


@implements
class DataReductionImpl(Implementation, DataReduction):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        data = _session_data(ctx, self.name)
        n = len(data.train_ids)
        k = kept_count(n, params["keep"])
        method = params["method"]
        if method == "dedup":
            idx, text, details = _dedup(ctx, data, k, params)
        elif method == "score":
            idx, text, details = _score(ctx, data, k, params)
        else:
            idx = random_indices(n, k, ctx.spec.seed)
            text, details = f"random: kept {k} of {n} training items", {}
        _use_data(ctx, subset(data, idx))
        details.update(items_before=n, items_after=len(idx), method=method, seed=ctx.spec.seed)
        warnings = []
        if details.get("nonfinite_scores"):
            warnings.append(
                f"{details['nonfinite_scores']} items had no finite score (a diverged warm-up?); "
                "they ranked last"
            )
        return Applied(self.name, params, f"{text}; trains on {len(idx)} of {n}", details, warnings)


# -- augmentation --------------------------------------------------------------------------------
def mask_token(tokenizer: Any) -> tuple[int, str] | None:
    """The id and text of the token ``mask`` writes: [MASK] when the tokenizer has one, else
    the unknown token; None when it has neither."""
    for attr in ("mask_token", "unk_token"):
        tid = getattr(tokenizer, f"{attr}_id", None)
        if tid is not None:
            return int(tid), str(getattr(tokenizer, attr))
    return None


def augment_one(
    ids: list[int],
    op: str,
    specials: set[int],
    mask_id: int | None,
    rate: float,
    rng: np.random.Generator,
) -> list[int]:
    """One augmented copy of ``ids``: ``op`` on max(1, rate * content tokens) positions, special
    tokens never moved, deleted or masked; a text's only token is never deleted."""
    pos = [i for i, t in enumerate(ids) if t not in specials]
    out = list(ids)
    count = max(1, round(rate * len(pos)))
    if op == "mask" and pos:
        assert mask_id is not None, "checked before augmenting"
        for i in rng.choice(pos, size=min(count, len(pos)), replace=False):
            out[int(i)] = mask_id
    elif op == "delete" and len(pos) > 1:
        drop = {int(i) for i in rng.choice(pos, size=min(count, len(pos) - 1), replace=False)}
        out = [t for i, t in enumerate(ids) if i not in drop]
    elif op == "swap":
        # distinct pairs (the same pair twice would swap back), of different tokens (equal
        # ones would swap to the same text)
        pairs = [
            i
            for i in pos
            if i + 1 < len(ids) and ids[i + 1] not in specials and ids[i + 1] != ids[i]
        ]
        for i in rng.permutation(np.array(pairs, dtype=np.int64))[:count]:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def augment_split(
    ids: list[list[int]],
    labels: list[int] | None,
    params: dict[str, Any],
    specials: set[int],
    mask_id: int | None,
    seed: int,
) -> tuple[list[list[int]], list[int] | None, dict[str, Any]]:
    """The training split plus max(1, round(factor * n)) augmented copies (appended; each item
    copied as evenly as the count allows, each copy with one op picked at random), their labels
    copied; returns the ids, the labels, and how many copies each op made and how many came out
    the same as their source (a one-token text cannot be swapped or shortened)."""
    n, ops = len(ids), params["ops"]
    m = max(1, round(params["factor"] * n))
    rng = np.random.default_rng(seed)
    sources = np.concatenate([rng.permutation(n) for _ in range(math.ceil(m / n))])[:m]
    copies, per_op, unchanged = [], dict.fromkeys(ops, 0), 0
    for s in sources:
        op = ops[int(rng.integers(len(ops)))]
        per_op[op] += 1
        copies.append(augment_one(ids[s], op, specials, mask_id, params["rate"], rng))
        unchanged += copies[-1] == ids[s]
    new_labels = labels + [labels[s] for s in sources] if labels is not None else None
    return ids + copies, new_labels, {"copies_per_op": per_op, "unchanged_copies": unchanged}


@implements
class AugmentationImpl(Implementation, Augmentation):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        data = _session_data(ctx, self.name)
        if not data.classify:
            raise SpecError("augment applies to classifiers; a language model's text is its target")
        mask = mask_token(ctx.loaded.tokenizer)
        if "mask" in params["ops"] and mask is None:
            raise SpecError(
                "augment: this tokenizer has neither a mask nor an unknown token; "
                "drop mask from ops"
            )
        n = len(data.train_ids)
        ids, labels, stats = augment_split(
            data.train_ids,
            data.train_labels,
            params,
            special_ids(ctx),
            mask[0] if mask else None,
            ctx.spec.seed,
        )
        _use_data(ctx, dataclasses.replace(data, train_ids=ids, train_labels=labels))
        details = {
            "items_before": n,
            "items_after": len(ids),
            "ops": list(params["ops"]),
            **stats,
            "mask_token": mask[1] if mask and "mask" in params["ops"] else None,
            "seed": ctx.spec.seed,
        }
        by_op = ", ".join(f"{k} {v}" for k, v in stats["copies_per_op"].items())
        text = f"added {len(ids) - n} augmented copies ({by_op}) to {n} training items"
        return Applied(self.name, params, text, details)
