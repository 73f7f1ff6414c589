"""Hostile and mistaken model folders, ONNX files and datasets: each is refused with a
ModelError / DataError / SpecError naming the file or field (never an internal error), or loads
correctly where the input is valid. In-process: the loaders are called directly."""

from __future__ import annotations

import csv
import json
import shutil
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from tests import tiny_models as tm
from wattlab.core.errors import DataError, ModelError, SpecError
from wattlab.core.models.datasets import load_classification, load_text
from wattlab.core.models.hf import load_hf_folder, load_tokenizer
from wattlab.core.models.onnx_model import load_onnx

# -- shared tiny models, built once per module and copied per test ---------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hardening")
    return {
        "bert": tm.bert_classifier(root / "bert"),
        "gpt2": tm.gpt2(root / "gpt2"),
        "onnx": tm.onnx_classifier(root / "onnx").parent,
        "onnx_ext": tm.onnx_classifier(root / "onnx_ext", external_data=True).parent,
    }


@pytest.fixture
def copy(built, tmp_path):
    """copy(name) -> a fresh copy of a built folder, free to break."""

    def _copy(name: str, dest: str | None = None) -> Path:
        return Path(shutil.copytree(built[name], tmp_path / (dest or name)))

    return _copy


def edit_config(folder: Path, **fields: Any) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(fields)
    (folder / "config.json").write_text(json.dumps(cfg))


def shard(folder: Path, weight_map: Any) -> None:
    """Turn a single-file checkpoint into an index naming ``weight_map``'s shards."""
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )


