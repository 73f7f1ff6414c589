"""Live plots fed by the profiling thread's ring buffers, redrawn on a ~10 Hz timer.

The timer pulls (never one redraw per sample); curves use clip-to-view and peak downsampling so
an hours-long run stays smooth. During the optimized run the baseline's power trace is kept as a
dashed overlay, aligned at each run's start.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from wattlab.core.measure.live import Series, ThroughputTracker, live_series

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def nice_ceil(x: float) -> float:
    """The next of 1, 2, 5 x 10^k at or above x: axis ranges that change rarely."""
    if not np.isfinite(x) or x <= 0:
        return 1.0
    k = 10 ** np.floor(np.log10(x))
    return float(next(m * k for m in (1, 2, 5, 10) if m * k >= x))


def x_extent(t_max: float) -> float:
    step = 10.0 if t_max < 60 else 60.0 if t_max < 600 else 300.0
    return float(np.ceil(max(t_max, 1e-9) / step) * step)


def _plot(title: str, unit: str) -> pg.PlotWidget:
    w = pg.PlotWidget(title=title)
    w.setBackground("w")
    w.showGrid(x=False, y=True, alpha=0.15)
    w.setLabel("left", unit)
    for side in ("left", "bottom"):
        w.getAxis(side).enableAutoSIPrefix(False)  # "MiB (x1000)" helps nobody
    w.setLabel("bottom", "s")
    w.addLegend(offset=(5, 5))
    w.setClipToView(True)
    w.setDownsampling(auto=True, mode="peak")
    # Ranges are set in steps by LivePlots.fit(): pyqtgraph's auto-range moves the axes on every
    # update during a run, and regenerating 8 axes costs the event loop ~70 ms at p99.
    w.disableAutoRange()
    return w


class BigNumber(QLabel):
    def __init__(self, caption: str) -> None:
        super().__init__()
        self.caption = caption
        self.setTextFormat(Qt.RichText)
        self.set(None, "")

    def set(self, text: str | None, sub: str) -> None:
        self.setText(
            f"<div style='font-size:10pt;color:#555'>{self.caption}</div>"
            f"<div style='font-size:20pt;font-weight:600'>{text or '-'}</div>"
            f"<div style='font-size:8pt;color:#777'>{sub}</div>"
        )


class LivePlots(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        nums = QHBoxLayout()
        self.energy = BigNumber("Energy so far")
        self.power = BigNumber("Power now")
        self.side = BigNumber("Running")
        for n in (self.energy, self.power, self.side):
            nums.addWidget(n)
        lay.addLayout(nums)
        grid = QGridLayout()
        self.p_power = _plot("Power", "W")
        self.p_mem = _plot("Memory", "MiB")
        self.p_thr = _plot("Throughput", "items/s")
        self.p_util = _plot("CPU utilisation", "%")
        grid.addWidget(self.p_power, 0, 0)
        grid.addWidget(self.p_mem, 0, 1)
        grid.addWidget(self.p_thr, 1, 0)
        grid.addWidget(self.p_util, 1, 1)
        lay.addLayout(grid)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.overlay = self.p_power.plot(
            [],
            [],
            pen=pg.mkPen("#999999", width=1, style=Qt.DashLine),
            name="baseline (previous run)",
        )
        self.throughput = ThroughputTracker()
        self._ranges: dict[int, tuple[float, float]] = {}
        self.t0: float | None = None
        self._last_power: Series | None = None

    def plot_for(self, s: Series) -> pg.PlotWidget:
        if s.name.endswith("power"):
            return self.p_power
        if s.unit == "MiB":
            return self.p_mem
        return self.p_util

    def fit(self) -> None:
        """Set each plot's range only when the data outgrows it (stepped x, 1-2-5 y)."""
        for plot in (self.p_power, self.p_mem, self.p_thr, self.p_util):
            xs, ys = [], []
            for item in plot.listDataItems():
                x, y = item.getData()
                if x is not None and len(x):
                    xs.append(float(np.nanmax(x)))
                    fin = y[np.isfinite(y)]
                    if fin.size:
                        ys.append(float(fin.max()))
            if not xs:
                continue
            y_hi = nice_ceil(1.1 * max(ys)) if ys else 1.0
            if plot is self.p_util:
                y_hi = 105.0  # a percentage: the scale is known
            rng = (x_extent(max(xs)), y_hi)
            if self._ranges.get(id(plot)) != rng:
                self._ranges[id(plot)] = rng
                plot.setXRange(0, rng[0], padding=0)
                plot.setYRange(0, rng[1], padding=0)

    def reset(self, keep_overlay: bool) -> None:
        """A new run starts: keep the finished run's power trace as the overlay if asked."""
        if keep_overlay and self._last_power is not None and self._last_power.t.size:
            self.overlay.setData(self._last_power.t - self._last_power.t[0], self._last_power.v)
        elif not keep_overlay:
            self.overlay.setData([], [])
        for c in self.curves.values():
            c.setData([], [])
        self.throughput.reset()
        self._ranges.clear()
        self.t0 = None
        self.energy.set(None, "")
        self.power.set(None, "")

    def add_step(self, t_mono: float, items: int) -> None:
        """``t_mono``: time.monotonic() at receipt, the sampler's timebase, so throughput lines
        up with the power and memory plots."""
        self.throughput.add(t_mono, items)

    def update_from(self, ring, energy_j: float | None) -> None:  # noqa: ANN001
        if ring is None:
            return
        series = live_series(ring)
        for k, s in enumerate(series):
            if not s.t.size:
                continue
            if self.t0 is None:
                self.t0 = float(s.t[0])
            name = f"{s.name} ({s.label})" if s.label != "reading" else s.name
            curve = self.curves.get(name)
            if curve is None:
                curve = self.plot_for(s).plot(
                    [], [], name=name, pen=pg.mkPen(PALETTE[k % len(PALETTE)], width=1)
                )
                self.curves[name] = curve
            # NaN (sensor had no value) stays a gap in the line, not a fake zero
            curve.setData(s.t - self.t0, s.v, connect="finite")
        if self.throughput.t:
            c = self.curves.get("throughput")
            if c is None:
                c = self.p_thr.plot([], [], name="items/s", pen=pg.mkPen(PALETTE[0], width=1))
                self.curves["throughput"] = c
            tt = np.array(self.throughput.t)
            c.setData(tt - (self.t0 if self.t0 is not None else tt[0]), np.array(self.throughput.v))
        self.fit()
        powers = [s for s in series if s.name.endswith("power") and s.t.size]
        if powers:
            total = sum(float(s.v[-1]) for s in powers if np.isfinite(s.v[-1]))
            labels = {s.label for s in powers}
            lab = "estimated" if "estimated" in labels else "measured/reading"
            self.power.set(f"{total:.1f} W", lab)
            cpu = next((s for s in powers if s.name == "CPU power"), powers[0])
            self._last_power = cpu
        if energy_j is not None:
            lab = "estimated" if any(s.label == "estimated" for s in powers) else "measured"
            self.energy.set(f"{energy_j:,.1f} J", f"{energy_j / 3600:.4f} Wh, {lab}")
