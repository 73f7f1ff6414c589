"""The built-in demo model: its definition, its tokenizer, and the cache of its trained weights.

The demo is a BERT-style classifier defined by ``resources/demo_model.json`` and trained by
WattLab's own training session on the generated dataset. Trained weights are cached under
``DATA_DIR/models/demo-KEY`` where KEY hashes the model config, the dataset and the training
recipe, so changing any of them trains a new model instead of reusing a stale one. The cache is a
normal Hugging Face folder, so everything else loads it like a user's model.
"""

from __future__ import annotations

from typing import Any

from wattlab.core.models.demo_cache import (  # noqa: F401 - the demo's one API
    SPECIAL,
    cache_dir,
    cache_key,
    demo_definition,
    file_digest,
    is_cached,
)


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
    # transformers 5 takes num_labels through PretrainedConfig's keyword arguments, which the
    # generated BertConfig signature leaves out.
    cfg = BertConfig(  # type: ignore[call-arg]
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
