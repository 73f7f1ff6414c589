"""Live plots fed by the profiling thread's ring buffers, redrawn on a ~10 Hz timer.

The timer pulls (never one redraw per sample); curves use clip-to-view and peak downsampling so
an hours-long run stays smooth. During the optimized run the baseline's traces are kept as
dashed grey overlays on every panel, aligned at each run's start.

What is drawn comes from ``core.measure.live`` (series, throughput, training curves, energy
totals and their labels); this module only places it on screen. The window drives it:
``begin_session`` when the user starts, ``begin_run`` at each run, ``on_event`` for every worker
event, ``update_from`` on its timer, ``finish`` when the session ends.
"""

from __future__ import annotations

from html import escape

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.measure.live import (
    PANELS,
    EnergyTally,
    LiveRun,
    Trace,
    energy_label,
    extents,
    live_series,
    power_now,
    throughput_unit,
)
from wattlab.core.measure.sampling import RingBuffers

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
BASELINE_NAME = "baseline (previous run)"
BASELINE_COLOR = "#999999"
# Small enough that six panels and the numbers fit the right-hand side of a 1024x700 window.
MIN_PLOT_W, MIN_PLOT_H = 150, 80
TITLES = {
    "power": ("Power", "W"),
    "memory": ("Memory", "MiB"),
    "throughput": ("Throughput", "items/s"),
    "utilisation": ("CPU utilisation", "%"),
    "loss": ("Training loss", ""),
    "quality": ("Accuracy", ""),
}
# Panel positions (row, column): training curves next to power in train mode.
LAYOUTS = {
    False: {"power": (0, 0), "memory": (0, 1), "throughput": (1, 0), "utilisation": (1, 1)},
    True: {
        "power": (0, 0),
        "loss": (0, 1),
        "throughput": (1, 0),
        "quality": (1, 1),
        "memory": (2, 0),
        "utilisation": (2, 1),
    },
}
CACHED = QGraphicsItem.CacheMode.DeviceCoordinateCache
LONG_WORD = 12  # characters: a longer word in a big title may break inside (breakable)
ENDINGS = {
    "completed": "finished: completed",
    "cancelled": "stopped: cancelled",
    "failed": "failed",
}


def nice_ceil(x: float) -> float:
    """The next of 1, 2, 5 x 10^k at or above x: axis ranges that change rarely."""
    if not np.isfinite(x) or x <= 0:
        return 1.0
    k = 10 ** np.floor(np.log10(x))
    return float(next(m * k for m in (1, 2, 5, 10) if m * k >= x))


def x_extent(t_max: float) -> float:
    step = 10.0 if t_max < 60 else 60.0 if t_max < 600 else 300.0
    return float(np.ceil(max(t_max, 1e-9) / step) * step)


def ending_text(status: str) -> str:
    """What happened to the run, as the header says it once nothing is running."""
    return ENDINGS.get(status, f"ended: {status}")


def _plot(unit: str) -> pg.PlotWidget:
    w = pg.PlotWidget()
    w.setBackground("w")
    w.showGrid(x=False, y=True, alpha=0.15)
    w.setLabel("left", unit)
    for side in ("left", "bottom"):
        w.getAxis(side).enableAutoSIPrefix(False)  # "MiB (x1000)" helps nobody
        # Every curve update repaints the axis under it (its grid spans the plot): replaying
        # its tick text cost ~2 ms per redraw with six panels. Cached, it is a pixmap copy
        # until the ticks change (setRange calls update(), which drops the cache).
        w.getAxis(side).setCacheMode(CACHED)
    w.setLabel("bottom", "s")
    w.setClipToView(True)
    w.setDownsampling(auto=True, mode="peak")
    # Ranges are set in steps by LivePlots.fit(): pyqtgraph's auto-range moves the axes on every
    # update during a run, and regenerating 8 axes costs the event loop ~70 ms at p99.
    w.disableAutoRange()
    w.setMinimumSize(MIN_PLOT_W, MIN_PLOT_H)
    return w


def _wrapping(label: QLabel) -> QLabel:
    """A label that wraps to the width it is given and never asks for more: a long caption
    must not widen the window."""
    label.setTextFormat(Qt.RichText)
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
    label.setMinimumWidth(0)
    return label


