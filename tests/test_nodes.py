"""Other nodes' energy: exporters scraped directly, or a Prometheus server asked; unknown stays
unknown, resets and gaps are said, and the flags refuse what does not go together."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import time

import pytest

from tests.fakes.fake_power import ConstantPowerSensor, fake_gpu_set, sensor_set
from tests.fakes.fake_prometheus import FakePrometheus
from wattlab.core.cli.node_flags import (
    node_flags,
    node_meter_factory,
    node_meter_from_args,
    scrape_period,
)
from wattlab.core.errors import SpecError
from wattlab.core.measure.exporter import NodeExporter
from wattlab.core.measure.nodes import NodeScraper, metrics_url, read_counters
from wattlab.core.measure.nodes_prometheus import (
    PrometheusError,
    PrometheusQuery,
    PrometheusWindow,
)

TICK_S = 0.02  # the exporters' sampling interval in these tests


def start(sensors) -> tuple[NodeExporter, str]:
    x = NodeExporter(sensors, interval_s=TICK_S)
    port = x.start("127.0.0.1", 0)
    return x, f"127.0.0.1:{port}"


@pytest.fixture
def two_nodes():
    """Node a: a fake GPU at 100 W (NVML counter, measured); node b: CPU 40 W measured and RAM
    5 W estimated."""
    a, url_a = start(fake_gpu_set(watts=100.0))
    b, url_b = start(
        sensor_set(
            ConstantPowerSensor("cpu", 40.0, "measured"),
            ConstantPowerSensor("ram", 5.0, "estimated"),
        )
    )
    yield (a, url_a), (b, url_b)
    a.stop()
    b.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- direct scraping ------------------------------------------------------------------------------
def test_two_exporters_scraped_into_one_window(two_nodes):
    (_, url_a), (_, url_b) = two_nodes
    scraper = NodeScraper([url_a, url_b], period_s=0.1)
    scraper.start()
    time.sleep(1.0)
    result = scraper.finish()
    a, b = result.nodes
    # the counters move every tick: each edge of the window is off by at most one tick
    assert a.energy_j == pytest.approx(100.0 * a.window_s, abs=100.0 * 3 * TICK_S)
    assert b.energy_j == pytest.approx(45.0 * b.window_s, abs=45.0 * 3 * TICK_S)
    assert b.by_source_j["cpu"] == pytest.approx(40.0 * b.window_s, abs=40.0 * 3 * TICK_S)
    assert (a.label, b.label) == ("measured", "estimated")
    assert a.metrics == ["wattlab"]  # its DCGM names were not counted a second time
    assert a.resolution_s == TICK_S and 0.9 < a.window_s < 1.5
    assert result.total_j == pytest.approx(a.energy_j + b.energy_j)
    assert result.label == "estimated"  # the total carries its weakest part
    assert result.reason is None and not a.warnings and not b.warnings
    stored = json.loads(json.dumps(result.to_dict()))
    assert stored["total_j"] == result.total_j and len(stored["per_node"]) == 2


def test_a_node_down_is_unknown_never_zero(two_nodes):
    (_, url_a), _ = two_nodes
    down = f"127.0.0.1:{free_port()}"
    scraper = NodeScraper([url_a, down], period_s=0.1, timeout_s=0.5)
    scraper.start()
    time.sleep(0.3)
    result = scraper.finish()
    a, gone = result.nodes
    assert gone.energy_j is None
    assert "did not answer at the window's start" in gone.warnings[0]
    assert result.total_j is None and result.unknown == [metrics_url(down)]
    assert "1 of 2 nodes unknown" in result.reason
    assert result.known_j == pytest.approx(a.energy_j)
    assert result.to_dict()["total_j"] is None


def test_a_node_that_stops_answering_before_the_end_is_unknown(two_nodes):
    (_, url_a), (b, url_b) = two_nodes
    scraper = NodeScraper([url_a, url_b], period_s=0.1, timeout_s=0.5)
    scraper.start()
    time.sleep(0.3)
    b.stop()
    result = scraper.finish()
    assert result.nodes[0].energy_j is not None
    assert result.nodes[1].energy_j is None
    assert "did not answer at the window's end" in result.nodes[1].warnings[0]


class Scripted:
    """A fetch that answers each scrape with the next text (an exception is raised)."""

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)

    def __call__(self, url: str, timeout_s: float) -> str:
        got = self.answers.pop(0)
        if isinstance(got, Exception):
            raise got
        return got


def wattlab_text(joules: float, source: str = "gpu0", label: str = "measured") -> str:
    return f'wattlab_energy_joules_total{{source="{source}",label="{label}"}} {joules}\n'


def scripted_run(fetch: Scripted, rounds: int):
    """start, ``rounds`` periodic scrapes (driven by hand), finish."""
    scraper = NodeScraper(["n:9464"], period_s=3600.0, fetch=fetch)
    scraper.start()
    for _ in range(rounds):
        scraper._round()  # noqa: SLF001 - the periodic thread's step, without waiting for it
    return scraper.finish().nodes[0]


def test_counter_reset_sums_the_pieces_and_warns():
    # 10 -> 20 (+10), restart -> 5 (a new piece: +5), -> 15 (+10)
    node = scripted_run(
        Scripted(wattlab_text(10), wattlab_text(20), wattlab_text(5), wattlab_text(15)), 2
    )
    assert node.energy_j == pytest.approx(25.0)
    assert any("went back 1x" in w for w in node.warnings)


def test_a_failed_scrape_during_the_run_is_a_warning_only():
    node = scripted_run(
        Scripted(wattlab_text(10), OSError("connection refused"), wattlab_text(30)), 1
    )
    assert node.energy_j == pytest.approx(20.0)
    assert any("1 scrape(s) failed (connection refused)" in w for w in node.warnings)


def test_text_that_is_not_metrics_is_a_failed_scrape():
    node = scripted_run(Scripted(wattlab_text(10), "<html>{{{", wattlab_text(30)), 1)
    assert node.energy_j == pytest.approx(20.0)
    assert any("not Prometheus text" in w for w in node.warnings)


def test_a_series_missing_at_the_end_makes_the_node_unknown():
    both = wattlab_text(10) + wattlab_text(1, "cpu")
    node = scripted_run(Scripted(both, wattlab_text(20)), 0)
    assert node.energy_j is None and "cpu missing at the end" in node.warnings[0]


DCGM = """# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="0",UUID="GPU-a",device="nvidia0"}} {gpu0}
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="1",UUID="GPU-b",device="nvidia1"}} {gpu1}
DCGM_FI_DEV_POWER_USAGE{{gpu="0",UUID="GPU-a",device="nvidia0"}} 300
"""
RAPL = """# TYPE node_rapl_package_joules_total counter
node_rapl_package_joules_total{{index="0",path="/sys/class/powercap/intel-rapl:0"}} {pkg}
node_rapl_core_joules_total{{index="0",path="/sys/class/powercap/intel-rapl:0:0"}} {core}
node_rapl_dram_joules_total{{index="0",path="/sys/class/powercap/intel-rapl:0:2"}} {dram}
"""


def test_dcgm_and_node_exporter_rapl_names_are_understood():
    start_text = DCGM.format(gpu0=1_000_000, gpu1=5_000_000) + RAPL.format(
        pkg=100.0, core=50.0, dram=10.0
    )
    end_text = DCGM.format(gpu0=1_300_000, gpu1=5_100_000) + RAPL.format(
        pkg=160.0, core=90.0, dram=14.0
    )
    node = scripted_run(Scripted(start_text, end_text), 0)
    # GPUs: 300 J + 100 J (mJ counters); RAPL: package 60 J + dram 4 J, core (part of the
    # package) not counted again
    assert node.energy_j == pytest.approx(464.0)
    assert node.metrics == ["dcgm", "rapl"] and node.label == "measured"
    assert node.by_source_j["rapl-package-0"] == pytest.approx(60.0)


def test_wattlab_names_win_over_dcgm_names_at_one_url():
    counters, interval = read_counters(
        wattlab_text(5) + DCGM.format(gpu0=1, gpu1=2) + "wattlab_exporter_interval_seconds 1\n"
    )
    assert [c.kind for c in counters] == ["wattlab"] and interval == 1.0


# -- Prometheus ---------------------------------------------------------------------------------
T0, T1 = 1_700_000_000.0, 1_700_000_060.0


def series(instance: str, step: float, skip: tuple[float, float] | None = None, **labels):
    """Raw samples every ``step`` s over [T0, T1] (none inside ``skip``)."""
    t, values = T0 + 1, []
    while t <= T1:
        if not (skip and skip[0] < t < skip[1]):
            values.append([t, str(t - T0)])
        t += step
    return {"metric": {"instance": instance, "job": "gpu", **labels}, "values": values}


def vector(instance: str, value: float, **labels) -> dict:
    return {"metric": {"instance": instance, **labels}, "value": [T1, str(value)]}


def prometheus_answer(with_down_target: bool):
    def answer(query: str, at: float):
        if query.startswith("min by (instance)"):
            ups = [vector("a:9464", 1), vector("b:9464", 0)]
            return "vector", ups + ([vector("c:9464", 1)] if with_down_target else [])
        if "wattlab_energy_joules_total" not in query:
            return "vector" if query.startswith("sum") else "matrix", []
        if query.startswith("sum by (instance, source, label)"):
            return "vector", [
                vector("a:9464", 500.0, source="gpu0", label="measured"),
                vector("b:9464", 200.0, source="cpu", label="measured"),
                vector("b:9464", 20.0, source="ram", label="estimated"),
            ]
        return "matrix", [
            series("a:9464", 5.0, source="gpu0", label="measured"),
            series("b:9464", 5.0, source="cpu", label="measured"),
            series("b:9464", 5.0, skip=(T0 + 20, T0 + 45), source="ram", label="estimated"),
        ]

    return answer


def test_prometheus_energy_per_instance_with_resolution_and_gaps():
    with FakePrometheus(prometheus_answer(with_down_target=True)) as prom:
        result = PrometheusQuery(prom.url, '{job="gpu"}').energy(T0, T1)
        queries = list(prom.queries)
    a, b, c = result.nodes
    assert (a.node, a.energy_j, a.label, a.resolution_s) == ("a:9464", 500.0, "measured", 5.0)
    assert b.energy_j == pytest.approx(220.0) and b.label == "estimated"
    assert any("ram: 1 gap(s) in its samples, longest 30.0 s" in w for w in b.warnings)
    assert any("failed to scrape it at least once" in w for w in b.warnings)
    assert c.energy_j is None and "no energy counter" in c.warnings[0]
    assert result.total_j is None and result.known_j == pytest.approx(720.0)
    assert result.unknown == ["c:9464"]
    increase = (
        "sum by (instance, source, label) "
        '(increase(wattlab_energy_joules_total{job="gpu"}[60000ms]))'
    )
    assert (increase, T1) in queries
    assert all(at == T1 for _, at in queries)


def test_prometheus_total_when_every_target_answers():
    with FakePrometheus(prometheus_answer(with_down_target=False)) as prom:
        result = PrometheusQuery(prom.url, 'job="gpu"').energy(T0, T1)
    assert result.total_j == pytest.approx(720.0) and result.label == "estimated"
    assert result.to_dict()["method"] == "prometheus"


def test_prometheus_dcgm_fallback_for_an_instance_without_wattlab():
    def answer(query: str, at: float):
        if query.startswith("sum by (instance, gpu, UUID)"):
            return "vector", [vector("g:9400", 3_000_000.0, gpu="0", UUID="GPU-x")]
        if query.startswith("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"):
            return "matrix", [series("g:9400", 15.0, gpu="0", UUID="GPU-x")]
        return ("vector" if not query.endswith("ms]") else "matrix"), []

    with FakePrometheus(answer) as prom:
        (node,) = PrometheusQuery(prom.url).energy(T0, T1).nodes
    assert node.energy_j == pytest.approx(3000.0)  # mJ -> J
    assert node.metrics == ["dcgm"] and node.resolution_s == 15.0


def test_a_prometheus_window_asks_at_its_end_for_its_length():
    clock = iter([T0, T1])
    with FakePrometheus(prometheus_answer(with_down_target=False)) as prom:
        window = PrometheusWindow(PrometheusQuery(prom.url), clock=lambda: next(clock))
        window.start()
        result = window.finish()
        queries = list(prom.queries)
    assert result.total_j == pytest.approx(720.0)
    assert all(at == T1 and "[60000ms]" in q for q, at in queries)


def test_prometheus_errors_leave_the_total_unknown():
    with FakePrometheus(lambda q, t: "parse error at char 5") as prom:
        result = PrometheusQuery(prom.url).energy(T0, T1)
    assert result.total_j is None and result.nodes == []
    assert "parse error at char 5" in result.warnings[0]
    unreachable = PrometheusQuery(f"127.0.0.1:{free_port()}", timeout_s=1.0).energy(T0, T1)
    assert unreachable.total_j is None and "no answer from" in unreachable.warnings[0]
    assert unreachable.reason == "no node answered with an energy counter"


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="no prometheus binary")
def test_a_real_prometheus_server_scraping_an_exporter(tmp_path):
    x, url = start(fake_gpu_set(watts=100.0))
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: wattlab\n"
        f"    static_configs:\n      - targets: ['{url}']\n"
    )
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        query = PrometheusQuery(f"http://127.0.0.1:{port}", 'job="wattlab"')
        _wait_scraped(query)
        time.sleep(1.0)  # a sample or two before the window
        t0 = time.time()
        time.sleep(6.0)
        t1 = time.time()
        time.sleep(1.5)  # so the scrape after the window's end is in
        result = query.energy(t0, t1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        x.stop()
    (node,) = result.nodes
    assert node.node == url and node.label == "measured"
    assert node.energy_j == pytest.approx(600.0, rel=0.1)  # 100 W x 6 s
    assert node.resolution_s == pytest.approx(1.0, abs=0.1)


def _wait_scraped(query: PrometheusQuery, timeout_s: float = 30.0) -> None:
    """Until Prometheus has scraped the exporter once (its first scrape comes seconds after it
    says it is ready)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if query.query('up{job="wattlab"} == 1', time.time()):
                return
        except PrometheusError:
            pass
        time.sleep(0.2)
    raise AssertionError("prometheus never scraped the exporter")


