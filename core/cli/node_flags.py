"""Flags for other nodes' energy (``--nodes``, ``--prometheus``, ``--node-selector``,
``--scrape-interval``), and turning them into the one object a run calls at its start and end.

Kept apart from flags.py so any command (run, compare) adds them with one call; every mistake
is refused in one line before anything runs. Numeric flags here validate in their argparse type
(the same NumberRange sentences as FLAG_RANGES), so they need no entry there.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from wattlab.core.errors import SpecError
from wattlab.core.measure.nodes import (
    DEFAULT_SCRAPE_PERIOD_S,
    NodeMeter,
    NodeScraper,
    node_urls,
)
from wattlab.core.spec import NumberRange

SCRAPE_PERIOD = NumberRange("scrape interval (--scrape-interval)", 0.1, 3600.0, unit=" s")


def scrape_period(text: str) -> float:
    """argparse type of ``--scrape-interval``: a number of seconds within SCRAPE_PERIOD."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    msg = SCRAPE_PERIOD.problem(value)
    if msg is not None:
        raise argparse.ArgumentTypeError(msg)
    return value


def node_flags(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("energy of other nodes (each runs `wattlab exporter`)")
    g.add_argument(
        "--nodes",
        metavar="URLS",
        help="comma-separated exporters to scrape at the start, during and at the end of the "
        "run, e.g. gpu1:9464,gpu2:9464 (host:port or http(s) URL; /metrics by default)",
    )
    g.add_argument(
        "--prometheus",
        metavar="URL",
        help="instead of --nodes: a Prometheus server that scrapes the nodes' exporters "
        "(wattlab, dcgm-exporter or node-exporter RAPL), asked at the end of the run",
    )
    g.add_argument(
        "--node-selector",
        metavar="SEL",
        help='with --prometheus: label matchers picking the nodes, e.g. job="gpu-nodes"',
    )
    g.add_argument(
        "--scrape-interval",
        type=scrape_period,
        metavar="S",
        help=f"with --nodes: seconds between scrapes during the run (default "
        f"{DEFAULT_SCRAPE_PERIOD_S:g})",
    )


def node_meter_from_args(args: argparse.Namespace) -> NodeMeter | None:
    """The run's node meter, or None when no node flag was given. Raises SpecError (one line)
    for flags that do not go together or a URL that cannot be one; starts nothing."""
    from wattlab.core.measure.nodes_prometheus import PrometheusQuery, PrometheusWindow

    nodes = getattr(args, "nodes", None)
    prom = getattr(args, "prometheus", None)
    selector = getattr(args, "node_selector", None)
    period = getattr(args, "scrape_interval", None)
    if nodes is not None and prom is not None:
        raise SpecError("--nodes and --prometheus are two ways to the same figures: give one")
    if selector is not None and prom is None:
        raise SpecError("--node-selector picks nodes in Prometheus: it needs --prometheus")
    if period is not None and nodes is None:
        raise SpecError("--scrape-interval sets how often --nodes are scraped: it needs --nodes")
    if nodes is not None:
        try:
            urls = node_urls(nodes)
        except SpecError as exc:
            raise SpecError(f"--nodes: {exc}") from None
        return NodeScraper(urls, period if period is not None else DEFAULT_SCRAPE_PERIOD_S)
    if prom is not None:
        return PrometheusWindow(PrometheusQuery(prom, selector or ""))
    return None


def node_meter_factory(args: argparse.Namespace) -> Callable[[], NodeMeter] | None:
    """For commands that measure several runs (compare): the flags checked once, now, and a
    fresh meter per run (a NodeScraper is one window: it cannot be started again)."""
    first = node_meter_from_args(args)
    if first is None:
        return None
    first.close()

    def make() -> NodeMeter:
        meter = node_meter_from_args(args)
        assert meter is not None  # the same flags as above
        return meter

    return make
