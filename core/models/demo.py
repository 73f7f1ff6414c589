"""The built-in demo model: its definition, its tokenizer, and the cache of its trained weights.

The demo is a BERT-style classifier defined by ``resources/demo_model.json`` and trained by
WattLab's own training session on the generated dataset. Trained weights are cached under
``DATA_DIR/models/demo-KEY`` where KEY hashes the model config, the dataset and the training
recipe, so changing any of them trains a new model instead of reusing a stale one. The cache is a
normal Hugging Face folder, so everything else loads it like a user's model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from wattlab.core.measure.store import default_data_dir
from wattlab.core.models.demo_data import VERSION as DATA_VERSION

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


ENV_DEFINITION = "WATTLAB_DEMO_DEFINITION"


def demo_definition() -> dict[str, Any]:
    """The shipped definition, or the file named by $WATTLAB_DEMO_DEFINITION (a smaller demo for
    tests and slow machines; its different content gives it its own cache key)."""
    import os

    from wattlab.resources import RESOURCES_DIR

    path = os.environ.get(ENV_DEFINITION) or RESOURCES_DIR / "demo_model.json"
    return json.loads(Path(path).read_text())


def cache_key(
    recipe_overrides: dict[str, Any] | None = None,
    dataset: str = "demo",
    dataset_digest: str | None = None,
) -> str:
    d = demo_definition()
    recipe = {**d["recipe"], **(recipe_overrides or {})}
    blob = json.dumps(
        {
            "model": d["model"],
            "data": d["data"],
            "data_version": DATA_VERSION,
            "recipe": recipe,
            "dataset": dataset,
            "digest": dataset_digest,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_dir(key: str, data_dir: Path | None = None) -> Path:
    return (data_dir or default_data_dir()) / "models" / f"demo-{key}"


def is_cached(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def build_tokenizer(
    texts: list[str], min_freq: int, max_len: int, for_generation: bool = False
) -> Any:
    """A word-level tokenizer over the training texts (the demo ships no vocabulary). For a
    classifier it wraps input in [CLS] ... [SEP]; for a generator (the RAG demo LM) it adds no
    specials around the text and has an [EOS] token to stop on."""
    from collections import Counter

    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()
    counts = Counter(w for t in texts for w, _ in pre.pre_tokenize_str(t.lower()))
    words = sorted(w for w, c in counts.items() if c >= min_freq)
    specials = SPECIAL + (["[EOS]"] if for_generation else [])
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    tk = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre
    if for_generation:
        return PreTrainedTokenizerFast(
            tokenizer_object=tk,
            pad_token="[PAD]",
            unk_token="[UNK]",
            eos_token="[EOS]",
            model_max_length=max_len,
        )
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_len,
    )


def build_untrained(texts: list[str], label_names: list[str]) -> tuple[Any, Any, list[str]]:
    """(model, tokenizer, notes) for a fresh demo model over ``texts``' vocabulary."""
    from transformers import BertConfig, BertForSequenceClassification

    d = demo_definition()
    tok = build_tokenizer(texts, d["data"]["min_word_freq"], d["model"]["max_position_embeddings"])
    cfg = BertConfig(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
        **{k: v for k, v in d["model"].items() if k != "model_type"},
    )
    model = BertForSequenceClassification(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    notes = [
        f"demo model built from resources/demo_model.json: {n_params:,} parameters, "
        f"vocabulary of {len(tok)} words from the training split"
    ]
    return model, tok, notes
