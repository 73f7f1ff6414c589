"""Nodes' energy from a Prometheus server that scrapes their exporters (see nodes.py for the
counters understood and the result).

Why a second way: where a cluster already runs Prometheus (and dcgm-exporter or node-exporter),
nothing new has to be reachable from the launching machine but the Prometheus API. At the
window's end one instant query per counter family asks
``sum by (instance, ...) (increase(METRIC{selector}[window]))``; a second fetches the window's
raw samples (``METRIC{selector}[window]``) to say how finely each series resolves it (the
median spacing of its samples, i.e. the scrape interval) and where it has gaps, resets or
edges that ``increase()`` had to extrapolate. ``min_over_time(up{selector}[window])`` lists the
targets, so one without energy series is reported unknown rather than silently left out.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import urllib.error
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

from wattlab.core.errors import SpecError
from wattlab.core.measure.nodes import (
    FAMILIES,
    Family,
    Fetch,
    NodeEnergy,
    NodesEnergy,
    http_get,
    metrics_url,
    shared_host_warnings,
    why_failed,
    window_warning,
)
from wattlab.core.measure.sensors.base import weakest_label


def selector_body(selector: str) -> str:
    """``job="gpu"`` or ``{job="gpu"}`` -> ``job="gpu"`` (to go inside a metric's braces)."""
    s = selector.strip()
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1].strip()
    if "{" in s or "}" in s:
        raise SpecError(f'node selector {selector!r}: give label matchers, e.g. job="gpu"')
    return s


class PrometheusError(Exception):
    """Prometheus did not answer, or answered with an error."""


def _number(raw: object) -> float | None:
    try:
        v = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _spacing(times: list[float]) -> float | None:
    diffs = [b - a for a, b in pairwise(times)]
    return statistics.median(diffs) if diffs else None


