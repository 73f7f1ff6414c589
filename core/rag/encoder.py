"""The embedding model: a transformer encoder, mean-pooled and L2-normalised.

Its ``identity`` names the model *and its weights* (a digest of the weight files), the maximum
length and the pooling: everything that changes a vector. The embedding cache keys on it, so a
retrained or swapped model can never be served another model's vectors.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np


def weights_digest(files: list[Path]) -> str:
    from wattlab.core.models.demo import file_digest

    return hashlib.sha256(":".join(file_digest(f) for f in sorted(files)).encode()).hexdigest()[:16]


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Average of the token states under the attention mask (padding excluded)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


class Encoder:
    def __init__(self, model: Any, tokenizer: Any, name: str, digest: str, dev: Any, max_len: int):
        self.model = model.to(dev).eval()
        self.tok = tokenizer
        self.dev = dev
        # Never longer than the model's position table (RoBERTa-style models offset theirs by 2).
        cfg = model.config
        positions = getattr(cfg, "max_position_embeddings", None) or max_len
        if "roberta" in str(getattr(cfg, "model_type", "")):
            positions -= 2
        self.max_len = min(max_len, positions)
        max_len = self.max_len
        self.name = name
        self.identity = f"{name}@{digest}/len{max_len}/mean"
        self.size_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self._inputs = set(inspect.signature(model.forward).parameters)

    @classmethod
    def from_folder(cls, folder: Path, dev: Any, max_len: int = 128, name: str | None = None):
        from wattlab.core.models.hf import load_encoder_folder

        model, tok, files = load_encoder_folder(Path(folder))
        return cls(model, tok, name or Path(folder).name, weights_digest(files), dev, max_len)

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = self.tok(
                    texts[i : i + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_len,
                    return_tensors="pt",
                ).to(self.dev)
                enc = {k: v for k, v in enc.items() if k in self._inputs}
                v = mean_pool(self.model(**enc).last_hidden_state, enc["attention_mask"])
                v = torch.nn.functional.normalize(v.float(), dim=-1)
                out.append(v.cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)
