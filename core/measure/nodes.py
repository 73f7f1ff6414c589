"""Energy of other machines over a run's window: scraped from exporters, or asked of Prometheus.

Why: a job spread over several nodes draws energy on each; the node that launches it only
measures itself. Each other node runs an exporter, and its joules over the window are the
difference of a cumulative counter read at the window's start and end (never power x time
guessed from a few gauges).

Two ways, same typed result (:class:`NodesEnergy`, stored under a run's ``"nodes"``):
- :class:`NodeScraper` reads each exporter's ``/metrics`` at the start, every ``period_s``
  during the run (a thread) and at the end. Per node: the sum over its energy series of the
  counter's increase; a counter that goes back (the exporter restarted) starts a new piece,
  counted from zero, with a warning. A node that does not answer at the start or at the end has
  unknown energy (None, never 0); failed scrapes in between are warnings only (a counter keeps
  counting), except that a restart hidden in a gap loses the energy before it.
- :class:`PrometheusQuery` asks a Prometheus server that scrapes the exporters: at the window's
  end, ``sum by (instance, ...) (increase(METRIC{selector}[window]))`` (an instant query), and the
  raw samples of the window to say how finely the series resolve it and where they have gaps.
  Targets in ``up{selector}`` without any energy series are unknown, not absent.

Counter names understood (first match per node wins, so one device is never counted twice):
- ``wattlab_energy_joules_total{source,label}`` (``wattlab exporter``, J); its ``label`` is
  how the source was obtained, and a node's figure carries the weakest of its sources.
- only where a node serves none of those: NVIDIA dcgm-exporter's
  ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu,UUID}`` (mJ, the driver's counter: ``measured``)
  and node-exporter's RAPL ``node_rapl_package_joules_total`` and
  ``node_rapl_dram_joules_total`` (J, ``measured``; ``core``/``uncore``/``psys`` zones are parts
  or supersets of the package and are skipped, as in sensors/rapl.py). RAPL wraps around; a
  wrap reads like a reset, so the energy between the last scrape and the wrap is lost (warned).
A node's ``resolution_s`` is how precisely its counter places the window's edges: the
exporter's update interval where it says so (``wattlab_exporter_interval_seconds``), otherwise
the scrape period (Prometheus: the median spacing of its samples).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from wattlab.core.errors import SpecError
from wattlab.core.measure.energy import MIN_COUNTER_UPDATES
from wattlab.core.measure.sensors.base import weakest_label

DEFAULT_SCRAPE_PERIOD_S = 5.0
DEFAULT_TIMEOUT_S = 2.0
INTERVAL_METRIC = "wattlab_exporter_interval_seconds"
DEGRADED_METRIC = "wattlab_energy_degraded"  # 1: the source's counter fell back to integration

Fetch = Callable[[str, float], str]


# -- the counters ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """One kind of energy counter an exporter may serve."""

    kind: str  # wattlab | dcgm | rapl
    metric: str  # the sample name as served
    by: tuple[str, ...]  # labels naming one device
    scale_j: float  # joules per unit

    def source(self, labels: dict[str, str]) -> str:
        if self.kind == "wattlab":
            return labels.get("source", "?")
        if self.kind == "dcgm":
            return f"gpu{labels.get('gpu', '?')} {labels.get('UUID', '')}".strip()
        zone = self.metric.removeprefix("node_rapl_").removesuffix("_joules_total")
        return f"rapl-{zone}-{labels.get('index', '?')}"

    def label(self, labels: dict[str, str]) -> str:
        return labels.get("label", "estimated") if self.kind == "wattlab" else "measured"


FAMILIES = (
    Family("wattlab", "wattlab_energy_joules_total", ("source", "label"), 1.0),
    Family("dcgm", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", ("gpu", "UUID"), 1e-3),
    Family("rapl", "node_rapl_package_joules_total", ("index",), 1.0),
    Family("rapl", "node_rapl_dram_joules_total", ("index",), 1.0),
)
_BY_NAME = {f.metric: f for f in FAMILIES}
# prometheus_client's parser names a counter's samples NAME_total even where the exporter served
# NAME (dcgm-exporter types its energy as a counter without the suffix).
_BY_NAME["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total"] = FAMILIES[1]


@dataclass(frozen=True)
class CounterValue:
    """One energy series as one scrape read it."""

    key: str  # identity of the series on its node
    kind: str
    source: str
    label: str
    joules: float


def read_counters(text: str) -> tuple[list[CounterValue], float | None]:
    """The energy counters of one ``/metrics`` text (WattLab's names if present, else DCGM's
    and RAPL's) and the exporter's update interval when it states one."""
    # Imported here: the CLI's flag modules import this module for every command.
    from prometheus_client.parser import text_string_to_metric_families

    found: list[CounterValue] = []
    interval: float | None = None
    degraded: set[str] = set()  # sources whose counter fell back to integrating power
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == INTERVAL_METRIC:
                interval = float(s.value)
            if s.name == DEGRADED_METRIC and s.value:
                degraded.add(s.labels.get("source", ""))
            f = _BY_NAME.get(s.name)
            if f is None or not math.isfinite(s.value):
                continue
            ident = ",".join(f"{k}={s.labels.get(k, '')}" for k in f.by)
            found.append(
                CounterValue(
                    f"{f.metric}{{{ident}}}",
                    f.kind,
                    f.source(s.labels),
                    f.label(s.labels),
                    float(s.value) * f.scale_j,
                )
            )
    if any(c.kind == "wattlab" for c in found):
        found = [c for c in found if c.kind == "wattlab"]
    # The exporter keeps a series' label fixed (a new label would split it); a degraded source
    # is integrated power, whatever label its series started with.
    found = [
        dataclasses.replace(c, label="integrated")
        if c.kind == "wattlab" and c.source in degraded and c.label == "measured"
        else c
        for c in found
    ]
    return found, interval


# -- the typed result -----------------------------------------------------------------------------
@dataclass
class NodeEnergy:
    """One node's joules over the window; ``energy_j`` None means unknown (``warnings`` say
    why), never zero."""

    node: str  # the scraped URL, or Prometheus's instance label
    energy_j: float | None
    label: str | None
    resolution_s: float | None
    window_s: float | None = None
    by_source_j: dict[str, float] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)  # counter kinds used: wattlab, dcgm, rapl
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class NodesEnergy:
    """Every node's energy and their total. The total is None as soon as one node is unknown
    (``reason`` says which); ``known_j`` is the sum of the nodes that are known, a lower bound
    labelled as such, never passed off as the total."""

    method: str  # "scrape" or "prometheus"
    where: str  # the URLs, or the Prometheus URL and selector
    nodes: list[NodeEnergy]
    warnings: list[str] = field(default_factory=list)

    @property
    def unknown(self) -> list[str]:
        return [n.node for n in self.nodes if n.energy_j is None]

    @property
    def known_j(self) -> float:
        return sum(n.energy_j for n in self.nodes if n.energy_j is not None)

    @property
    def total_j(self) -> float | None:
        return None if self.unknown or not self.nodes else self.known_j

    @property
    def label(self) -> str | None:
        return weakest_label([n.label for n in self.nodes if n.label and n.energy_j is not None])

    @property
    def reason(self) -> str | None:
        if not self.nodes:
            return "no node answered with an energy counter"
        if self.unknown:
            return (
                f"{len(self.unknown)} of {len(self.nodes)} nodes unknown ("
                + ", ".join(self.unknown)
                + "): the total is unknown; known_j sums the others"
            )
        return None

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "where": self.where,
            "total_j": self.total_j,
            "label": self.label,
            "known_j": self.known_j,
            "unknown": self.unknown,
            "reason": self.reason,
            "per_node": [n.to_dict() for n in self.nodes],
            "warnings": list(self.warnings),
        }


def shared_host_warnings(nodes: Sequence[NodeEnergy]) -> list[str]:
    """A host reached under several addresses (its WattLab exporter and a DCGM- or node-exporter
    on other ports): each address is a node of its own, so that host's energy may be summed
    twice. Said, never silently merged: which series is the right one is the user's choice."""
    by_host: dict[str, list[str]] = {}
    for n in nodes:
        host = urllib.parse.urlsplit(n.node if "//" in n.node else f"//{n.node}").hostname
        by_host.setdefault(host or n.node, []).append(n.node)
    return [
        f"host {host} answers as {len(names)} nodes ({', '.join(names)}): if they are two "
        "exporters of the same machine its energy is counted twice; pick one with the "
        "selector or --nodes"
        for host, names in by_host.items()
        if len(names) > 1
    ]