def all_keys_to(folder: Path, shard_name: str) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return {k: shard_name for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__


# -- 5: a folder without tokenizer files -----------------------------------------------------


def test_hf_folder_without_tokenizer_files_is_refused(copy):
    f = copy("bert")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (f / name).unlink()
    with pytest.raises(ModelError, match=r"bert has no tokenizer files \(tokenizer\.json"):
        load_hf_folder(f, None, 2)


def test_onnx_without_tokenizer_next_to_it_is_refused(copy):
    f = copy("onnx")
    (f / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="no tokenizer files.*next to model.onnx"):
        load_onnx(f / "model.onnx")


def test_tokenizer_with_only_special_tokens_is_refused(copy):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    f = copy("bert")
    Tokenizer(WordLevel({"[PAD]": 0, "[UNK]": 1}, unk_token="[UNK]")).save(
        str(f / "tokenizer.json")
    )
    with pytest.raises(
        ModelError, match="tokenizer in bert has no vocabulary.*only special tokens"
    ):
        load_tokenizer(f)


def test_demo_and_tiny_tokenizers_still_load(copy, tmp_path):
    """The demo's cache (its own word-level tokenizer, saved as the runner saves it) and the
    tiny test models keep loading: they provide tokenizer.json."""
    from wattlab.core.models.demo import build_untrained

    model, tok, _ = build_untrained([t for t, _ in tm.sentences(40)], ["neg", "pos"])
    model.save_pretrained(tmp_path / "demo", safe_serialization=True)
    tok.save_pretrained(tmp_path / "demo")
    lm = load_hf_folder(tmp_path / "demo", "classify", 2, ["neg", "pos"])
    assert lm.tokenizer("the movie was good")["input_ids"][1] != lm.tokenizer.unk_token_id
    assert len(load_tokenizer(copy("gpt2"))) == len(tm.tokenizer(eos=True))


# -- 9: ONNX with external data ------------------------------------------------------------------


def _ctx(loaded: Any, workdir: Path) -> Any:
    import torch

    from wattlab.core.spec import RunSpec
    from wattlab.core.worker.techniques.context import TechniqueContext

    ids = loaded.tokenizer([t for t, _ in tm.sentences(32)], truncation=True, max_length=16)
    return TechniqueContext(
        loaded,
        RunSpec(mode="infer", batch_size=8),
        torch.device("cpu"),
        loaded.task,
        loaded.tokenizer.pad_token_id,
        ids["input_ids"],
        workdir,
        lambda m: None,
    )


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_onnx_with_external_data_loads_and_quantizes(copy, tmp_path, mode):
    import numpy as np

    from wattlab.core.worker.techniques.catalog import implementation

    f = copy("onnx_ext")
    fp32_bytes = (f / "model.onnx").stat().st_size + (f / "model.onnx.data").stat().st_size
    lm = load_onnx(f / "model.onnx")
    assert lm.size_bytes == fp32_bytes
    tech = implementation("quantization")
    params = {"backend": "ort", "mode": mode, "calibration_batches": "2"}
    work = tmp_path / "work"
    work.mkdir()
    app = tech.apply(_ctx(lm, work), tech.parse_params(params))
    assert app.details["bytes_before"] == fp32_bytes > app.details["bytes_after"] > 0
    assert lm.size_bytes == app.details["bytes_after"]
    out = lm.session.run(
        None, {"input_ids": np.ones((2, 5), np.int64), "attention_mask": np.ones((2, 5), np.int64)}
    )
    assert out[0].shape == (2, 2)


def test_external_data_outside_the_folder_is_refused(copy, tmp_path):
    import onnx

    f = copy("onnx_ext")
    shutil.move(f / "model.onnx.data", tmp_path / "elsewhere.data")
    m = onnx.load(str(f / "model.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location":
                kv.value = "../elsewhere.data"
    onnx.save_model(m, str(f / "model.onnx"))
    with pytest.raises(
        ModelError, match=r"names '\.\./elsewhere\.data', a file outside the model folder"
    ):
        load_onnx(f / "model.onnx")


def test_external_data_symlinked_outside_the_folder_is_refused(copy, tmp_path):
    f = copy("onnx_ext")
    shutil.move(f / "model.onnx.data", tmp_path / "elsewhere.data")
    (f / "model.onnx.data").symlink_to(tmp_path / "elsewhere.data")
    with pytest.raises(ModelError, match="model.onnx.data.*outside the model folder"):
        load_onnx(f / "model.onnx")


# -- 11: user mistakes that became internal errors -----------------------------------------------


def test_deeply_nested_config_json_is_a_model_error(copy):
    f = copy("bert")
    (f / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match="config.json is nested too deeply"):
        load_hf_folder(f, None, 2)


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("architectures", [1, 2], "architectures must be a list of class names"),
        ("architectures", "BertForSequenceClassification", "architectures must be a list"),
        ("num_hidden_layers", -3, "num_hidden_layers must be a positive integer, not -3"),
        ("num_hidden_layers", 0, "num_hidden_layers must be a positive integer, not 0"),
        ("num_hidden_layers", 10**9, "num_hidden_layers is 1000000000"),
        ("num_hidden_layers", True, "num_hidden_layers must be a positive integer"),
        ("hidden_size", 10**7, "describes a model of about"),
        ("id2label", ["neg", "pos"], "id2label must be an object"),
        ("type_vocab_size", 0, "type_vocab_size must be a positive integer, not 0"),
    ],
)
def test_config_field_mistakes_are_named(copy, field, value, needle):
    f = copy("bert")
    edit_config(f, **{field: value})
    with pytest.raises(ModelError, match=needle):
        load_hf_folder(f, None, 2)


def test_config_with_fewer_layers_than_the_weights_is_refused(copy):
    f = copy("bert")
    edit_config(f, num_hidden_layers=1)
    with pytest.raises(ModelError, match="checkpoint tensors have no place in the model"):
        load_hf_folder(f, None, 2)


@pytest.mark.parametrize(
    "weight_map,needle",
    [
        (["model.safetensors"], "weight_map must map tensor names to shard file names"),
        ({"a": 1}, "weight_map must map tensor names to shard file names"),
        ("model.safetensors", "weight_map must map"),
    ],
)
def test_bad_shard_index_is_named(copy, weight_map, needle):
    f = copy("bert")
    (f / "model.safetensors").rename(f / "shard.safetensors")
    shard(f, weight_map)
    with pytest.raises(ModelError, match=needle):
        load_hf_folder(f, None, 2)


@pytest.mark.parametrize(
    "content",
    [
        ["text,label", "a,pos,extra", "b,neg", "c,pos", "d,neg"],
        ["text,label", "a,pos", "b,neg", "c,pos,x,y", "d,neg"],
    ],
)
def test_csv_row_with_an_extra_field_is_named(tmp_path, content):
    p = tmp_path / "d.csv"
    p.write_text("\n".join(content) + "\n")
    row = next(i for i, line in enumerate(content[1:], 1) if line.count(",") > 1)
    with pytest.raises(DataError, match=f"d.csv row {row} has .* fields but the header has 2"):
        load_classification(p)


def _spec(**kw: Any) -> Any:
    from wattlab.core.spec import RunSpec

    return RunSpec(**kw)


def _load(spec: Any) -> Any:
    import torch

    from wattlab.core.worker.inputs import load_model_and_data

    return load_model_and_data(spec, torch.device("cpu"), None)


def test_seq_len_above_the_position_limit_is_refused(copy, tmp_path):
    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(20))
    spec = _spec(model=str(copy("bert")), dataset=str(data), seq_len=4096)
    with pytest.raises(SpecError, match="--seq-len 4096 is above .* limit of 64 positions"):
        _load(spec)
    corpus = tm.write_text_corpus(tmp_path / "c.txt")
    with pytest.raises(SpecError, match="limit of 64 positions .*n_positions"):
        _load(_spec(model=str(copy("gpt2")), dataset=str(corpus), seq_len=65))
    lm, _, _ = _load(_spec(model=str(copy("gpt2", "g2")), dataset=str(corpus), seq_len=64))
    assert lm.task == "causal-lm"