class Panel(QWidget):
    """One plot under a header line that holds its title and legend. The legend lives outside
    the plot area, so it can never hide a curve (pyqtgraph's floating legend sat on the data)."""

    def __init__(self, title: str, unit: str) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.header = _wrapping(QLabel())
        self.plot = _plot(unit)
        lay.addWidget(self.header)
        lay.addWidget(self.plot, 1)
        self.title = title
        self.entries: list[tuple[str, str, bool]] = []  # (name, colour, dashed)
        self._render()

    def set_title(self, title: str, unit: str) -> None:
        self.title = title
        self.plot.setLabel("left", unit)
        self._render()

    def set_legend(self, entries: list[tuple[str, str, bool]]) -> None:
        if entries != self.entries:
            self.entries = entries
            self._render()

    def legend_names(self) -> list[str]:
        return [name for name, _, _ in self.entries]

    def _render(self) -> None:
        keys = " ".join(
            f"<span style='color:{c}'>{'- -' if dashed else '&#x2014;'}</span>&nbsp;{escape(n)}"
            for n, c, dashed in self.entries
        )
        self.header.setText(
            f"<span style='font-size:9pt'><b>{escape(self.title)}</b> {keys}</span>"
        )


class BigNumber(QWidget):
    """A headline figure: caption, value ("-" when unknown) and a sub-line (its label).

    Three plain-text labels rather than one rich-text label: the value changes ten times a
    second, and re-laying out a rich-text document for it cost ~0.8 ms per redraw. Each label
    wraps to the width it gets and never asks for more, so a long title cannot widen the
    window."""

    def __init__(self, caption: str) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(0)
        self._caption = self._label(10, "#555", False)
        self._value = self._label(18, "#000", True)
        self._sub = self._label(8, "#777", False)
        for label in (self._caption, self._value, self._sub):
            lay.addWidget(label)
        lay.addStretch(1)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.caption = caption
        self.value = "-"
        self.sub = ""
        self._caption.setText(caption)
        self.set(None, "")

    @staticmethod
    def _label(points: int, color: str, bold: bool) -> QLabel:
        label = QLabel()
        label.setTextFormat(Qt.PlainText)
        label.setWordWrap(True)
        label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        font = label.font()
        font.setPointSize(points)
        font.setBold(bold)
        label.setFont(font)
        label.setStyleSheet(f"color:{color}")
        return label

    def set_caption(self, caption: str) -> None:
        self.caption = caption
        self._caption.setText(caption)

    def set(self, text: str | None, sub: str) -> None:
        """Show ``text`` ("-" for None) over ``sub`` (lines split at newlines)."""
        self.value, self.sub = text or "-", sub
        for label, new in ((self._value, breakable(self.value)), (self._sub, sub)):
            if label.text() != new:  # a new text lays the header out again: only for a change
                label.setText(new)

    def text(self) -> str:
        """Everything it shows, one line each (what a screen reader or a test reads)."""
        return "\n".join(t for t in (self.caption, self.value, self.sub) if t)


def breakable(text: str) -> str:
    """``text`` as shown in a wrapping label: a long word may also break after "_", "." and
    "/" (a zero-width space), so a script's file name in the big title wraps instead of being
    cut at the panel's edge; figures ("1,234.5 J") are short words and stay whole. Only the
    label's text: ``BigNumber.text()`` keeps the words as they were."""
    words = text.split(" ")
    for k, word in enumerate(words):
        if len(word) > LONG_WORD:
            for ch in "_./":
                word = word.replace(ch, ch + "\u200b")
            words[k] = word
    return " ".join(words)


def _later(ring: RingBuffers, current: RingBuffers) -> bool:
    """``ring`` starts after ``current`` ended: it is a later run's."""
    first, last = ring.first_t(), current.last_t()
    return first is not None and last is not None and first > last


