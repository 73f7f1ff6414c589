"""torch.compile really compiles (in the prepare phase, outside the measured work) and the GPU
power limit is set by the parent, checked before anything runs, and always restored."""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import pytest

from tests import tiny_models as tm
from tests.fakes.fake_pynvml import (
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNKNOWN,
    FakeGpu,
    FakePowerLimits,
    add_power_limits,
    make_module,
)
from wattlab.core.errors import SpecError, UserError
from wattlab.core.run.power_limit import GpuPowerLimit
from wattlab.core.spec import RunSpec
from wattlab.core.techniques.base import Target
from wattlab.core.techniques.catalog import get, parse_cli
from wattlab.core.techniques.compose import resolve

CPU_INFER = Target("infer", "cpu", "hf", "classify", "bert")
CUDA_INFER = Target("infer", "cuda", "hf", "classify", "bert", (9, 0))


# -- compile: where it applies -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,target,needle",
    [
        ("compile:mode=reduce-overhead", CPU_INFER, "CUDA graphs"),
        ("compile", Target("infer", "cpu", "onnx", "classify"), "ONNX"),
        ("compile:mode=fast", CPU_INFER, "must be one of default, reduce-overhead"),
    ],
)
def test_compile_refusals_say_why(text, target, needle):
    with pytest.raises(SpecError, match=needle):
        resolve([parse_cli(text)], target)


def test_compile_needs_a_cpu_compiler(monkeypatch):
    tech = get("compile")
    params = tech.parse_params({})
    assert tech.applicable(CPU_INFER, params) == (True, None)  # g++ is on this machine
    assert tech.applicable(Target("rag", "cpu", "hf"), params)[0] is False
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    ok, why = tech.applicable(CPU_INFER, params)
    assert not ok and "C++ compiler" in why and "no-such-compiler-xyz" in why


def test_warmup_covers_a_last_batch_of_one():
    from wattlab.core.worker.techniques.compilation import warmup_sizes

    assert warmup_sizes(8, [16, 64]) == [8]
    assert warmup_sizes(8, [17, 64]) == [8, 1]  # 17 = 2 x 8 + a batch of one item
    assert warmup_sizes(1, [17]) == [1]


def test_compiles_after_the_warmup_are_counted_and_logged():
    from wattlab.core.worker.techniques.compilation import CompileWatch

    ticks = iter([10.0, 10.5, 20.0, 20.25])  # start, end of each compile
    details = {"compiles_after_warmup": 0, "compile_s_after_warmup": 0.0}
    lines: list[str] = []
    watch = CompileWatch(details, lines.append, clock=lambda: next(ticks))
    for cid in ("0/1", "1/0"):
        watch.start(SimpleNamespace(compile_id=cid))
        watch.end(SimpleNamespace(compile_id=cid))
    assert details["compiles_after_warmup"] == 2
    assert details["compile_s_after_warmup"] == pytest.approx(0.75)
    assert len(lines) == 2 and "after the warm-up" in lines[0]


def _session(tmp_path, folder, mode, technique, **kw):
    from wattlab.core.measure.meter import MeasureSettings
    from wattlab.core.measure.store import RunStore
    from wattlab.core.run.client import SessionRunner

    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(80))
    spec = RunSpec(
        model=str(folder),
        dataset=str(data),
        mode=mode,
        batch_size=8,
        seq_len=16,
        techniques=(parse_cli(technique),),
        **kw,
    )
    store = RunStore(tmp_path / "w.db")
    return SessionRunner(spec, store, MeasureSettings(0.05, 0.1), check_neighbours=False), store


@pytest.mark.e2e
def test_compiled_inference_session_matches_eager_and_reports_compile_time(tmp_path):
    runner, _ = _session(tmp_path, tm.bert_classifier(tmp_path / "bert"), "infer", "compile")
    r = runner.run()
    s = r["session"]
    (app,) = s["techniques"]
    det = app["details"]
    assert app["name"] == "compile"
    assert det["frames_compiled"] >= 1 and det["graphs"] >= 1  # Dynamo really captured it
    assert det["compile_time_s"] > 0.5  # Inductor built kernels, in the prepare phase
    assert det["compiles_after_warmup"] == 0  # the measured phase ran what was compiled
    # The compiled model's predictions against the eager model's on the same eval items.
    assert s["agreement"]["prediction_agreement"] == 1.0
    assert s["agreement"]["max_abs_logit_diff"] < 1e-4
    assert r["phases"]["prepare"] >= det["compile_time_s"] * 0.9
    assert s["items"] > 0 and s["metrics"]["scored_items"] == 16


