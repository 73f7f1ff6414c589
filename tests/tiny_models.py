"""Tiny models built from a config in a second (2 layers, hidden 32), saved like users save them."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

WORDS = [
    "good",
    "great",
    "fine",
    "nice",
    "bad",
    "awful",
    "poor",
    "slow",
    "the",
    "a",
    "is",
    "was",
    "movie",
    "food",
    "service",
    "very",
    "not",
    "really",
]
POS, NEG = WORDS[:4], WORDS[4:8]


def sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        lab = "pos" if i % 2 == 0 else "neg"
        adj = rng.choice(POS if lab == "pos" else NEG)
        noun = rng.choice(["movie", "food", "service"])
        rows.append((f"the {noun} was {rng.choice(['', 'very ', 'really '])}{adj}", lab))
    return rows


def tokenizer(eos: bool = False):
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]"] + (["[EOS]"] if eos else [])
    vocab = {w: i for i, w in enumerate(special + WORDS)}
    tk = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    kw = {"eos_token": "[EOS]"} if eos else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", model_max_length=64, **kw
    )


def _tiny_bert(tok, **extra):
    """The tiny BERT config shared by the classifier and the bare encoder."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        **extra,
    )


def bert_classifier(
    folder: Path,
    num_labels: int = 2,
    safetensors: bool = True,
    labels: tuple[str, ...] = ("neg", "pos"),
) -> Path:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    tok = tokenizer()
    cfg = _tiny_bert(
        tok,
        num_labels=num_labels,
        id2label=dict(enumerate(labels[:num_labels])),
        label2id={n: i for i, n in enumerate(labels[:num_labels])},
    )
    model = BertForSequenceClassification(cfg)
    model.save_pretrained(folder, safe_serialization=safetensors)
    tok.save_pretrained(folder)
    if not safetensors and not (folder / "pytorch_model.bin").exists():
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        for f in folder.glob("*.safetensors"):
            f.unlink()
    return folder


def bert_encoder(folder: Path) -> Path:
    import torch
    from transformers import BertModel

    torch.manual_seed(0)
    tok = tokenizer()
    cfg = _tiny_bert(tok)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def gpt2(folder: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tok = tokenizer(eos=True)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_csv(
    path: Path, rows: list[tuple[str, str]], header=("text", "label"), delimiter: str = ","
) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_text_corpus(path: Path, n: int = 60) -> Path:
    paras = [" ".join(t for t, _ in sentences(3, seed=i)) for i in range(n)]
    path.write_text("\n\n".join(paras))
    return path


def onnx_classifier(
    folder: Path, external_data: bool = False, fixed_shape: tuple[int, int] | None = None
) -> Path:
    """A tiny BERT classifier folder with ``model.onnx`` exported beside its tokenizer and
    config.json (how ``save_pretrained`` + export leave them); returns the .onnx path.
    ``external_data`` stores every tensor in ``model.onnx.data`` (the layout of models over
    2 GB); ``fixed_shape`` pins the inputs' (batch, sequence) dimensions to numbers."""
    import onnx

    from wattlab.core.models.hf import load_hf_folder
    from wattlab.core.models.onnx_model import export_onnx

    bert_classifier(folder)
    path = export_onnx(load_hf_folder(folder, None, 2).model, folder / "model.onnx")
    (folder / "model.safetensors").unlink()
    if external_data or fixed_shape:
        m = onnx.load(str(path))
        for inp in m.graph.input if fixed_shape else ():
            for dim, n in zip(inp.type.tensor_type.shape.dim, fixed_shape, strict=True):
                dim.dim_value = n
        if external_data:
            onnx.save_model(
                m,
                str(path),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location="model.onnx.data",
                size_threshold=0,
            )
        else:
            onnx.save_model(m, str(path))
    return path
