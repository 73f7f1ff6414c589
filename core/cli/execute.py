"""Running a spec or a comparison from the CLI: progress on stderr, the demo trained first
when it must be, the stored result printed."""

from __future__ import annotations

import argparse
import sys

from wattlab.core.cli.common import EXIT_USAGE, CliError, measure_settings
from wattlab.core.cli.flags import _margin_pct
from wattlab.core.cli.printing import Progress
from wattlab.core.measure.carbon import CarbonSettings
from wattlab.core.measure.store import RunStore
from wattlab.core.spec import RunSpec


def run_spec_cli(spec, args: argparse.Namespace, store: RunStore, node_meter=None) -> dict:  # noqa: ANN001 - NodeMeter, imported lazily
    from wattlab.core.run.client import SessionFailed, SessionRunner

    runner = SessionRunner(
        spec, store, measure_settings(args), on_event=Progress(), node_meter=node_meter
    )
    try:
        return runner.run()
    except KeyboardInterrupt:
        runner.cancel()
        raise
    except SessionFailed as exc:
        raise CliError(
            f"{exc} (run {exc.run_id} kept as failed)", EXIT_USAGE if exc.user else 1
        ) from None


def ensure_demo_trained(spec, args: argparse.Namespace, store: RunStore) -> None:
    """The demo trains itself on first use; this is that training run, stored like any other."""
    from wattlab.core.spec import demo_training_spec

    train = demo_training_spec(spec)
    if train is None:
        return
    print(
        "The demo model is not trained on this machine yet: training it first (about a "
        "minute on 2 cores; cached for every later run).",
        file=sys.stderr,
    )
    run_spec_cli(train, args, store)


def compare_cli(
    base: RunSpec,
    opt: RunSpec,
    args: argparse.Namespace,
    store: RunStore,
    carbon: CarbonSettings,
    quality_target: float | None = None,
) -> dict:
    """``compare`` with terminal progress; a failed run becomes one line and an exit code."""
    from wattlab.core.cli.node_flags import node_meter_factory
    from wattlab.core.run.client import SessionFailed
    from wattlab.core.run.comparison import compare

    make_meter = node_meter_factory(args)  # --nodes / --prometheus: a fresh window per run

    def with_nodes(runner) -> None:  # noqa: ANN001 - SessionRunner
        if make_meter is not None:
            runner.node_meter = make_meter()

    try:
        return compare(
            base,
            opt,
            store,
            measure_settings(args),
            carbon,
            args.repeats,
            args.cooldown,
            quality_target,
            on_event=Progress(),
            on_progress=lambda p: print(f"== {p.text}", file=sys.stderr),
            margin=_margin_pct(args) / 100,
            rerun_disturbed=bool(getattr(args, "rerun_disturbed", False)),
            deploy_queries=getattr(args, "deploy_queries", None),
            runner_hook=with_nodes,
        )
    except SessionFailed as exc:
        raise CliError(
            f"{exc} (run {exc.run_id} kept as failed)", EXIT_USAGE if exc.user else 1
        ) from None