@pytest.mark.e2e
def test_compiled_training_session_trains_and_compiles_before_the_measured_phase(tmp_path):
    folder = tm.bert_classifier(tmp_path / "bert")
    runner, _ = _session(tmp_path, folder, "train", "compile", epochs=1, max_steps=3)
    r = runner.run()
    s = r["session"]
    det = s["techniques"][0]["details"]
    # A training forward, its backward, and evaluation's no-grad forward were compiled up front.
    assert det["frames_compiled"] >= 2 and det["compile_time_s"] > 0.5
    assert det["compiles_after_warmup"] == 0
    assert s["steps"] == 3
    assert math.isfinite(s["metrics"]["train_loss"])
    assert 0.0 <= s["metrics"]["accuracy"] <= 1.0


# -- power limit ---------------------------------------------------------------------------------


def _nvml(*limits: FakePowerLimits, uuids: tuple[str, ...] = ()):
    gpus = [FakeGpu(uuid=u) for u in uuids] or [FakeGpu() for _ in limits]
    return add_power_limits(make_module(gpus), list(limits))


def _limit(spec: RunSpec, nvml, env=None) -> GpuPowerLimit:
    """The limit as SessionRunner.run builds it (checked first), to enter around a block."""
    limit = GpuPowerLimit.for_spec(spec, nvml, env)
    assert limit is not None
    return limit


def _spec(watts: str = "250", device: str = "auto") -> RunSpec:
    return RunSpec(device=device, techniques=(parse_cli(f"power-limit:watts={watts}"),))


def test_power_limit_is_set_and_restored_on_success():
    lim = FakePowerLimits(current_mw=650_000)
    with _limit(_spec("250"), _nvml(lim), env={}) as rec:
        assert lim.current_mw == 250_000  # in force inside the block
    assert lim.current_mw == 650_000 and lim.history == [650_000, 250_000, 650_000]
    assert (rec.gpu, rec.previous_w, rec.set_w, rec.restored) == ("gpu0", 650.0, 250.0, True)
    assert (rec.min_w, rec.max_w, rec.default_w) == (200.0, 700.0, 700.0)


@pytest.mark.parametrize("raised", [RuntimeError("the worker crashed"), KeyboardInterrupt()])
def test_power_limit_is_restored_when_the_block_fails(raised):
    lim = FakePowerLimits()
    with pytest.raises(type(raised)), _limit(_spec("300"), _nvml(lim), env={}):
        assert lim.current_mw == 300_000
        raise raised
    assert lim.current_mw == 700_000 and lim.history[-1] == 700_000


def test_power_limit_out_of_range_is_refused_with_the_range_before_anything_is_set():
    lim = FakePowerLimits()
    with pytest.raises(UserError) as err, _limit(_spec("150"), _nvml(lim), env={}):
        pytest.fail("the block must not run")
    msg = str(err.value)
    assert "150 W is outside the range" in msg and "200-700 W" in msg and "\n" not in msg
    assert lim.history == []


@pytest.mark.parametrize(
    "code,needle", [(NVML_ERROR_NO_PERMISSION, "needs root"), (NVML_ERROR_NOT_SUPPORTED, "not")]
)
def test_power_limit_refusals_are_one_line_before_anything_runs(code, needle):
    lim = FakePowerLimits(set_error=lambda mw: code)
    with pytest.raises(UserError) as err:
        GpuPowerLimit.for_spec(_spec("250"), _nvml(lim), env={})
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and msg.startswith("power-limit:")
    assert lim.current_mw == 700_000


def test_power_limit_needs_a_gpu():
    tech = get("power-limit")
    ok, why = tech.applicable(CPU_INFER, tech.parse_params({"watts": "250"}))
    assert not ok and why.startswith("a GPU power limit needs an NVIDIA GPU")
    assert tech.applicable(CUDA_INFER, tech.parse_params({}))[0]
    with pytest.raises(UserError, match="needs an NVIDIA GPU"):
        GpuPowerLimit.for_spec(_spec(device="cpu"), _nvml(FakePowerLimits()), env={})
    no_driver = add_power_limits(make_module([], init_error=12), [])
    with pytest.raises(UserError, match="no NVIDIA driver"):
        GpuPowerLimit.for_spec(_spec(), no_driver, env={})


def test_power_limit_finds_the_sessions_gpu_through_cuda_visible_devices():
    a, b, c = FakePowerLimits(), FakePowerLimits(), FakePowerLimits()
    nvml = _nvml(a, b, c, uuids=("GPU-aaa", "GPU-bbb", "GPU-ccc"))
    env = {"CUDA_VISIBLE_DEVICES": "2,0"}
    with _limit(_spec("400", device="cuda:1"), nvml, env=env) as rec:
        assert a.current_mw == 400_000 and c.current_mw == 700_000  # cuda:1 is NVML GPU 0
    assert (rec.gpu, rec.nvml_index) == ("gpu1", 0)
    with pytest.raises(UserError, match="not among the 2 NVIDIA GPU"):
        GpuPowerLimit.for_spec(_spec(device="cuda:2"), nvml, env=env)