class PrometheusQuery:
    """Every node's energy over a window, from a Prometheus server that scrapes the exporters.

    ``selector`` (label matchers, e.g. ``job="gpu-nodes"``) picks the nodes; it is added to every
    metric queried, and to ``up`` so that a target without energy series shows as unknown."""

    def __init__(
        self,
        base_url: str,
        selector: str = "",
        timeout_s: float = 10.0,
        fetch: Fetch = http_get,
    ) -> None:
        url = metrics_url(base_url)  # validates; Prometheus's API lives at the root
        parts = urllib.parse.urlsplit(url)
        root = parts.path if parts.path != "/metrics" else ""
        self.base_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, root, "", "")).rstrip(
            "/"
        )
        self.selector = selector_body(selector)
        self.timeout_s = timeout_s
        self._fetch = fetch

    @property
    def where(self) -> str:
        return f"{self.base_url} {{{self.selector}}}"

    def query(self, promql: str, at: float) -> list[dict]:
        """An instant query's result list (``/api/v1/query`` at time ``at``, Unix seconds)."""
        qs = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
        try:
            text = self._fetch(f"{self.base_url}/api/v1/query?{qs}", self.timeout_s)
        except urllib.error.HTTPError as exc:  # a bad query is a 400 with a JSON error body
            text = exc.read().decode("utf-8", "replace")
        except Exception as exc:  # noqa: BLE001 - unreachable, timeout, refused
            raise PrometheusError(f"no answer from {self.base_url}: {why_failed(exc)}") from None
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            raise PrometheusError(f"{self.base_url} did not answer with JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            why = body.get("error") if isinstance(body, dict) else None
            raise PrometheusError(f"{self.base_url} refused {promql!r}: {why or 'no reason'}")
        result = body.get("data", {}).get("result", [])
        return result if isinstance(result, list) else []

    def _matchers(self) -> str:
        return "{" + self.selector + "}"

    def energy(self, t0: float, t1: float) -> NodesEnergy:
        """Energy per instance over [t0, t1] (Unix seconds). Prometheus unreachable: no nodes,
        total unknown, and the reason as a warning."""
        window = f"{max(1, math.ceil((t1 - t0) * 1000))}ms"
        try:
            found = [
                (f, self._increase(f, window, t1), self._samples(f, window, t1)) for f in FAMILIES
            ]
            up = self._up(window, t1)
        except PrometheusError as exc:
            return NodesEnergy("prometheus", self.where, [], [str(exc)])
        nodes = _PromNodes(t0, t1)
        for f, increases, samples in found:
            nodes.add(f, increases, samples)
        per_node = nodes.results(up)
        return NodesEnergy("prometheus", self.where, per_node, shared_host_warnings(per_node))

    def _increase(self, f: Family, window: str, at: float) -> list[dict]:
        by = ", ".join(("instance", *f.by))
        return self.query(f"sum by ({by}) (increase({f.metric}{self._matchers()}[{window}]))", at)

    def _samples(self, f: Family, window: str, at: float) -> list[dict]:
        return self.query(f"{f.metric}{self._matchers()}[{window}]", at)

    def _up(self, window: str, at: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.query(
            f"min by (instance) (min_over_time(up{self._matchers()}[{window}]))", at
        ):
            v = _number((r.get("value") or [None, None])[1])
            if v is not None:
                out[str(r.get("metric", {}).get("instance", "?"))] = v
        return out


@dataclass
class _PromSource:
    family: Family
    source: str
    label: str
    energy_j: float | None = None
    resolution_s: float | None = None
    warnings: list[str] = field(default_factory=list)


class _PromNodes:
    """Query answers, gathered per instance and turned into NodeEnergy."""

    def __init__(self, t0: float, t1: float) -> None:
        self.t0, self.t1 = t0, t1
        self.by_instance: dict[str, dict[tuple[str, ...], _PromSource]] = {}

    def _source(self, f: Family, labels: dict[str, str]) -> _PromSource:
        inst = str(labels.get("instance", "?"))
        key = (f.metric, *(str(labels.get(k, "")) for k in f.by))
        sources = self.by_instance.setdefault(inst, {})
        if key not in sources:
            sources[key] = _PromSource(f, f.source(labels), f.label(labels))
        return sources[key]

    def add(self, f: Family, increases: list[dict], samples: list[dict]) -> None:
        for r in increases:
            v = _number((r.get("value") or [None, None])[1])
            src = self._source(f, r.get("metric", {}))
            src.energy_j = None if v is None else v * f.scale_j
        for r in samples:
            src = self._source(f, r.get("metric", {}))
            points = [(float(t), _number(v)) for t, v in r.get("values", [])]
            self._check(src, [(t, v) for t, v in points if v is not None])

    def _check(self, src: _PromSource, points: list[tuple[float, float]]) -> None:
        """Resolution and gaps of one series from its raw samples in the window."""
        times = [t for t, _ in points]
        step = _spacing(times)
        src.resolution_s = step
        if step is None:
            src.warnings.append(f"{src.source}: fewer than 2 samples in the window")
            return
        gaps = [b - a for a, b in pairwise(times) if b - a > 2 * step]
        if gaps:
            src.warnings.append(
                f"{src.source}: {len(gaps)} gap(s) in its samples, longest {max(gaps):.1f} s "
                f"(scrape interval {step:.1f} s)"
            )
        if times[0] - self.t0 > 2 * step or self.t1 - times[-1] > 2 * step:
            src.warnings.append(
                f"{src.source}: samples cover {times[0]:.0f}..{times[-1]:.0f} of the window "
                f"{self.t0:.0f}..{self.t1:.0f}; increase() extrapolated the rest"
            )
        resets = sum(1 for (_, a), (_, b) in pairwise(points) if b < a)
        if resets:
            src.warnings.append(
                f"{src.source}: the counter went back {resets}x (exporter restart); "
                "Prometheus counted each piece from zero"
            )

    def results(self, up: dict[str, float]) -> list[NodeEnergy]:
        out = [self._node(inst, list(srcs.values())) for inst, srcs in self.by_instance.items()]
        for inst, value in up.items():
            node = next((n for n in out if n.node == inst), None)
            if node is None:
                out.append(
                    NodeEnergy(
                        inst,
                        None,
                        None,
                        None,
                        self.t1 - self.t0,
                        warnings=["a target with no energy counter in the window: energy unknown"],
                    )
                )
            elif value < 1:
                node.warnings.append("Prometheus failed to scrape it at least once in the window")
        return sorted(out, key=lambda n: n.node)

    def _node(self, inst: str, sources: list[_PromSource]) -> NodeEnergy:
        kinds = {s.family.kind for s in sources}
        chosen = (
            [s for s in sources if s.family.kind == "wattlab"] if "wattlab" in kinds else sources
        )
        steps = [s.resolution_s for s in chosen if s.resolution_s is not None]
        node = NodeEnergy(
            inst,
            None,
            weakest_label([s.label for s in chosen]),
            max(steps) if steps else None,
            self.t1 - self.t0,
            {s.source: s.energy_j for s in chosen if s.energy_j is not None},
            sorted({s.family.kind for s in chosen}),
            [w for s in chosen for w in s.warnings],
        )
        unknown = [s.source for s in chosen if s.energy_j is None]
        if unknown:
            node.warnings.insert(0, f"no increase for {', '.join(unknown)}: energy unknown")
        else:
            node.energy_j = sum(node.by_source_j.values())
            window_warning(node)
        return node


class PrometheusWindow:
    """Records a run's wall-clock edges and asks Prometheus at ``finish()``; the same calls as
    :class:`NodeScraper`, so a run wires one or the other."""

    def __init__(self, query: PrometheusQuery, clock: Callable[[], float] = time.time) -> None:
        self.query = query
        self._clock = clock
        self.t0: float | None = None

    def start(self) -> None:
        self.t0 = self._clock()

    def finish(self) -> NodesEnergy:
        t1 = self._clock()
        return self.query.energy(self.t0 if self.t0 is not None else t1, t1)

    def close(self) -> None:
        pass
