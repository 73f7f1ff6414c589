"""Distributed data-parallel training (DDP): ``--nproc N`` and ``ddp:nproc=N`` launch N ranks
through torchrun (gloo on this CPU), count every rank's work, and fail or stop cleanly.

The e2e tests start torchrun and two ranks of a tiny BERT (20-30 s each on 2 shared cores)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests import tiny_models as tm
from wattlab.core.errors import SpecError
from wattlab.core.hardware import usable_cores
from wattlab.core.measure.meter import MeasureSettings
from wattlab.core.measure.store import RunStore
from wattlab.core.run import launch
from wattlab.core.run.client import SessionFailed, SessionRunner
from wattlab.core.spec import RunSpec
from wattlab.core.tempdirs import remove_owned

FAST = MeasureSettings(interval_s=0.05, idle_s=0.2)
WORKER_MARKS = ("wattlab.core.worker", "torch.distributed.run")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp-models")
    return {
        "bert": tm.bert_classifier(root / "bert"),
        # 80 rows: 64 train (an even split between 2 ranks), 16 eval
        "data": tm.write_csv(root / "data.csv", tm.sentences(80)),
    }


def ddp_spec(models, **kw) -> RunSpec:
    base = dict(
        model=str(models["bert"]),
        dataset=str(models["data"]),
        mode="train",
        epochs=1,
        batch_size=8,
        seq_len=16,
        nproc=2,
    )
    return RunSpec(**{**base, **kw})


def wattlab(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``wattlab`` CLI as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "wattlab.core.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def our_workers() -> list[psutil.Process]:
    """This test process's descendants that are workers, ranks or torchrun."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if any(m in " ".join(p.cmdline()) for m in WORKER_MARKS):
                found.append(p)
        except psutil.Error:
            continue
    return found


def assert_no_worker_left(timeout_s: float = 10.0) -> None:
    _, alive = psutil.wait_procs(our_workers(), timeout=timeout_s)
    assert not alive, [" ".join(p.cmdline()) for p in alive]


