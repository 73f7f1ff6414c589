"""The Runs table in the app (app/widgets/runs.py): the delete warning names the comparisons a
run belongs to, numeric sorting, grouping, editing names/tags/notes, double-click, overlay,
copy as command, re-run of a comparison, and a usable size in a 1024x700 window."""

from __future__ import annotations

import shlex

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest

from tests.test_runs_table import fill_store
from wattlab.core.measure.store import RunStore
from wattlab.core.run import runs_table as rt

pytestmark = pytest.mark.gui


@pytest.fixture
def view(tmp_path, qtbot):
    from wattlab.app.widgets.runs import RunsView as HistoryView

    store = RunStore(tmp_path / "w.db")
    ids = fill_store(store)
    v = HistoryView(store)
    qtbot.addWidget(v)
    v.resize(900, 600)
    v.show()
    yield v, ids
    store.close()


def test_deleting_a_repeat_names_its_comparison(view):
    v, ids = view
    cid, rid = ids["comparison"], ids["repeats"][1]
    asked: list[str] = []
    v.confirm = lambda text: asked.append(text) or False
    v.select([rid])
    v.del_btn.click()
    assert len(asked) == 1
    assert f'comparison {cid} "compare: int8"' in asked[0]
    assert "charts" in asked[0] and "lose it" in asked[0]
    assert v.store.run(rid) is not None  # declined: nothing deleted
    v.confirm = lambda text: True
    v.del_btn.click()
    assert v.store.run(rid) is None and rid not in v.visible_ids()


def test_repeats_sit_under_their_comparison(view):
    v, ids = view
    assert v.top_level_ids() == [ids["profile"], ids["comparison"], ids["train"]]
    assert sorted(v.children_ids(ids["comparison"])) == ids["repeats"]
    assert v.cell(ids["repeats"][0], "kind") == "baseline 1"
    v.group.setChecked(False)
    assert len(v.top_level_ids()) == 7 and v.children_ids(ids["comparison"]) == []


def test_columns_sort_by_value_not_text(view):
    v, ids = view
    col = list(rt.KEYS)
    # energy/item: 2 J (train) < 7.5 J (comparison); as text "7.5" < "2" would not hold
    v.tree.sortByColumn(col.index("per_item"), Qt.SortOrder.AscendingOrder)
    assert v.top_level_ids() == [ids["train"], ids["comparison"], ids["profile"]]  # "-" last
    v.tree.sortByColumn(col.index("per_item"), Qt.SortOrder.DescendingOrder)
    assert v.top_level_ids() == [ids["comparison"], ids["train"], ids["profile"]]  # still last
    assert v.children_ids(ids["comparison"]) == [ids["repeats"][i] for i in (3, 0, 2, 1)]
    header = v.tree.header()  # a click on a header sorts by that column
    x = header.sectionViewportPosition(col.index("id")) + header.sectionSize(col.index("id")) // 2
    QTest.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, 5))
    assert v.tree.sortColumn() == col.index("id")


def test_filter_box_matches_any_column_and_column_terms(view):
    v, ids = view
    v.filter.setText("mode:train")
    assert v.visible_ids() == [ids["train"]]
    v.filter.setText("sleep")
    assert v.visible_ids() == [ids["profile"]]
    v.filter.setText("optimized")
    assert v.top_level_ids() == [ids["comparison"]]
    assert sorted(v.children_ids(ids["comparison"])) == ids["repeats"][1:3]
    assert v.tree.topLevelItem(0).isExpanded()  # shown for its repeats: opened
    v.filter.setText("")
    assert len(v.visible_ids()) == 7


def test_name_tags_and_notes_are_edited_stored_and_shown(view, tmp_path):
    v, ids = view
    rid = ids["train"]
    v.select([rid])
    assert v.name_edit.isEnabled()
    v.name_edit.setText("warm start")
    v.tags_edit.setText("paper, cpu, paper")
    v.notes_edit.setPlainText("fan loud\nsecond line")
    v.save_btn.click()
    assert v.cell(rid, "name") == "warm start" and v.cell(rid, "tags") == "paper, cpu"
    assert v.cell(rid, "notes") == "fan loud ..."
    assert v.tags_edit.text() == "paper, cpu"  # what was stored
    reopened = RunStore(v.store.path)
    note = reopened.annotation(rid)
    assert (note.name, note.tags, note.notes) == (
        "warm start",
        ("paper", "cpu"),
        "fan loud\nsecond line",
    )
    reopened.close()
    v.filter.setText("tag:paper")
    assert v.visible_ids() == [rid]


