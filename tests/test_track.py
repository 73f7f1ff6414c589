"""``wattlab.track``: a block of the user's own code measured in its own process, stored like
every other run, with its phases, steps and metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

import wattlab
from wattlab.core.errors import UserError
from wattlab.core.measure.store import RunStore
from wattlab.core.run.track import TRACK_KIND, Track, TrackError


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(i * i for i in range(2000))


def store() -> RunStore:
    return RunStore.open_default()  # the test's own data dir (tests/conftest.py)


def test_a_block_with_phases_and_steps_is_measured_and_stored(tmp_path):
    out = tmp_path / "reports"
    with wattlab.track(label="finetune", out=out, interval_s=0.05, idle_s=0.2) as t:
        assert t.measuring and t.run_id is not None
        t.phase("train")
        for _ in range(6):
            busy(0.05)
            t.step(items=32, tokens=512)
        mid = t.total()
        t.phase("eval")
        busy(0.2)
        t.metric("accuracy", 0.91)
    r = t.result
    assert r is not None and r["status"] == "completed"
    # the running total was readable mid-block, with its label
    assert mid.energy_j is not None and mid.energy_j > 0 and mid.label == r["total"]["label"]
    assert mid.items == 192 and mid.energy_per_item_j == pytest.approx(mid.energy_j / 192, rel=0.5)
    # phases, each with its own energy; steps charged to the phase they ran in
    assert r["markers"]["phases"] == ["tracked", "train", "eval"]
    assert (r["markers"]["steps"], r["markers"]["items"], r["markers"]["tokens"]) == (6, 192, 3072)
    assert r["markers"]["metrics"] == {"accuracy": 0.91}
    for phase in ("train", "eval"):
        assert r["phases"][phase] == pytest.approx(0.3 if phase == "train" else 0.2, abs=0.15)
        assert r["phase_energy"][phase]["gross_j"] > 0
        assert r["phase_energy"][phase]["label"] == r["total"]["label"]
    # energy per item: the phases with steps (train), over the items counted
    train_j = sum(e["by_phase_j"].get("train", 0.0) for e in r["energy"] if e["in_total"])
    assert r["measured_phase"]["phases"] == ["train"]
    assert r["measured_phase"]["gross_j"] == pytest.approx(train_j)
    assert r["energy_per_item_j"] == pytest.approx(train_j / 192)
    assert r["energy_per_token_j"] == pytest.approx(train_j / 3072)
    assert r["markers"]["energy_basis"] == "phases with steps"
    # stored as a run of kind "track", listed, with the same result; outputs like profile --out
    st = store()
    row = st.run(t.run_id)
    assert (row.kind, row.status, row.label) == (TRACK_KIND, "completed", "finetune")
    assert t.run_id in [x.id for x in st.runs()]
    assert st.result(t.run_id)["energy_per_item_j"] == r["energy_per_item_j"]
    assert [e["name"] for _, k, e in st.events(t.run_id) if k == "metric"] == ["accuracy"]
    assert json.loads((out / "summary.json").read_text())["run_id"] == t.run_id
    assert "train" in (out / "samples.csv").read_text()
    assert t.energy_j == r["total"]["gross_j"]  # after the block: its final figure


def test_a_block_without_steps_is_its_own_measured_work():
    with wattlab.track(label="plain", interval_s=0.05, idle_s=0) as t:
        busy(0.1)
    r = t.result
    assert r["measured_phase"]["phases"] == ["tracked"]
    assert r["markers"]["energy_basis"] == "marked phases"
    assert r["energy_per_item_j"] is None and r["markers"]["items"] is None


@pytest.mark.parametrize(
    ("exc", "status", "message"),
    [
        (RuntimeError("boom"), "failed", "RuntimeError: boom"),
        (KeyboardInterrupt(), "cancelled", "interrupted (Ctrl-C)"),
    ],
)
def test_an_exception_ends_the_run_and_is_reraised(exc, status, message):
    with pytest.raises(type(exc)):
        with wattlab.track(label="broken", interval_s=0.05, idle_s=0) as t:
            t.phase("train")
            t.step(items=4)
            raise exc
    row = store().run(t.run_id)
    assert (row.status, row.message) == (status, message)
    r = store().result(t.run_id)
    assert r["status"] == status and r["markers"]["items"] == 4 and r["phase_energy"]["train"]
    assert wattlab.current() is None  # the next block may start


def test_decorator_measures_each_call_and_reaches_its_track():
    calls = []

    @wattlab.track(label="infer", interval_s=0.05, idle_s=0)
    def infer(n: int) -> int:
        t = wattlab.current()
        assert t is not None
        calls.append(t.run_id)
        busy(0.05)
        t.step(items=n)
        return 2 * n

    assert infer(8) == 16 and infer(4) == 8
    assert len(set(calls)) == 2  # one run per call
    r = infer.last_track.result
    assert r["markers"]["items"] == 4 and r["energy_per_item_j"] > 0
    assert store().run(calls[0]).spec["function"].endswith("infer")
    with wattlab.track(label="outer", interval_s=0.05, idle_s=0) as outer:
        assert infer(2) == 4  # inside a tracked block: counted there, no run of its own
    assert outer.result["markers"]["items"] == 2
    assert len([x for x in store().runs() if x.kind == TRACK_KIND]) == 3


def test_mistakes_are_one_line_user_errors():
    with pytest.raises(UserError, match="WattLab's own"):
        with wattlab.track(interval_s=0.05, idle_s=0) as t:
            t.phase("idle")
    bad = [
        lambda t: t.step(items=-1),
        lambda t: t.step(tokens=1.5),
        lambda t: t.metric("x", object()),
        lambda t: wattlab.track().__enter__(),  # nested
    ]
    with wattlab.track(interval_s=0.05, idle_s=0) as t:
        for call in bad:
            with pytest.raises(TrackError) as err:
                call(t)
            assert "\n" not in str(err.value) and isinstance(err.value, ValueError)
    with pytest.raises(TrackError, match="after its tracked block"):
        t.step()
    with pytest.raises(TrackError, match="one block"):
        t.__enter__()
    with pytest.raises(TrackError, match="sampling interval"):
        wattlab.track(interval_s=0.0001).__enter__()
    with pytest.raises(TrackError, match="is a file"):
        wattlab.track(out=__file__)
    assert wattlab.current() is None


def test_metrics_are_cleaned_for_json():
    with Track(label="m", interval_s=0.05, idle_s=0) as t:
        t.metric("nan", float("nan"))
        t.metric("flag", True)
        t.metric("name", "bert")
    assert t.result["markers"]["metrics"] == {"nan": None, "flag": True, "name": "bert"}


@pytest.mark.e2e
def test_importing_wattlab_stays_light():
    code = (
        "import sys, wattlab\n"
        "@wattlab.track(label='x')\n"
        "def f(): pass\n"
        "heavy = ('torch', 'numpy', 'transformers', 'PySide6', 'pyqtgraph', 'psutil', 'sqlite3',"
        " 'wattlab.core.measure.sampling')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