# -- without a process -------------------------------------------------------------------------
def test_ddp_technique_parses_and_sets_nproc_for_the_launch(tmp_path):
    from wattlab.core.techniques.catalog import get, parse_cli
    from wattlab.core.techniques.compose import spec_with_overrides

    spec = RunSpec(mode="train", techniques=(parse_cli("ddp:nproc=2"),))
    assert spec.nproc == 1 and spec_with_overrides(spec).nproc == 2
    run = launch.launch_spec(spec)
    cmd = launch.worker_command(run, tmp_path / "spec.json")
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert cmd[cmd.index("--nproc-per-node") + 1] == "2"
    assert cmd[cmd.index("--max-restarts") + 1] == "0"
    assert cmd[-3:] == ["-m", "wattlab.core.worker", str(tmp_path / "spec.json")]
    plain = launch.worker_command(RunSpec(mode="train"), tmp_path / "spec.json")
    assert plain == [sys.executable, "-m", "wattlab.core.worker", str(tmp_path / "spec.json")]
    env = launch.worker_env(run, {"PATH": "/bin", "RANK": "3"}, tmp_path)
    assert env["OMP_NUM_THREADS"] == str(max(1, usable_cores() // 2)) and "RANK" not in env
    assert "OMP_NUM_THREADS" not in launch.worker_env(RunSpec(), {}, tmp_path)
    with pytest.raises(SpecError, match="between 2 and"):
        get("ddp").parse_params({"nproc": "1"})
    with pytest.raises(SpecError, match="--nproc 4 and ddp:nproc=2 disagree"):
        launch.launch_spec(RunSpec(mode="train", nproc=4, techniques=spec.techniques))


def test_ddp_applies_to_training_only():
    from wattlab.core.techniques.base import Target
    from wattlab.core.techniques.catalog import get

    ddp = get("ddp")
    assert ddp.applicable(Target("train", "cpu", "hf"), {"nproc": 2}) == (True, None)
    ok, why = ddp.applicable(Target("infer", "cpu", "hf"), {"nproc": 2})
    assert not ok and "training mode" in why
    assert "share the cores" in ddp.warning(Target("train", "cpu", "hf"), {"nproc": 2})
    with pytest.raises(SpecError, match="--nproc 2 runs distributed training"):
        RunSpec(mode="infer", nproc=2).validate()
    with pytest.raises(SpecError, match="--save-model is not supported with --nproc 2"):
        RunSpec(mode="train", nproc=2, save_model="out").validate()


@pytest.mark.e2e
def test_nproc_with_infer_is_refused_in_one_line():
    r = wattlab("run", "--model", "demo", "--mode", "infer", "--nproc", "2")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "--nproc 2 runs distributed training (DDP): use it with --mode train" in r.stderr
    r = wattlab("run", "--mode", "train", "--nproc", "0")
    assert r.returncode == 2 and "processes (--nproc) must be a positive integer" in r.stderr


def test_shards_partition_the_permutation_with_equal_lengths(monkeypatch):
    from wattlab.core.worker import distributed as d

    order = np.random.default_rng(0).permutation(11)
    parts = []
    for r in range(3):
        monkeypatch.setattr(d, "_STATE", d._State(rank=r, world=3))
        parts.append(d.shard(order))
        assert d.rank_batch_size(8) == 2 and d.shard_len(11) == 4
    assert [len(p) for p in parts] == [4, 4, 4]  # 11 items padded to 12
    assert set(np.concatenate(parts)) == set(order.tolist())
    assert d._STATE.padded_items == 1
    monkeypatch.setattr(d, "_STATE", d._State())
    assert d.shard(order) is order and d.rank_batch_size(8) == 8


def test_root_cause_of_a_silent_rank_names_it(tmp_path):
    report = (
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n"
        + "=" * 60
        + "\nwattlab.core.worker FAILED\nFailures:\n[1]:\n  rank      : 0 (local_rank: 0)\n"
        "  exitcode  : 1 (pid: 11)\nRoot Cause (first observed failure):\n[0]:\n"
        "  time      : 2026-01-01_00:00:00\n  rank      : 1 (local_rank: 1)\n"
        "  exitcode  : -9 (pid: 12)\n  error_file: <N/A>\n" + "=" * 60 + "\n"
    )
    line = launch.root_cause_line(report, tmp_path / "none.json", 2)
    assert (
        line == "rank 1 of 2 failed first (killed by signal 9 (SIGKILL)) without an error message"
    )
    (tmp_path / "e.json").write_text(json.dumps({"message": {"message": "ValueError: bad\nx"}}))
    line = launch.root_cause_line(report, tmp_path / "e.json", 2)
    assert line == "rank 1 of 2 failed first (killed by signal 9 (SIGKILL)): ValueError: bad"
    assert (
        launch.root_cause_line("Traceback: nothing from torchrun", tmp_path / "e.json", 2) is None
    )


# -- two ranks, end to end ----------------------------------------------------------------------
@pytest.mark.e2e
def test_nproc_2_trains_the_whole_split_and_counts_both_ranks(models, tmp_path):
    out = tmp_path / "out"
    argv = ["run", "--model", str(models["bert"]), "--dataset", str(models["data"])]
    argv += ["--mode", "train", "--epochs", "1", "--batch-size", "8", "--seq-len", "16"]
    argv += ["--nproc", "2", "--idle", "0.2", "--interval", "0.05", "--out", str(out)]
    done = wattlab(*argv)
    assert done.returncode == 0, done.stderr
    r = json.loads((out / "result.json").read_text())
    s = r["session"]
    assert r["status"] == "completed" and r["spec"]["nproc"] == 2
    # Each rank trained 32 items; the run counts both: the whole training split, as one
    # process would over the same epoch, in as many optimizer steps (global batch 8 = 2 x 4).
    assert s["dataset"]["train_items"] == 64 and s["items"] == 64
    assert s["epochs"][0]["items"] == 64 and s["steps"] == 8 and s["tokens"] > 64
    assert s["device"]["threads"] == max(1, usable_cores() // 2)  # the cores split per rank
    assert s["metrics"]["accuracy"] is not None and s["dataset"]["eval_items"] == 16
    assert r["energy_per_item_j"] > 0 and r["throughput_items_per_s"] > 0
    assert s["distributed"]["ranks"] == 2 and s["distributed"]["backend"] == "gloo"
    assert s["peak_mem_source"].startswith("sum over 2 ranks")  # each rank's RSS, summed
    assert_no_worker_left()


@pytest.mark.e2e
def test_ddp_technique_runs_two_ranks_and_reports_them(models):
    events: list[dict] = []
    spec = ddp_spec(models, nproc=1, techniques=({"name": "ddp", "params": {"nproc": "2"}},))
    r = SessionRunner(spec, RunStore(Path(os.environ["WATTLAB_DATA_DIR"]) / "w.db"), FAST,
                      on_event=events.append).run()  # fmt: skip
    assert r["status"] == "completed" and r["session"]["items"] == 64
    (ddp,) = r["session"]["techniques"]
    d = ddp["details"]
    assert (d["ranks"], d["backend"], d["per_rank_batch"], d["global_batch"]) == (2, "gloo", 4, 8)
    assert d["threads_per_rank"] == max(1, usable_cores() // 2)
    assert 0 < d["parallel_efficiency"] <= 1 and "parallel efficiency" in ddp["description"]
    # Only rank 0 speaks: one device event (saying how many ranks ran), one result.
    devices = [e for e in events if e["event"] == "device"]
    assert len(devices) == 1 and devices[0]["ranks"] == 2
    steps = [e["items"] for e in events if e["event"] == "step"]
    assert steps == sorted(steps) and steps[-1] == 64  # every rank's items, as it goes
    assert_no_worker_left()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ("1:2:raise", "rank 1 of 2: RuntimeError: injected failure at batch 2"),
        ("1:2:exit", "rank 1 of 2 failed first (exit code 7) without an error message"),
    ],
)
def test_a_failing_rank_fails_the_run_with_its_message_and_leaves_no_process(
    models, monkeypatch, fault, needle
):
    from wattlab.core.worker.distributed import FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, fault)
    store = RunStore(Path(os.environ["WATTLAB_DATA_DIR"]) / "w.db")
    runner = SessionRunner(ddp_spec(models, epochs=3), store, FAST)
    t0 = time.monotonic()
    with pytest.raises(SessionFailed) as failed:
        runner.run()
    assert needle in str(failed.value)
    assert store.run(runner.run_id).status == "failed"
    assert time.monotonic() - t0 < 55
    assert_no_worker_left(timeout_s=5)


@pytest.mark.e2e
def test_a_hung_rank_fails_the_run_after_the_collective_timeout(models, monkeypatch):
    from wattlab.core.worker.distributed import FAULT_ENV, TIMEOUT_ENV

    monkeypatch.setenv(FAULT_ENV, "1:2:hang")
    monkeypatch.setenv(TIMEOUT_ENV, "3")
    runner = SessionRunner(
        ddp_spec(models), RunStore(Path(os.environ["WATTLAB_DATA_DIR"]) / "w.db"), FAST
    )
    with pytest.raises(SessionFailed) as failed:
        runner.run()
    msg = str(failed.value)
    assert "rank 0 of 2 failed first" in msg and "another rank stopped answering" in msg
    assert "3 s timeout" in msg
    assert_no_worker_left(timeout_s=5)


@pytest.mark.e2e
def test_cancel_stops_every_rank_and_keeps_the_run(models):
    first_step = threading.Event()
    runner = SessionRunner(
        ddp_spec(models, epochs=500),
        RunStore(Path(os.environ["WATTLAB_DATA_DIR"]) / "w.db"),
        FAST,
        on_event=lambda e: e["event"] == "step" and first_step.set(),
    )
    out: dict = {}
    th = threading.Thread(target=lambda: out.setdefault("r", runner.run()))
    th.start()
    assert first_step.wait(60)
    t0 = time.monotonic()
    runner.cancel()  # one "cancel" line on the stdin the ranks share: they agree on it
    th.join(30)
    assert not th.is_alive() and time.monotonic() - t0 < 5
    r = out["r"]
    assert r["status"] == "cancelled" and r["session"]["cancelled"] is True
    assert r["session"]["items"] > 0 and r["session"]["items"] % 8 == 0  # whole global batches
    assert_no_worker_left(timeout_s=5)


@pytest.mark.e2e
def test_ranks_die_with_a_killed_parent(models, tmp_path):
    argv = [sys.executable, "-m", "wattlab.core.cli.main", "run"]
    argv += ["--model", str(models["bert"]), "--dataset", str(models["data"]), "--mode"]
    argv += ["train", "--epochs", "500", "--batch-size", "8", "--seq-len", "16", "--nproc", "2"]
    argv += ["--idle", "0"]
    cli = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert cli.stdout is not None
        for line in cli.stdout:  # the CLI prints the phases: training has begun
            if line.startswith("[train]"):
                break
        tree = psutil.Process(cli.pid).children(recursive=True)
        cmds = [" ".join(p.cmdline()) for p in tree]
        assert sum("torch.distributed.run" in c for c in cmds) == 1, cmds
        assert sum(c.endswith("spec.json") and "torch" not in c for c in cmds) == 2, cmds
        os.kill(cli.pid, signal.SIGKILL)  # no cancel, no cleanup: the ranks must notice
        cli.wait(10)
        _, alive = psutil.wait_procs(tree, timeout=15)
        assert not alive, [" ".join(p.cmdline()) for p in alive]
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(10)
        remove_owned(cli.pid)  # the killed CLI's spec folder


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"save_model": "out"}, "save"),
        ({"lifecycle": True}, "lifecycle"),
        ({"techniques_more": "power-limit:watts=200"}, "power-limit"),
    ],
)
def test_what_ddp_ranks_cannot_do_is_refused_by_preflight_before_anything_runs(extra, needle):
    from wattlab.core.errors import SpecError
    from wattlab.core.run import preflight
    from wattlab.core.spec import RunSpec
    from wattlab.core.techniques.catalog import parse_cli

    techs = [parse_cli("ddp:nproc=2")]
    if "techniques_more" in extra:
        techs.append(parse_cli(extra.pop("techniques_more")))
    spec = RunSpec(model="demo", mode="train", techniques=tuple(techs), **extra)
    with pytest.raises(SpecError, match=needle):
        preflight.check(spec)


