"""Property tests: mutated configs, shard indexes, datasets and flag values, hundreds of them,
through the loaders and the CLI's validation. The promise for input the user controls: success,
or one clear line (a UserError; exit 2 in the CLI); never a traceback, never exit 1.

hypothesis generates and shrinks the cases (a failure is reported as the smallest input that
breaks the promise); the example counts keep the whole file under a minute on 2 cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import tiny_models as tm
from wattlab.core.errors import UserError


def cases(n: int) -> settings:
    """``n`` examples, the same ones on every run (CI never flakes on a new random draw); the
    fixtures are per test, their files rewritten by every example."""
    return settings(
        max_examples=n,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        deadline=None,
        derandomize=True,
    )


# -- values a hand-edited or hostile file may hold ------------------------------------------------
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["../../etc/passwd", "/etc/passwd", "bert", "gpt2", "", "\x00"]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
CONFIG_KEYS = [
    "model_type",
    "architectures",
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "num_labels",
    "id2label",
    "label2id",
    "pad_token_id",
    "torch_dtype",
    "auto_map",
]


@st.composite
def mutated_config(draw, base: dict) -> dict | list | str:
    """A valid config with a few fields replaced, removed or added; sometimes not an object."""
    if draw(st.integers(0, 19)) == 0:
        return draw(json_value)  # not an object at all
    cfg = dict(base)
    for key in draw(st.lists(st.sampled_from(CONFIG_KEYS), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            cfg[key] = draw(json_value)
        else:
            cfg.pop(key, None)
    return cfg


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return tm.bert_classifier(tmp_path_factory.mktemp("prop") / "bert")


def _copy_model(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def _user_error_or_success(call) -> None:
    try:
        call()
    except UserError as exc:
        text = str(exc)
        assert text and "\n" not in text.strip(), repr(text)  # one clear line


# -- config.json ----------------------------------------------------------------------------------
@cases(150)
@given(data=st.data())
def test_mutated_configs_are_read_or_refused_by_the_parent(bert, tmp_path, data):
    from wattlab.core.models.config import detect_task, read_config
    from wattlab.core.run.preflight import check
    from wattlab.core.spec import RunSpec

    base = json.loads((bert / "config.json").read_text())
    folder = _copy_model(bert, tmp_path / "m")
    cfg = data.draw(mutated_config(base))
    (folder / "config.json").write_text(json.dumps(cfg))

    def parent_side() -> None:
        detect_task(read_config(folder))
        check(RunSpec(model=str(folder)))

    _user_error_or_success(parent_side)


@cases(40)
@given(data=st.data())
def test_mutated_configs_load_or_are_refused_by_the_worker(bert, tmp_path, data):
    from wattlab.core.models.hf import load_hf_folder

    base = json.loads((bert / "config.json").read_text())
    folder = _copy_model(bert, tmp_path / "m")
    (folder / "config.json").write_text(json.dumps(data.draw(mutated_config(base))))
    _user_error_or_success(lambda: load_hf_folder(folder, None, 2))


def test_a_config_nested_100000_deep_is_refused_in_one_line(bert, tmp_path):
    from wattlab.core.models.config import read_config

    folder = _copy_model(bert, tmp_path / "m")
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError):
        read_config(folder)


# -- shard indexes --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> Path:
    from transformers import BertForSequenceClassification

    src = tm.bert_classifier(tmp_path_factory.mktemp("shards") / "src")
    folder = tmp_path_factory.mktemp("shards") / "sharded"
    BertForSequenceClassification.from_pretrained(src).save_pretrained(
        folder, max_shard_size="40KB", safe_serialization=True
    )
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab")):
            shutil.copy(f, folder / f.name)
    assert (folder / "model.safetensors.index.json").exists()
    return folder


shard_name = st.one_of(
    st.sampled_from(
        [
            "../outside.safetensors",
            "/etc/passwd",
            "sub/../../x.safetensors",
            "model-00001-of-00099.safetensors",
            "config.json",
            "",
        ]
    ),
    json_value,
)


@cases(60)
@given(data=st.data())
def test_mutated_shard_indexes_load_or_are_refused(sharded, tmp_path, data):
    from wattlab.core.models.hf import load_hf_folder

    folder = _copy_model(sharded, tmp_path / "m")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shape = data.draw(st.integers(0, 3))
    if shape == 0:  # weight_map not a dict of strings
        index["weight_map"] = data.draw(json_value)
    elif shape == 1:  # some entries point elsewhere
        keys = sorted(index["weight_map"])
        for k in data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3)):
            index["weight_map"][k] = data.draw(shard_name)
    elif shape == 2:
        index = data.draw(json_value)
    else:
        index.pop("weight_map")
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    outside = tmp_path / "outside.safetensors"
    shutil.copy(next(folder.glob("model-*.safetensors")), outside)  # a real file out of bounds
    _user_error_or_success(lambda: load_hf_folder(folder, None, 2))


# -- datasets -------------------------------------------------------------------------------------
cell = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["pos", "neg", "a\u2028b", "a\x85b", "x\fy", 'quote "in" it', "line\nbreak"]),
)


@st.composite
def csv_bytes(draw) -> bytes:
    """A CSV that is valid, almost valid, or garbage."""
    import csv
    import io

    header = draw(st.sampled_from([["text", "label"], ["label", "text"], ["t", "l"], ["text"]]))
    rows = draw(st.lists(st.lists(cell, min_size=1, max_size=4), max_size=12))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    raw = buf.getvalue().encode("utf-8")
    if draw(st.integers(0, 4)) == 0:  # damage: cut, insert a bad byte, or random bytes
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=8)) + raw[cut:]
    return raw


@st.composite
def jsonl_bytes(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        obj = draw(
            st.one_of(
                st.fixed_dictionaries({"text": cell, "label": st.sampled_from(["pos", "neg", 1])}),
                json_value,
            )
        )
        lines.append(json.dumps(obj, ensure_ascii=draw(st.booleans())))
    raw = "\n".join(lines).encode("utf-8")
    if draw(st.integers(0, 4)) == 0:
        raw += draw(st.binary(max_size=8))
    return raw


@cases(150)
@given(raw=csv_bytes())
def test_mutated_csv_files_load_or_are_refused(tmp_path, raw):
    from wattlab.core.models.datasets import load_classification

    path = tmp_path / "d.csv"
    path.write_bytes(raw)
    _user_error_or_success(lambda: load_classification(path))


@cases(150)
@given(raw=jsonl_bytes(), causal=st.booleans())
@example(raw=b'{"\\n": "a"}\n{"\\n": "b"}\n', causal=False)  # a column named by a line break
def test_mutated_jsonl_files_load_or_are_refused(tmp_path, raw, causal):
    from wattlab.core.models.datasets import load_classification, load_text

    path = tmp_path / "d.jsonl"
    path.write_bytes(raw)
    _user_error_or_success(lambda: (load_text if causal else load_classification)(path))


# -- the CLI's flags ------------------------------------------------------------------------------
NUMERIC_FLAGS = [
    "--interval",
    "--idle",
    "--min-measure",
    "--epochs",
    "--max-steps",
    "--batch-size",
    "--lr",
    "--grad-accum",
    "--patience",
    "--seq-len",
    "--seed",
    "--eval-fraction",
    "--warmup-batches",
    "--infer-batches",
    "--threads",
]
COMPARE_FLAGS = ["--cooldown", "--repeats", "--margin", "--carbon-intensity", "--pue", "--price"]
flag_value = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e308", "2**32", "4294967296", "abc", ""]),
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.floats().map(repr),
)


class _Reached(BaseException):
    """The CLI got past validation and would start a session now."""


@cases(200)
@given(
    command=st.sampled_from(["run", "compare"]),
    flags=st.lists(
        st.tuples(st.sampled_from(NUMERIC_FLAGS + COMPARE_FLAGS), flag_value),
        min_size=1,
        max_size=3,
    ),
)
def test_flag_values_are_accepted_or_refused_in_one_line_before_anything_runs(
    monkeypatch, capsys, command, flags
):
    from wattlab.core.cli.main import main
    from wattlab.core.measure.store import RunStore
    from wattlab.core.run import client, comparison

    def reached(*a, **kw):
        raise _Reached

    monkeypatch.setattr(client.SessionRunner, "run", reached)
    monkeypatch.setattr(comparison, "compare", reached)
    argv = [command, "--model", "demo"] + (["--optimized", "none"] if command == "compare" else [])
    for flag, value in flags:
        if command == "run" and flag in COMPARE_FLAGS:
            continue
        argv += [f"{flag}={value}"]
    capsys.readouterr()
    try:
        code = main(argv)
    except _Reached:
        return
    except SystemExit as exc:  # argparse: a value of the wrong type
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (argv, code, err)
    assert err and "Traceback" not in "\n".join(err), (argv, err)
    store = RunStore.open_default()
    assert not store.runs(limit=1), "a refused flag must not leave a stored run"


def test_the_flag_table_refuses_every_non_finite_float(capsys):
    from wattlab.core.cli.main import main

    for flag in ("--interval", "--idle", "--lr", "--pue", "--min-measure", "--cooldown"):
        for bad in ("nan", "inf"):
            argv = ["compare", "--model", "demo", "--optimized", "none", f"{flag}={bad}"]
            assert main(argv) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and flag in err[0], (flag, bad, err)