# -- the flags ------------------------------------------------------------------------------------
def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    node_flags(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--nodes", "a:1", "--prometheus", "http://p:9090"], "give one"),
        (["--node-selector", 'job="x"'], "needs --prometheus"),
        (["--scrape-interval", "2"], "needs --nodes"),
        (["--nodes", " , "], "no URL given"),
        (["--nodes", "a:notaport"], "the port is not a number"),
        (["--nodes", "ftp://a:21"], "is not host:port or an http(s) URL"),
        (["--prometheus", "http://p:9090", "--node-selector", "{a}{b}"], "give label matchers"),
    ],
)
def test_node_flags_refuse_in_one_line(argv, needle):
    with pytest.raises(SpecError, match=None) as e:
        node_meter_from_args(parse(*argv))
    assert needle in str(e.value)


def test_node_flags_build_the_meter():
    assert node_meter_from_args(parse()) is None
    m = node_meter_from_args(
        parse("--nodes", "a:9464,http://b:9464/x,a:9464", "--scrape-interval", "2")
    )
    assert isinstance(m, NodeScraper)
    assert m.urls == ["http://a:9464/metrics", "http://b:9464/x"] and m.period_s == 2.0
    m.close()
    p = node_meter_from_args(parse("--prometheus", "http://p:9090", "--node-selector", "job='g'"))
    assert isinstance(p, PrometheusWindow)
    assert p.query.base_url == "http://p:9090" and p.query.selector == "job='g'"
    with pytest.raises(argparse.ArgumentTypeError, match="scrape interval"):
        scrape_period("0")


