"""Results stored by WattLab 0.1 (before typed results and schema versions) still open: typed
reading, `wattlab runs show`, `wattlab report`, and the app's results and history views.

tests/data/store-v0.1.db was written by commit b5b0136 (the last commit before core/ was
regrouped): `wattlab compare --model demo --optimized mixed-precision:dtype=bf16,mode=cast
--repeats 3 --infer-batches 5` with the tiny demo of tests/test_cli_run.py. Run 2 is the
comparison, runs 3-8 its sessions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from wattlab.core.cli.main import main as cli_main
from wattlab.core.measure.store import RunStore
from wattlab.core.results import SCHEMA_VERSION, Comparison, PhaseEnergy, RunResult

OLD_DB = Path(__file__).parent / "data" / "store-v0.1.db"
COMPARISON_ID, SESSION_IDS = 2, range(3, 9)


@pytest.fixture
def old_store(_isolated_data_dir):
    """A copy of the 0.1 store as the user's data dir (never the checked-in file itself)."""
    _isolated_data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(OLD_DB, _isolated_data_dir / "wattlab.db")
    store = RunStore.open_default()
    yield store
    store.close()


def test_stored_sessions_read_as_typed_results_and_round_trip(old_store):
    for rid in SESSION_IDS:
        raw = old_store.result(rid)
        run = RunResult.from_dict(raw)
        assert run.schema_version == 1  # stored before the field existed
        assert run.run_id == rid and run.status == "completed"
        assert isinstance(run.measured_phase, PhaseEnergy)
        assert run.measured_phase.phases == ("infer",)
        assert run.measured_phase.gross_j > 0 and run.energy_label == "estimated"
        assert run.energy_per_item_j is not None and run.energy_per_item_j > 0
        assert run.session.items and run.session.metrics["accuracy"] is not None
        back = run.to_dict()
        assert back.pop("schema_version") == 1
        assert back == raw  # nothing lost, nothing renamed


def test_new_results_carry_the_schema_version():
    run = RunResult.from_dict({"run_id": 1, "status": "completed"})
    assert run.schema_version == 1  # absent means stored by 0.1
    fresh = RunResult(run_id=1, status="completed")
    assert fresh.to_dict()["schema_version"] == SCHEMA_VERSION == 2


def test_stored_comparison_reads_as_typed_verdicts(old_store):
    comp = Comparison.from_dict(old_store.result(COMPARISON_ID))
    assert comp.schema_version == 1
    assert comp.pairs_completed == 3
    energy = comp.verdict("energy_per_item_j")
    assert energy is not None and energy.role == "primary" and energy.pairs == 3
    assert energy.source == "estimated" and energy.ratio_ci is not None
    assert isinstance(energy.ratio_ci, tuple)  # JSON lists come back as the declared tuples
    assert comp.verdict("no-such-metric") is None


def test_runs_show_opens_old_runs(old_store, capsys):
    assert cli_main(["runs", "show", "3"]) == 0
    out = capsys.readouterr().out
    assert "measured phase (infer)" in out and "energy per item" in out
    assert cli_main(["runs", "show", str(COMPARISON_ID), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["comparison_id"] == COMPARISON_ID
    assert cli_main(["runs", "show", str(COMPARISON_ID)]) == 0
    assert "interleaved pair(s)" in capsys.readouterr().out


@pytest.mark.e2e  # the manifest asks the platform module, which runs `uname -p`
def test_report_rewrites_an_old_comparison(old_store, tmp_path):
    out = tmp_path / "report"
    code = cli_main(
        ["report", str(COMPARISON_ID), "--pdf", "--csv", "--json", "--out", str(out)]
    )
    assert code == 0
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    header = (out / "emissions.csv").read_text().splitlines()[0]
    assert header.startswith("timestamp,project_name,run_id")
    assert json.loads((out / "comparison.json").read_text())["pairs_completed"] == 3


@pytest.mark.gui
def test_app_views_open_old_runs(old_store, qtbot):
    from wattlab.app.widgets.results import ResultsView
    from wattlab.app.widgets.runs import RunsView as HistoryView

    history = HistoryView(old_store)
    qtbot.addWidget(history)
    view = ResultsView()
    qtbot.addWidget(view)
    view.show_comparison(old_store.result(COMPARISON_ID))
    cells = [view.table.item(0, c).text() for c in range(view.table.columnCount())]
    assert cells[0] and cells[4] and "-" != cells[1]  # metric, verdict and a baseline figure
    view.show_run(old_store.result(3))
    assert "J" in view.table.item(0, 1).text() and "estimated" in view.table.item(0, 1).text()
