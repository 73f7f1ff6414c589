"""Screenshots of the app during and after a real comparison, at 1024x700 and 1920x1080, for a
person to look at (the brief: nothing clipped, stale or overlapping). A tiny generated BERT and
CSV keep it to about a minute on 2 cores; nothing is downloaded.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/screenshots.py OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

SIZES = ((1024, 700), (1920, 1080))


def wait(app, until, timeout_s: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not until() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)


def grab_all(w, out: Path, stage: str) -> None:  # noqa: ANN001
    for width, height in SIZES:
        w.resize(width, height)
        for k in range(w.tabs.count()):
            name = w.tabs.tabText(k).lower()
            if stage == "during" and name not in ("live",):
                continue
            w.tabs.setCurrentIndex(k)
            for _ in range(5):
                w.redraw()
                from PySide6.QtWidgets import QApplication

                QApplication.processEvents()
            w.grab().save(str(out / f"{stage}-{name}-{width}x{height}.png"))
            if (w.width(), w.height()) != (width, height):
                print(
                    f"{stage} {name}: the window is {w.width()}x{w.height()}, not {width}x{height}"
                )


def main(out: Path) -> int:
    from PySide6.QtWidgets import QApplication

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests import tiny_models as tm
    from wattlab.app.main_window import MainWindow
    from wattlab.core.measure.store import RunStore
    from wattlab.core.settings import Settings

    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    tmp = Path(tempfile.mkdtemp(prefix="wattlab-shots-"))
    model = tm.bert_classifier(tmp / "bert")
    data = tm.write_csv(tmp / "reviews.csv", tm.sentences(120))
    settings = Settings(interval_s=0.05, idle_s=0.5, cooldown_s=0.5, min_measure_s=2.0)
    w = MainWindow(RunStore(tmp / "wattlab.db"), settings, [])
    w.show()
    w.workload.add_model(str(model))
    w.workload.set_dataset(str(data))
    w.workload.mode.setCurrentIndex(w.workload.mode.findData("train"))
    w.workload.batch.setValue(8)
    w.workload.seq_len.setValue(16)
    w.workload.epochs.setValue(2)
    w.workload.repeats.setValue(2)
    w.techniques.use_recommended()  # training: bf16 autocast
    w.run_both.click()
    wait(app, lambda: w.controller.side == "optimized" and w.live.curves, 240)
    time.sleep(1.5)
    grab_all(w, out, "during")
    wait(app, lambda: not w.controller.busy, 400)
    app.processEvents()
    grab_all(w, out, "after")
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {len(list(out.glob('*.png')))} screenshots to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")))