def test_the_factory_gives_a_fresh_meter_per_run():
    assert node_meter_factory(parse()) is None
    make = node_meter_factory(parse("--nodes", "a:9464"))
    one, two = make(), make()
    assert isinstance(one, NodeScraper) and one is not two
    one.close()
    two.close()
    with pytest.raises(SpecError, match="needs --nodes"):
        node_meter_factory(parse("--scrape-interval", "1"))


@pytest.mark.e2e
def test_a_session_run_gets_each_nodes_energy_over_its_measured_phase(two_nodes, tmp_path):
    """`wattlab run --nodes A,B`: the window opens at the measured phase and closes at its end
    mark, so each node's energy is its power over (about) the measured phase."""
    from tests import tiny_models as tm
    from wattlab.core.measure.meter import MeasureSettings
    from wattlab.core.measure.store import RunStore
    from wattlab.core.run.client import SessionRunner
    from wattlab.core.spec import RunSpec

    (_, url_a), (_, url_b) = two_nodes
    model = tm.bert_classifier(tmp_path / "bert")
    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(80))
    spec = RunSpec(model=str(model), dataset=str(data), batch_size=8, seq_len=16)
    runner = SessionRunner(
        spec,
        RunStore(tmp_path / "w.db"),
        MeasureSettings(0.05, 0.2, min_measure_s=1.0),
        node_meter=NodeScraper([url_a, url_b], period_s=0.2),
    )
    result = runner.run()
    nodes = result["nodes"]
    a, b = nodes["per_node"]
    measured_s = result["measured_phase"]["duration_s"]
    assert measured_s > 0.1
    # The window is the measured phase, give or take the scrape round-trips at its two edges
    # (the phase is placed by the worker's clock, the window by the scrapes).
    assert a["window_s"] == pytest.approx(measured_s, abs=0.5)
    assert a["energy_j"] == pytest.approx(100.0 * a["window_s"], abs=100.0 * 3 * TICK_S)
    assert b["energy_j"] == pytest.approx(45.0 * b["window_s"], abs=45.0 * 3 * TICK_S)
    assert nodes["total_j"] == pytest.approx(a["energy_j"] + b["energy_j"])
    assert nodes["label"] == "estimated" and nodes["method"] == "scrape"
    stored = RunStore(tmp_path / "w.db").result(result["run_id"])
    assert stored["nodes"]["total_j"] == nodes["total_j"]