def test_padding_repeats_are_not_counted_as_more_items_of_the_split(monkeypatch):
    """63 items on 2 ranks: each epoch pads one repeat so both shards have 32; the result
    counts the split's 63 per epoch, as one process would, and says what it took out."""
    from wattlab.core.worker import distributed

    monkeypatch.setattr(distributed._STATE, "padded_items", 1)  # noqa: SLF001
    result = {"items": 128, "epochs": [{}, {}], "distributed": {}}
    distributed._exclude_padding(result)  # noqa: SLF001
    assert result["items"] == 126
    assert result["distributed"]["padded_items_excluded"] == 2
    even = {"items": 128, "epochs": [{}, {}], "distributed": {}}
    monkeypatch.setattr(distributed._STATE, "padded_items", 0)  # noqa: SLF001
    distributed._exclude_padding(even)  # noqa: SLF001
    assert even["items"] == 128 and "padded_items_excluded" not in even["distributed"]


def test_a_comparison_between_rank_counts_reports_speedup_and_scaling_efficiency():
    from wattlab.core.results import Verdict
    from wattlab.core.run.comparison import scaling

    # 2 ranks took 0.8x the time of one process (interval 0.7x-0.9x): speed-up 1.25x, 62.5%.
    t = Verdict("duration_s", "Time", "s", 10.0, 8.0, None, None, -2.0, -20.0, (0.7, 0.9), "better")
    sc = scaling([t], 1, 2)
    assert sc["speedup"] == pytest.approx(1.25) and sc["efficiency"] == pytest.approx(0.625)
    assert sc["efficiency_ci"] == pytest.approx([1 / 0.9 / 2, 1 / 0.7 / 2])
    assert scaling([t], 2, 2) is None  # same ranks: nothing to scale
    from wattlab.core.cli.printing import scaling_lines

    (line,) = scaling_lines(sc)
    assert "1 -> 2 rank(s)" in line and "speed-up 1.25x" in line and "0.62" in line
