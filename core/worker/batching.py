"""Tokenising and batching, shared by training and inference."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def encode(tokenizer: Any, texts: list[str], seq_len: int) -> list[list[int]]:
    enc = tokenizer(texts, truncation=True, max_length=seq_len, padding=False)
    return enc["input_ids"]


def collate(ids: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    n = max(len(x) for x in ids)
    arr = np.full((len(ids), n), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), n), dtype=np.int64)
    for i, x in enumerate(ids):
        arr[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return arr, mask


def batches(n: int, batch_size: int, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
    idx = np.arange(n) if order is None else order
    for s in range(0, n, batch_size):
        yield idx[s : s + batch_size]


def lm_blocks(tokenizer: Any, texts: list[str], seq_len: int) -> list[list[int]]:
    """Concatenate documents (separated by EOS) and cut into ``seq_len`` blocks."""
    eos = tokenizer.eos_token_id
    flat: list[int] = []
    for ids in tokenizer(texts, padding=False, truncation=False)["input_ids"]:
        flat.extend(ids)
        if eos is not None:
            flat.append(eos)
    blocks = [flat[i : i + seq_len] for i in range(0, len(flat) - 1, seq_len)]
    return [b for b in blocks if len(b) >= 2]