def test_run_and_compare_take_the_node_flags(tmp_path, capsys):
    from wattlab.core.cli.main import main

    base = ["--data-dir", str(tmp_path), "run", "--model", "demo"]
    assert main([*base, "--nodes", "a:1", "--prometheus", "http://p:9090"]) == 2
    assert "give one" in capsys.readouterr().err
    cmp = ["--data-dir", str(tmp_path), "compare", "--optimized", "none"]
    assert main([*cmp, "--node-selector", 'job="x"']) == 2
    assert "needs --prometheus" in capsys.readouterr().err


def test_a_degraded_source_is_integrated_whatever_its_series_label_says():
    text = (
        'wattlab_energy_joules_total{source="gpu0",label="measured"} 100.0\n'
        'wattlab_energy_joules_total{source="cpu",label="measured"} 50.0\n'
        'wattlab_energy_degraded{source="gpu0"} 1.0\n'
        'wattlab_energy_degraded{source="cpu"} 0.0\n'
    )
    counters, _ = read_counters(text)
    assert {c.source: c.label for c in counters} == {"gpu0": "integrated", "cpu": "measured"}


def test_one_host_under_two_addresses_is_said_to_be_counted_twice():
    from wattlab.core.measure.nodes import NodeEnergy, shared_host_warnings

    def node(name: str) -> NodeEnergy:
        return NodeEnergy(name, 10.0, "measured", 1.0, 5.0)

    (w,) = shared_host_warnings([node("gpu1:9464"), node("gpu1:9400"), node("gpu2:9464")])
    assert "gpu1" in w and "counted twice" in w and "gpu2" not in w
    assert shared_host_warnings([node("http://a:9464/metrics"), node("b:9464")]) == []