class LivePlots(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        nums = QHBoxLayout()
        self.energy = BigNumber("Energy, this run")
        self.power = BigNumber("Power now")
        self.side = BigNumber("Running")
        for n in (self.energy, self.power, self.side):
            nums.addWidget(n, 1)
        lay.addLayout(nums)
        # Other nodes' recent power (Settings > other nodes), hidden when none is scraped.
        self.nodes = _wrapping(QLabel())
        self.nodes.setStyleSheet("color:#555")
        self.nodes.hide()
        lay.addWidget(self.nodes)
        self.panels = {name: Panel(*TITLES[name]) for name in PANELS}
        self.p_power = self.panels["power"].plot
        self.p_mem = self.panels["memory"].plot
        self.p_thr = self.panels["throughput"].plot
        self.p_util = self.panels["utilisation"].plot
        self.grid = QGridLayout()
        lay.addLayout(self.grid, 1)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.overlays: dict[str, pg.PlotDataItem] = {}  # "panel:name" of the baseline's trace
        self._colors: dict[str, str] = {}
        self._drawn: dict[str, tuple[int, bytes]] = {}  # what each curve last drew
        self._no_overlay = pg.PlotDataItem()
        self.tally = EnergyTally()
        self.run = LiveRun()
        self.mode = "infer"
        self._baseline: list[Trace] = []
        self._baseline_ymax: dict[str, float] = {}
        self._side: str | None = None
        self._title = ""
        self._state = "fresh"  # fresh | running | finished
        self._sides: set[str] = set()  # of this session's runs: what its energy total covers
        self._ring: RingBuffers | None = None
        self._stale: RingBuffers | None = None
        self._ranges: dict[str, tuple[float, float]] = {}
        self.set_mode("infer")

    @property
    def overlay(self) -> pg.PlotDataItem:
        """The baseline's CPU power overlay (empty when there is none)."""
        power = [n for n in self.overlays if n.startswith("power:")]
        name = next((n for n in power if n.startswith("power:CPU power")), None)
        name = name or next(iter(power), None)
        return self.overlays[name] if name else self._no_overlay

    # -- the window's calls ----------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """``train``: the training panels show; ``rag``: throughput counts queries."""
        self.mode = mode
        self.run.mode = mode
        self.panels["throughput"].set_title("Throughput", throughput_unit(mode))
        self._arrange(mode == "train")

    def show_nodes(self, live: list[tuple[str, float | None, str | None]]) -> None:
        """Other nodes side by side: each one's recent power and its label (core words it)."""
        from wattlab.core.report.nodes_text import live_nodes_text

        text = live_nodes_text(live)
        if text != self.nodes.text():
            self.nodes.setText(text)
        self.nodes.setVisible(bool(text))

    def begin_session(self, mode: str | None = None) -> None:
        """The user started something: the energy total, the stored baseline and the header
        start again (a comparison's runs share them; the next session does not)."""
        self.tally.begin_session()
        self._baseline, self._baseline_ymax = [], {}
        self._sides = set()
        self._side = None
        if mode is not None:
            self.set_mode(mode)
        self._forget_ring()
        self.run = LiveRun(self.mode)  # nothing of the last session becomes a baseline

    def begin_run(self, side: str, title: str) -> None:
        """A run starts. ``side``: baseline | optimized | single; ``title``: what the header
        says is running ("run 1 of 1", "baseline run 2/5"). The run before it, unless it was
        an optimized one, becomes the baseline that optimized runs show as overlays."""
        if self._side != "optimized":
            snap = self._snapshot()
            if snap:
                self._baseline = snap
        self.tally.begin_run()
        self._forget_ring()
        self.run = LiveRun(self.mode)
        self._side, self._title, self._state = side, title, "running"
        self._sides.add(side)
        self._clear_items()
        if side == "optimized":
            self._draw_baseline()
        self._ranges.clear()
        self.fit([])
        self.energy.set_caption("Energy, this run")
        self._show_energy()
        self.power.set(None, "")
        self.side.set_caption("Running")
        self._show_running()

    def on_event(self, ev: dict, t_mono: float) -> None:
        """Every worker event, with ``time.monotonic()`` at receipt (the sampler's clock, so
        throughput and losses line up with power). Cheap: drawing waits for the timer."""
        kind = ev.get("event")
        self.run.on_event(ev, t_mono)
        if kind in ("phase", "round") and self._state == "running":
            self._show_running()
        if kind == "epoch":
            name = self.run.training.quality_name
            if name:
                self.panels["quality"].set_title(name.capitalize(), "")

    def update_from(self, ring: RingBuffers | None, energy_j: float | None) -> None:
        """Redraw from the running measurement. The previous run's ring (the controller hands
        it out until the next run's measurement starts) and calls after ``finish`` are ignored;
        a hidden view updates only its energy total."""
        if ring is None or ring is self._stale or self._state == "finished":
            return
        if self._ring is not None and ring is not self._ring and _later(ring, self._ring):
            # The next run's measurement started before its run_started signal reached this
            # thread: its ring waits for begin_run, or the baseline overlay would be cut from it.
            return
        self._ring = ring
        self.tally.update(energy_j, energy_label(ring))
        self._show_energy()
        if not self.isVisible():
            return
        series = live_series(ring)
        traces = self.run.traces(series)
        self._draw(traces)
        self.fit(traces)
        watts, label = power_now(series)
        self.power.set(None if watts is None else f"{watts:.1f} W", label or "")

    def finish(self, status: str) -> None:
        """The session ended (``completed``, ``cancelled``, ``failed``): nothing is running,
        so nothing says so. The first call after a run counts; later ones change nothing."""
        if self._state != "running":
            return
        self._state = "finished"
        self.power.set(None, "not running")
        self.side.set_caption("Last run")
        self.side.set(ending_text(status), self._title)
        self.energy.set_caption(f"Energy, {self._title}")
        self._show_energy()

    # -- drawing ---------------------------------------------------------------------------------
    def _arrange(self, train: bool) -> None:
        for panel in self.panels.values():
            self.grid.removeWidget(panel)
        for name, panel in self.panels.items():
            pos = LAYOUTS[train].get(name)
            if pos is not None:
                self.grid.addWidget(panel, *pos)
            # after addWidget, which hides a re-added widget until the event loop shows it
            panel.setVisible(pos is not None)

    def _forget_ring(self) -> None:
        if self._ring is not None:
            self._stale, self._ring = self._ring, None

    def _snapshot(self) -> list[Trace]:
        """The run that just ended, as drawn at its end (from its final ring)."""
        series = live_series(self._ring) if self._ring is not None else []
        return self.run.traces(series)

    def _clear_items(self) -> None:
        """Remove every curve and overlay: a new run's legends list only what it draws."""
        for panel in self.panels.values():
            panel.plot.getPlotItem().clear()
            panel.set_legend([])
        self.curves.clear()
        self.overlays.clear()
        self._colors.clear()
        self._drawn.clear()

    def _draw_baseline(self) -> None:
        pen = pg.mkPen(BASELINE_COLOR, width=1, style=Qt.DashLine)
        for tr in self._baseline:
            item = self.panels[tr.panel].plot.plot(
                tr.t, tr.v, pen=pen, connect="finite", **self._markers(tr, BASELINE_COLOR)
            )
            item.curve.setCacheMode(CACHED)  # drawn once per run (and range step), not per redraw
            item.scatter.setCacheMode(CACHED)
            self.overlays[f"{tr.panel}:{tr.name}"] = item
        self._baseline_ymax = extents(self._baseline)[1]
        self._update_legends()

    @staticmethod
    def _markers(tr: Trace, color: str) -> dict:
        if not tr.markers:
            return {}
        return {"symbol": "o", "symbolSize": 5, "symbolBrush": color, "symbolPen": color}

    def _draw(self, traces: list[Trace]) -> None:
        added = False
        for tr in traces:
            curve = self.curves.get(tr.name)
            if curve is None:
                color = PALETTE[len(self.curves) % len(PALETTE)]
                self._colors[tr.name] = color
                curve = self.panels[tr.panel].plot.plot(
                    [], [], name=tr.name, pen=pg.mkPen(color, width=1), **self._markers(tr, color)
                )
                self.curves[tr.name] = curve
                added = True
            state = tr.state()
            if self._drawn.get(tr.name) != state:  # unchanged since the last redraw: skip
                self._drawn[tr.name] = state
                # NaN (a sensor without a value, a pause, a diverged epoch) stays a gap
                curve.setData(tr.t, tr.v, connect="finite")
        if added:
            self._update_legends()

    def _update_legends(self) -> None:
        for panel in self.panels.values():
            items = panel.plot.getPlotItem().items
            entries = [(n, self._colors[n], False) for n, c in self.curves.items() if c in items]
            if any(o in items for o in self.overlays.values()):
                entries.append((BASELINE_NAME, BASELINE_COLOR, True))
            panel.set_legend(entries)

    def fit(self, traces: list[Trace]) -> None:
        """Set each visible plot's range only when the data outgrows it: stepped x, shared by
        every panel so they line up in time, and 1-2-5 y with the baseline's peak in view."""
        t_max, y_max = extents(traces)
        for name, top in self._baseline_ymax.items():
            y_max[name] = max(y_max.get(name, top), top)
        x_hi = x_extent(t_max)
        for name, panel in self.panels.items():
            if not panel.isVisibleTo(self):
                continue
            y_hi = 105.0 if name == "utilisation" else nice_ceil(1.1 * y_max.get(name, 0.0))
            rng = (x_hi, y_hi)
            if self._ranges.get(name) != rng:
                self._ranges[name] = rng
                panel.plot.setXRange(0, x_hi, padding=0)
                panel.plot.setYRange(0, y_hi, padding=0)

    # -- header ----------------------------------------------------------------------------------
    def _show_energy(self) -> None:
        t = self.tally
        value = None if t.run_j is None else f"{t.run_j:,.1f} J"
        lines = []
        if t.run_j is not None:
            lines.append(f"{t.run_label or '-'}, {t.run_j / 3600:.4f} Wh")
        if t.runs > 1 and t.total_j is not None:
            # a preparation (the demo model's training) is measured too, but is no comparison
            what = "comparison" if self._sides <= {"baseline", "optimized"} else "session"
            lines.append(f"{what} so far: {t.total_j:,.1f} J, {t.total_label or '-'}")
        self.energy.set(value, "\n".join(lines))

    def _show_running(self) -> None:
        parts = []
        if self.run.phase:
            parts.append(f"phase {self.run.phase}")
        rnd = self.run.round
        if rnd is not None:
            sp = rnd.get("sparsity")
            sp_text = f", sparsity {sp:.0%}" if isinstance(sp, (int, float)) else ""
            parts.append(f"round {rnd.get('round', '?')}{sp_text}")
        self.side.set(self._title, "; ".join(parts))
