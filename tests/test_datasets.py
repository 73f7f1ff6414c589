from __future__ import annotations

import pytest

from tests.tiny_models import sentences, write_csv, write_jsonl
from wattlab.core.errors import DataError
from wattlab.core.models.datasets import load_classification, load_demo, load_text
from wattlab.core.models.demo_data import CLASSES, generate


def test_csv_autodetects_columns_and_string_labels(tmp_path):
    p = write_csv(tmp_path / "d.csv", sentences(50))
    d = load_classification(p, seed=1)
    assert d.label_names == ["neg", "pos"]
    assert len(d.train_texts) == 40 and len(d.eval_texts) == 10
    assert set(d.train_labels) == {0, 1}


def test_tsv_jsonl_and_named_columns(tmp_path):
    rows = sentences(20)
    p = write_csv(tmp_path / "d.tsv", rows, header=("review", "sentiment"), delimiter="\t")
    assert load_classification(p).num_labels == 2
    j = write_jsonl(
        tmp_path / "d.jsonl", [{"body": t, "y": 1 if lab == "pos" else 0} for t, lab in rows]
    )
    d = load_classification(j, text_column="body", label_column="y")
    assert d.label_names == ["0", "1"]  # integer labels, numerically ordered


def test_integer_labels_sort_numerically(tmp_path):
    rows = [(f"text {i}", str(i % 11)) for i in range(44)]
    d = load_classification(write_csv(tmp_path / "d.csv", rows))
    assert d.label_names[:3] == ["0", "1", "2"] and d.label_names[-1] == "10"


def test_split_is_seeded(tmp_path):
    p = write_csv(tmp_path / "d.csv", sentences(40))
    a, b, c = (load_classification(p, seed=s) for s in (3, 3, 4))
    assert a.eval_texts == b.eval_texts and a.eval_texts != c.eval_texts


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"", "is empty"),
        (b"text,label\n", "header but no rows"),
        (b"text,other\nhello,1\n", "cannot tell which column is the label"),
        (b"text,label\n\xff\xfe bad,1\n", "not UTF-8"),
        (b"text,label\na,x\nb,x\nc,x\nd,x\n", "single class"),
    ],
)
def test_bad_csv_gets_specific_error(tmp_path, content, needle):
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises(DataError, match=needle):
        load_classification(p)


def test_named_column_missing(tmp_path):
    p = write_csv(tmp_path / "d.csv", sentences(10))
    with pytest.raises(DataError, match="no column 'comment'"):
        load_classification(p, text_column="comment")


def test_bad_jsonl_and_format(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "label": 1}\nnot json\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_classification(p)
    x = tmp_path / "d.parquet"
    x.write_bytes(b"PAR1")
    with pytest.raises(DataError, match="unsupported dataset format .parquet"):
        load_classification(x)
    with pytest.raises(DataError, match="dataset not found"):
        load_classification(tmp_path / "missing.csv")


def test_text_corpus_paragraphs(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("one doc\n\ntwo doc\n\nthree doc\n\nfour\n")
    d = load_text(p)
    assert len(d.train_texts) + len(d.eval_texts) == 4
    q = tmp_path / "one.txt"
    q.write_text("just one paragraph")
    with pytest.raises(DataError, match="at least 2 documents"):
        load_text(q)


def test_demo_generator_is_deterministic_balanced_and_not_trivial():
    a, b = generate(2000, seed=5), generate(2000, seed=5)
    assert a == b and a != generate(2000, seed=6)
    counts = {c: sum(1 for _, lab in a if lab == c) for c in CLASSES}
    assert all(400 <= n <= 600 for n in counts.values())
    texts = [t for t, _ in a]
    assert len(set(texts)) > 0.9 * len(texts)  # enough variation
    assert any(" not " in f" {t} " for t, lab in a if lab == "praise")  # negation flips
    d = load_demo(2000, 5)
    assert d.label_names == list(CLASSES) and len(d.eval_texts) == 400