def test_onnx_with_fixed_input_shape_is_refused(tmp_path):
    path = tm.onnx_classifier(tmp_path / "fixed", fixed_shape=(2, 8))
    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(20))
    spec = _spec(model=str(path), dataset=str(data), batch_size=16, seq_len=32)
    with pytest.raises(ModelError, match=r"fixed input shape input_ids\[2, 8\]"):
        _load(spec)


def test_onnx_seq_len_above_the_position_limit_is_refused(copy, tmp_path):
    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(20))
    spec = _spec(model=str(copy("onnx") / "model.onnx"), dataset=str(data), seq_len=100)
    with pytest.raises(SpecError, match="--seq-len 100 is above .* limit of 64"):
        _load(spec)


@pytest.mark.parametrize("strip_pad", [False, True])
def test_classify_on_a_causal_lm_pads_batches(copy, strip_pad):
    import torch

    f = copy("gpt2")
    if strip_pad:  # a tokenizer saved without a pad token: pad becomes eos
        tc = json.loads((f / "tokenizer_config.json").read_text())
        tc.pop("pad_token", None)
        (f / "tokenizer_config.json").write_text(json.dumps(tc))
    lm = load_hf_folder(f, "classify", 2, for_training=True)
    tok = lm.tokenizer
    assert lm.model.config.pad_token_id == tok.pad_token_id is not None
    if strip_pad:
        assert tok.pad_token == "[EOS]" and any("padding uses [EOS]" in n for n in lm.notes)
    enc = tok(["the movie was good", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert lm.model(**enc).logits.shape == (2, 2)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("{ not json", "config.json next to model.onnx is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "config.json next to model.onnx is nested too deeply"),
        ("[1, 2]", "config.json next to model.onnx does not hold a JSON object"),
        ('{"model_type": ["bert"]}', "config.json next to model.onnx: model_type must be"),
        ('{"model_type": "bert", "id2label": ["a"]}', "id2label must be an object"),
    ],
)
def test_bad_config_next_to_onnx_is_blamed_on_config_json(copy, text, needle):
    f = copy("onnx")
    (f / "config.json").write_text(text)
    with pytest.raises(ModelError, match=needle):
        load_onnx(f / "model.onnx")


@pytest.mark.parametrize("kind", ["bert", "onnx"])
def test_config_error_is_blamed_on_config_json_when_the_tokenizer_reads_it(copy, kind):
    """A tokenizer_config.json without tokenizer_class makes transformers read config.json to
    pick the tokenizer: a wrong field there is still config.json's fault."""
    f = copy(kind)
    tc = json.loads((f / "tokenizer_config.json").read_text())
    tc.pop("tokenizer_class")
    (f / "tokenizer_config.json").write_text(json.dumps(tc))
    edit_config(f, hidden_dropout_prob="x")
    with pytest.raises(ModelError, match="^config.json.* could not be read by transformers"):
        load_hf_folder(f, None, 2) if kind == "bert" else load_onnx(f / "model.onnx")


def test_model_type_list_in_hf_config_is_named(copy):
    f = copy("bert")
    edit_config(f, model_type=["bert"])
    with pytest.raises(ModelError, match="model_type must be a string"):
        load_hf_folder(f, None, 2)


def test_txt_for_classification_says_what_works(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("some text\n\nmore text\n")
    with pytest.raises(DataError) as exc:
        load_classification(p)
    msg = str(exc.value)
    assert "use .csv, .tsv or .jsonl" in msg and "causal language models" in msg
    assert not msg.endswith("or .txt")


# -- 12: newline handling and memory in datasets ---------------------------------------------


@pytest.mark.parametrize("sep", ["\u2028", "\u0085", "\x0c", "\u2029", "\x1c"])
def test_csv_and_jsonl_keep_unicode_line_separators_inside_texts(tmp_path, sep):
    rows = [(f"first{sep}second {i}", "pos" if i % 2 else "neg") for i in range(8)]
    p = tm.write_csv(tmp_path / "d.csv", rows)
    d = load_classification(p, eval_fraction=0.25)
    assert sorted(d.train_texts + d.eval_texts) == sorted(t for t, _ in rows)
    j = tmp_path / "d.jsonl"
    j.write_text(
        "".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n" for t, lab in rows)
    )
    d = load_classification(j, eval_fraction=0.25)
    assert sorted(d.train_texts + d.eval_texts) == sorted(t for t, _ in rows)


def test_jsonl_text_corpus_keeps_line_separators(tmp_path):
    j = tmp_path / "c.jsonl"
    j.write_text(
        "".join(json.dumps({"text": f"a\u2028b {i}"}, ensure_ascii=False) + "\n" for i in range(4))
    )
    d = load_text(j)
    assert sorted(d.train_texts + d.eval_texts) == [f"a\u2028b {i}" for i in range(4)]


def test_text_corpus_with_windows_line_endings_splits_into_paragraphs(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"one doc\r\nstill one\r\n\r\ntwo doc\r\n\r\nthree doc\r\n")
    d = load_text(p)
    assert sorted(d.train_texts + d.eval_texts) == ["one doc\nstill one", "three doc", "two doc"]


def test_csv_quoted_newlines_are_kept(tmp_path):
    rows = [(f"line one\nline two\r\nline three {i}", "pos" if i % 2 else "neg") for i in range(8)]
    p = tm.write_csv(tmp_path / "d.csv", rows)
    d = load_classification(p, eval_fraction=0.25)
    assert sorted(d.train_texts + d.eval_texts) == sorted(t for t, _ in rows)


def test_deeply_nested_jsonl_line_is_a_data_error(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "label": 1}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DataError, match="d.jsonl line 2 is nested too deeply"):
        load_classification(p)


def test_csv_loader_streams_rows(tmp_path):
    """Only the text and label columns are kept: a wide CSV costs a few times its size, not the
    ~15x of a dict per row (tracemalloc's peak; the process's RSS was ~45x)."""
    p = tmp_path / "wide.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label", "a", "b", "c", "d", "e", "f", "g"])
        for i in range(20_000):
            w.writerow([i, "good movie", "xy"[i % 2], 1, 2, 3, 4, 5, 6, 7])
    tracemalloc.start()
    try:
        d = load_classification(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(d.train_texts) + len(d.eval_texts) == 20_000
    assert peak < 6 * p.stat().st_size, peak / p.stat().st_size


# -- 13: every file a model folder names stays inside it -----------------------------------------


@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_shard_names_outside_the_folder_are_refused(copy, tmp_path, where):
    f = copy("bert")
    other = copy("bert", "other")
    target = "../other/model.safetensors" if where == "parent" else str(other / "model.safetensors")
    shard(f, all_keys_to(f, target))
    (f / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="index.json names .*, a file outside the model folder"):
        load_hf_folder(f, None, 2)


@pytest.mark.parametrize("name", ["model.safetensors", "shard-1.safetensors"])
def test_weights_symlinked_outside_the_folder_are_refused(copy, name):
    f = copy("bert")
    other = copy("bert", "other")
    if name != "model.safetensors":
        shard(f, all_keys_to(f, name))
    (f / "model.safetensors").unlink()
    (f / name).symlink_to(other / "model.safetensors")
    with pytest.raises(ModelError, match=f"{name} .*outside the model folder"):
        load_hf_folder(f, None, 2)


def test_sharded_checkpoint_inside_the_folder_loads(copy):
    f = copy("bert")
    shard(f, all_keys_to(f, "shards/part-1.safetensors"))
    (f / "shards").mkdir()
    (f / "model.safetensors").rename(f / "shards" / "part-1.safetensors")
    assert load_hf_folder(f, None, 2).label_names == ["neg", "pos"]


def test_tokenizer_files_outside_the_folder_are_refused(copy, tmp_path):
    f = copy("bert")
    other = copy("gpt2", "other")
    tc = json.loads((f / "tokenizer_config.json").read_text())
    shutil.copy(other / "tokenizer.json", other / "tokenizer.1.0.0.json")
    tc["fast_tokenizer_files"] = ["../other/tokenizer.1.0.0.json"]
    (f / "tokenizer_config.json").write_text(json.dumps(tc))
    with pytest.raises(
        ModelError, match=r"names '\.\./other/tokenizer\.1\.0\.0\.json', a file outside"
    ):
        load_tokenizer(f)
    g = copy("bert", "linked")
    (g / "tokenizer.json").unlink()
    (g / "tokenizer.json").symlink_to(other / "tokenizer.json")
    with pytest.raises(ModelError, match="tokenizer.json .*outside the model folder"):
        load_hf_folder(g, None, 2)


def test_hugging_face_cache_snapshot_with_blob_symlinks_loads(copy, tmp_path):
    """The hub cache keeps files in ../../blobs and links them from snapshots/<rev>/: that
    layout is a model folder too."""
    src = copy("bert", "src")
    repo = tmp_path / "models--tiny--bert"
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    for i, p in enumerate(sorted(src.iterdir())):
        blob = repo / "blobs" / f"blob{i}"
        shutil.move(p, blob)
        (snap / p.name).symlink_to(Path("../../blobs") / blob.name)
    assert load_hf_folder(snap, None, 2).label_names == ["neg", "pos"]


def test_a_hub_cache_whose_blobs_folder_is_a_link_elsewhere_is_refused(copy, tmp_path):
    """blobs -> /somewhere makes every "blob" a file from anywhere: the layout exception must
    not open that door."""
    src = copy("bert", "src")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    repo = tmp_path / "models--tiny--bert"
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (repo / "blobs").symlink_to(elsewhere)
    for i, p in enumerate(sorted(src.iterdir())):
        shutil.move(p, elsewhere / f"blob{i}")
        (snap / p.name).symlink_to(Path("../../blobs") / f"blob{i}")
    with pytest.raises(ModelError, match="outside the model folder"):
        load_hf_folder(snap, None, 2)


def test_a_vocabulary_without_its_unknown_token_is_refused_at_load(copy):
    f = copy("bert")
    for p in f.glob("*token*"):
        p.unlink()
    (f / "vocab.txt").write_text("[PAD]\nthe\nfood\n")
    (f / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    with pytest.raises(ModelError, match="tokenizer files in bert could not be read"):
        load_tokenizer(f)


def test_texts_that_give_no_token_are_refused_before_the_model_runs(copy, tmp_path):
    from wattlab.core.spec import RunSpec
    from wattlab.core.worker.inputs import prepare_data

    path = tmp_path / "empty_text.csv"
    path.write_text("text,label\n" + "".join(f",{'pos' if i % 2 else 'neg'}\n" for i in range(20)))
    loaded = load_hf_folder(copy("bert"), None, 2)
    data = load_classification(path)
    with pytest.raises(DataError, match=r"texts in the training split .* give no token"):
        prepare_data(RunSpec(dataset=str(path)), loaded, data, "classify")


# -- pickles on an unsafe torch (defect 2) --------------------------------------------------------
@pytest.mark.parametrize("version", ["2.4.1", "2.5.0+cu121", "2.9.1+cpu", "2.10.0a0+git12ab", "x"])
def test_bin_weights_are_refused_on_a_torch_that_cannot_unpickle_safely(tmp_path, version):
    from wattlab.core.models import hf

    expected_safe = version.startswith("2.10")
    binf = tmp_path / "pytorch_model.bin"
    if expected_safe:
        hf.refuse_unsafe_pickle(binf, version)
        return
    with pytest.raises(ModelError, match=r"cannot load pickles safely .*torch>=2\.10"):
        hf.refuse_unsafe_pickle(binf, version)


def test_a_bin_folder_is_refused_before_any_pickle_is_opened_on_an_old_torch(tmp_path, monkeypatch):
    import torch

    from wattlab.core.models import hf

    folder = tm.bert_classifier(tmp_path / "bin", safetensors=False)
    opened = []
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    monkeypatch.setattr(torch, "load", lambda *a, **kw: opened.append(a))
    with pytest.raises(ModelError, match="pytorch_model.bin is a pickle"):
        hf.load_hf_folder(folder, None, 2)
    assert opened == []