def test_a_refresh_keeps_what_is_being_typed(view):
    v, ids = view
    v.select([ids["train"]])
    v.notes_edit.setPlainText("half-typed")
    v.refresh()  # a run finished meanwhile
    assert v.notes_edit.toPlainText() == "half-typed" and v.selected_ids() == [ids["train"]]


def test_double_click_opens(view, qtbot):
    v, ids = view
    item = v._items[ids["train"]]
    rect = v.tree.visualItemRect(item)
    with qtbot.waitSignal(v.open_requested, timeout=2000) as sig:
        # an item view opens on a double click after the press on the same item
        QTest.mouseClick(v.tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        QTest.mouseDClick(v.tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert sig.args == [ids["train"]]


def test_overlay_emits_session_ids_and_plots_them(view, qtbot):
    v, ids = view
    v.select([ids["comparison"], ids["train"]])
    with qtbot.waitSignal(v.overlay_requested, timeout=2000) as sig:
        v.overlay_btn.click()
    assert sig.args == [[*ids["repeats"], ids["train"]]]
    dialog = v._overlay
    assert dialog is not None and len(dialog.curves) == 4  # the training run has no samples
    assert "No samples stored for #1" in dialog.note.text()
    names = [c.name() for c in dialog.curves]
    assert all(n.endswith("[measured]") for n in names)
    dialog.close()


def test_copy_command_puts_a_parseable_command_on_the_clipboard(view):
    from wattlab.core.cli.main import build_parser

    v, ids = view
    v.select([ids["comparison"]])
    cmd = v.copy_command()
    assert cmd is not None and QGuiApplication.clipboard().text() == cmd
    args = build_parser().parse_args(shlex.split(cmd)[1:])
    assert args.command == "compare" and args.technique == ["quantization:backend=ort"]
    assert "Copied" in v.details.text()


def test_rerun_of_a_comparison_and_of_a_session(view, qtbot):
    v, ids = view
    cid = ids["comparison"]
    v.select([cid])
    with qtbot.waitSignal(v.rerun_comparison_requested, timeout=2000) as sig:
        v.rerun_btn.click()
    base, opt, repeats = sig.args
    assert (
        repeats == 2 and base["techniques"] == [] and opt["techniques"][0]["name"] == "quantization"
    )
    v.select([ids["train"]])
    with qtbot.waitSignal(v.rerun_requested, timeout=2000) as sig:
        v.rerun_btn.click()
    assert sig.args[0]["mode"] == "train"


def test_compare_two_sessions(view, qtbot):
    v, ids = view
    a, b = ids["repeats"][:2]
    v.select([b, a])
    assert v.cmp_btn.isEnabled()
    with qtbot.waitSignal(v.compare_requested, timeout=2000) as sig:
        v.cmp_btn.click()
    assert sig.args == [a, b]
    v.select([ids["comparison"], a])
    assert not v.cmp_btn.isEnabled()


def test_fits_a_1024x700_window(view, qtbot):
    v, _ = view
    hint = v.minimumSizeHint()
    assert hint.width() <= 640 and hint.height() <= 420
    v.resize(640, 520)  # the History tab's share of a 1024x700 main window
    qtbot.wait(10)
    for b in v.buttons:
        g = b.geometry()
        assert b.isVisible() and g.right() <= v.width() and g.bottom() <= v.height(), b.text()
    assert v.tree.height() >= 150


def test_refresh_of_500_runs_is_one_query(tmp_path, qtbot):
    from wattlab.app.widgets.runs import RunsView as HistoryView

    store = RunStore(tmp_path / "w.db")
    for _ in range(80):
        fill_store(store)  # 560 runs
    v = HistoryView(store)
    qtbot.addWidget(v)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    v.refresh()
    v.filter.setText("quantization")  # re-filters what was read: no query
    store._db.set_trace_callback(None)
    assert [s.split()[0].upper() for s in statements] == ["SELECT"]
    assert len(v.visible_ids()) > 0
    store.close()