def test_node_figures_are_printed_with_their_label_and_unknown_stays_unknown():
    from wattlab.core.report.nodes_text import comparison_nodes_lines, nodes_lines

    partial = {
        "total_j": None,
        "reason": "1 of 2 nodes unknown (b)",
        "known_j": 5.0,
        "label": "measured",
        "per_node": [
            {"node": "a", "energy_j": 5.0, "label": "measured", "resolution_s": 1.0},
            {"node": "b", "energy_j": None},
        ],
    }
    head, a, b = nodes_lines(partial)
    assert "total unknown" in head and "5 J (measured)" in head
    assert a == "  a: 5 J (measured, 1 s resolution)" and b == "  b: unknown"
    runs = [
        ("baseline", {"nodes": {"total_j": 10.0, "label": "measured"}}),
        ("baseline", {"nodes": {"total_j": 30.0, "label": "integrated"}}),
        ("optimized", {"nodes": partial}),
        ("optimized", {}),
    ]
    base, opt = comparison_nodes_lines(runs)
    assert base == "other nodes, baseline: median 20 J over 2 run(s) (integrated, measured)"
    assert opt.startswith("other nodes, optimized: unknown over 0 run(s)")
    assert "1 run(s) with a node unknown" in opt


def test_the_comparison_report_has_a_nodes_block_only_when_nodes_were_measured():
    from wattlab.core.report.pdf_report import _nodes_block

    nodes = {
        "total_j": 12.0,
        "label": "measured",
        "known_j": 12.0,
        "per_node": [{"node": "a:9464", "energy_j": 12.0, "label": "measured"}],
    }
    comp = {"per_run": [{"side": "baseline", "run_id": 1}, {"side": "optimized", "run_id": 2}]}
    ((title, body),) = _nodes_block(comp, {1: {"run_id": 1, "nodes": nodes}, 2: {"run_id": 2}})
    assert "Other nodes" in title
    assert "other nodes, baseline: median 12 J over 1 run(s) (measured)" in body
    assert "baseline run 1: other nodes: 12 J (measured)" in body and "a:9464: 12 J" in body
    assert _nodes_block(comp, {1: {}, 2: {}}) == []


def test_the_live_view_reads_each_nodes_recent_power(two_nodes):
    (_, url_a), (_, url_b) = two_nodes
    scraper = NodeScraper([url_a, url_b], period_s=0.2)
    assert [p for _, p, _ in scraper.live()] == [None, None]  # nothing scraped yet
    scraper.start()
    time.sleep(0.9)
    (node_a, watts_a, label_a), (node_b, watts_b, label_b) = scraper.live()
    scraper.finish()
    assert url_a in node_a and url_b in node_b
    assert watts_a == pytest.approx(100.0, rel=0.25) and label_a == "measured"
    assert watts_b == pytest.approx(45.0, rel=0.25) and label_b == "estimated"