def window_warning(node: NodeEnergy) -> None:
    """The house rule for short windows (energy.MIN_COUNTER_UPDATES), applied to a node."""
    res, win = node.resolution_s, node.window_s
    if res and win is not None and 0 < win < MIN_COUNTER_UPDATES * res:
        node.warnings.append(
            f"the window lasted {win:.2f} s, fewer than {MIN_COUNTER_UPDATES} updates of the "
            f"node's counter ({res:g} s each); its energy is unreliable"
        )


# -- direct scraping ------------------------------------------------------------------------------
def metrics_url(text: str) -> str:
    """``host:port``, ``http://host:port`` or a full URL -> the URL to scrape (``/metrics`` by
    default). Refuses what cannot be one, in one line."""
    raw = text.strip()
    url = raw if "://" in raw else f"http://{raw}"
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise SpecError(f"node URL {raw!r}: the port is not a number from 0 to 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"node URL {raw!r} is not host:port or an http(s) URL")
    path = parts.path if parts.path not in ("", "/") else "/metrics"
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # IPv6 literal
        netloc = f"[{parts.hostname}]" + (f":{port}" if port is not None else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def node_urls(text: str) -> list[str]:
    """A comma-separated node list (--nodes, the app's setting) -> the URLs to scrape, each
    checked by ``metrics_url`` (one line for a bad one), duplicates dropped."""
    urls = list(dict.fromkeys(metrics_url(u) for u in text.split(",") if u.strip()))
    if not urls:
        raise SpecError("no URL given (e.g. gpu1:9464,gpu2:9464)")
    return urls


def http_get(url: str, timeout_s: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as r:  # noqa: S310 - http(s) only
        return r.read().decode("utf-8", "replace")


def why_failed(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


@dataclass
class _Series:
    value: CounterValue
    first_t: float
    last_t: float
    sum_j: float = 0.0
    resets: int = 0


@dataclass
class _Node:
    """What the scrapes of one node have seen so far (online: no history kept)."""

    url: str
    series: dict[str, _Series] = field(default_factory=dict)
    first_ok: float | None = None
    last_ok: float | None = None
    failures: int = 0
    longest_gap_s: float = 0.0
    interval_s: float | None = None
    errors: list[str] = field(default_factory=list)
    answered_start: bool = False
    answered_end: bool = False
    late_series: list[str] = field(default_factory=list)
    # The node's mean power between its last two answered scrapes (the live view's figure),
    # None until two scrapes answered or when a series reset in between.
    recent_power_w: float | None = None

    def failed(self, why: str) -> None:
        self.failures += 1
        if why not in self.errors:
            self.errors.append(why)

    def took(self, t: float, text: str, first: bool) -> None:
        counters, interval = read_counters(text)
        if interval is not None:
            self.interval_s = interval
        if self.last_ok is not None:
            self.longest_gap_s = max(self.longest_gap_s, t - self.last_ok)
        previous_t = self.last_ok
        self.first_ok = t if self.first_ok is None else self.first_ok
        self.last_ok = t
        recent_j: float | None = 0.0
        for c in counters:
            s = self.series.get(c.key)
            if s is None:
                self.series[c.key] = _Series(c, t, t)
                if not first:
                    self.late_series.append(c.source)
                continue
            delta = c.joules - s.value.joules
            if delta < 0:  # the exporter restarted (or RAPL wrapped): a new piece from zero
                s.resets += 1
                delta = c.joules
                recent_j = None
            s.sum_j += delta
            s.value, s.last_t = c, t
            if recent_j is not None:
                recent_j += delta
        dt = t - previous_t if previous_t is not None else 0.0
        self.recent_power_w = recent_j / dt if recent_j is not None and dt > 0 else None


class NodeScraper:
    """Scrapes exporters at ``start()``, every ``period_s`` meanwhile and at ``finish()``.

    Rounds scrape every node at once (a thread each, up to 16), so the window's edges are the
    same instant on every node to within a request's latency."""

    def __init__(
        self,
        urls: Sequence[str],
        period_s: float = DEFAULT_SCRAPE_PERIOD_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        fetch: Fetch = http_get,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.urls = [metrics_url(u) for u in urls]
        if not self.urls:
            raise SpecError("no node URL given")
        self.period_s = period_s
        self.timeout_s = timeout_s
        self._fetch = fetch
        self._clock = clock
        self._nodes = {u: _Node(u) for u in self.urls}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(16, len(self.urls)), thread_name_prefix="wattlab-scrape"
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the nodes' state
        self._round_lock = threading.Lock()  # one scrape round at a time

    def start(self) -> None:
        self._round(first=True)
        self._thread = threading.Thread(target=self._loop, name="wattlab-nodes", daemon=True)
        self._thread.start()

    def finish(self) -> NodesEnergy:
        """The last round, then every node's energy over the window."""
        self._halt()
        self._round(last=True)
        self._pool.shutdown(wait=True)
        found = [self._result(n) for n in self._nodes.values()]
        return NodesEnergy("scrape", ", ".join(self.urls), found, shared_host_warnings(found))

    def live(self) -> list[tuple[str, float | None, str | None]]:
        """Each node's mean power over its last two scrapes and its weakest label, for a live
        view while the window is open: (node, watts or None, label or None)."""
        with self._lock:
            return [
                (
                    url,
                    n.recent_power_w,
                    weakest_label([s.value.label for s in n.series.values()]) if n.series else None,
                )
                for url, n in self._nodes.items()
            ]

    def close(self) -> None:
        """Stop without a result (the run failed before its end)."""
        self._halt()
        self._pool.shutdown(wait=False)

    def _halt(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._round()

    def _scrape(self, url: str) -> tuple[float, str | None, str | None]:
        t0 = self._clock()
        try:
            text = self._fetch(url, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure is this node's, never the run's
            return (t0 + self._clock()) / 2, None, why_failed(exc)
        return (t0 + self._clock()) / 2, text, None

    def _round(self, first: bool = False, last: bool = False) -> None:
        """One scrape of every node. The HTTP requests run outside ``_lock``, which guards only
        the nodes' state: ``live()`` (the GUI thread) never waits on a slow node."""
        with self._round_lock:
            done = list(self._pool.map(self._scrape, self.urls))
            with self._lock:
                self._took(done, first, last)

    def _took(
        self, done: list[tuple[float, str | None, str | None]], first: bool, last: bool
    ) -> None:
        """Fold one round's answers (time, text or None, error) into each node's state."""
        for url, (t, text, err) in zip(self.urls, done, strict=True):
            node = self._nodes[url]
            if text is None:
                node.failed(err or "no answer")
                continue
            try:
                node.took(t, text, first)
            except Exception as exc:  # noqa: BLE001 - whatever the parser makes of junk
                node.failed(f"not Prometheus text ({exc})")
                continue
            node.answered_start |= first
            node.answered_end = last

    def _result(self, n: _Node) -> NodeEnergy:
        label = weakest_label([s.value.label for s in n.series.values()])
        by_source: dict[str, float] = {}
        for s in n.series.values():
            by_source[s.value.source] = by_source.get(s.value.source, 0.0) + s.sum_j
        window = (
            n.last_ok - n.first_ok if n.last_ok is not None and n.first_ok is not None else None
        )
        out = NodeEnergy(
            n.url,
            None,
            label,
            n.interval_s or self.period_s,
            window,
            by_source,
            sorted({s.value.kind for s in n.series.values()}),
        )
        out.warnings = self._warnings(n)
        missing = [s.value.source for s in n.series.values() if s.last_t != n.last_ok]
        if not n.answered_start or not n.answered_end:
            edge = "start" if not n.answered_start else "end"
            out.warnings.insert(0, f"did not answer at the window's {edge}: energy unknown")
        elif not n.series:
            out.warnings.insert(0, "serves no energy counter WattLab understands: energy unknown")
        elif missing:
            out.warnings.insert(0, f"{', '.join(missing)} missing at the end: energy unknown")
        else:
            out.energy_j = sum(out.by_source_j.values())
            window_warning(out)
        return out

    @staticmethod
    def _warnings(n: _Node) -> list[str]:
        w: list[str] = []
        if n.failures:
            w.append(
                f"{n.failures} scrape(s) failed ({'; '.join(n.errors[:3])}); longest time "
                f"between answers {n.longest_gap_s:.1f} s"
            )
        for s in n.series.values():
            if s.resets:
                w.append(
                    f"{s.value.source}: the counter went back {s.resets}x (exporter restart or "
                    "RAPL wrap); pieces summed, energy between the last scrape and each reset "
                    "is lost"
                )
        if n.late_series:
            w.append(f"{', '.join(n.late_series)} appeared during the window: counted from then")
        return w


class NodeMeter(Protocol):
    """What a run calls, whichever way the nodes are read (NodeScraper, PrometheusWindow)."""

    def start(self) -> None: ...

    def finish(self) -> NodesEnergy: ...

    def close(self) -> None: ...