def test_a_failed_restore_is_a_warning_with_the_command():
    lim = FakePowerLimits(current_mw=600_000)
    lim.set_error = lambda mw: NVML_ERROR_UNKNOWN if lim.history[-1:] == [250_000] else None
    limit = GpuPowerLimit.for_spec(_spec("250"), _nvml(lim), env={})
    assert limit is not None
    with limit:
        pass
    final: dict = {"warnings": []}
    limit.report(final)
    assert final["power_limit"]["restored"] is False and lim.current_mw == 250_000
    (w,) = final["warnings"]
    assert "could not be restored to 600 W" in w and "sudo nvidia-smi -i 0 -pl 600" in w


def test_without_a_power_limit_nvml_is_not_touched():
    broken = make_module([], init_error=999)
    assert GpuPowerLimit.for_spec(RunSpec(), broken) is None


def test_worker_reports_the_limit_nvml_enforces(monkeypatch):
    import torch

    from wattlab.core.worker.techniques.catalog import implementation

    lim = FakePowerLimits(current_mw=250_000)
    monkeypatch.setitem(sys.modules, "pynvml", _nvml(lim))
    tech = implementation("power-limit")
    ctx = SimpleNamespace(
        dev=torch.device("cpu"), spec=RunSpec(), loaded=SimpleNamespace(kind="hf")
    )
    app = tech.apply(ctx, tech.parse_params({"watts": "250"}))
    assert app.details["enforced_w"] == 250.0 and "250 W enforced" in app.description
    assert not any("not the" in w for w in app.warnings)
    lim.enforced_mw = 200_000  # a lower limit set by someone else wins
    app = tech.apply(ctx, tech.parse_params({"watts": "250"}))
    assert any("enforces 200 W, not the 250 W asked" in w for w in app.warnings)
    monkeypatch.setitem(sys.modules, "pynvml", make_module([], init_error=12))
    app = tech.apply(ctx, tech.parse_params({"watts": "250"}))
    assert app.details["enforced_w"] is None and "not verified" in app.description


def test_session_runner_refuses_a_forbidden_limit_before_any_run_is_stored(tmp_path, monkeypatch):
    from wattlab.core.measure.sensors import discover
    from wattlab.core.measure.store import RunStore
    from wattlab.core.run.client import SessionRunner

    sensors = discover()
    lim = FakePowerLimits(set_error=lambda mw: NVML_ERROR_NO_PERMISSION)
    monkeypatch.setitem(sys.modules, "pynvml", _nvml(lim))
    store = RunStore(tmp_path / "w.db")
    runner = SessionRunner(_spec(), store, sensors=sensors, check_neighbours=False)
    with pytest.raises(UserError, match="needs root"):
        runner.run()
    assert store.runs() == [] and lim.current_mw == 700_000
    sensors.close()


@pytest.mark.e2e
def test_session_runner_sets_the_limit_for_the_worker_and_restores_it(tmp_path, monkeypatch):
    """On this CPU-only machine the worker refuses power-limit (no CUDA device): the parent had
    set the limit before starting it and restores it once it exits; the record is stored."""
    from wattlab.core.measure.sensors import discover
    from wattlab.core.run.client import SessionFailed

    sensors = discover()
    lim = FakePowerLimits(current_mw=500_000)
    monkeypatch.setitem(sys.modules, "pynvml", _nvml(lim))
    runner, store = _session(tmp_path, tm.bert_classifier(tmp_path / "b"), "infer", "power-limit")
    runner.sensors = sensors
    with pytest.raises(SessionFailed, match="needs an NVIDIA GPU"):
        runner.run()
    assert lim.history == [500_000, 250_000, 500_000]
    assert runner.run_id is not None
    rec = store.result(runner.run_id)["power_limit"]
    assert rec["restored"] is True and rec["set_w"] == 250.0 and rec["previous_w"] == 500.0
    sensors.close()


@pytest.mark.parametrize("other", ["onnx-runtime", "quantization:backend=ort"])
def test_compile_with_onnx_runtime_is_refused_before_the_run(other):
    with pytest.raises(SpecError, match="compile compiles the PyTorch model"):
        resolve([parse_cli("compile"), parse_cli(other)], Target("infer", "cpu", "hf"))
