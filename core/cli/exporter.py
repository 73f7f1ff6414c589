"""``wattlab exporter``: serve this node's power and energy to Prometheus or to a run's --nodes.

Runs until Ctrl-C (or SIGTERM), then stops the server and the sensors and exits 0 without a
traceback. A port already taken, or an address that is not this machine's, is one line and
exit code 2, before sampling starts.

The estimate sensor (where RAPL is missing) is pointed at PID 1's tree, so on such a node the
estimated CPU and RAM figures cover every process the exporter can see (in a container: the
container's), not only a workload's.
"""

from __future__ import annotations

import argparse
import sys
import threading

from wattlab.core.spec import NumberRange

DEFAULT_PORT = 9464
DEFAULT_HOST = "127.0.0.1"
DEFAULT_INTERVAL_S = 1.0
PORT = NumberRange("port (--port)", 0, 65535, integer=True)


def port_number(text: str) -> int:
    """argparse type of ``--port``: 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    msg = PORT.problem(value)
    if msg is not None:
        raise argparse.ArgumentTypeError(msg)
    return value


def cmd_exporter(args: argparse.Namespace) -> int:
    from wattlab.core.cli.common import store_path
    from wattlab.core.cli.flags import check_number_flags
    from wattlab.core.measure.exporter import NodeExporter, RunInfoReader
    from wattlab.core.measure.sensors import discover

    check_number_flags(args)  # --interval
    sensors = discover()
    sensors.set_target(1)  # the whole machine (see the module docstring)
    exporter = NodeExporter(sensors, args.interval, RunInfoReader(store_path(args)))
    try:
        port = exporter.start(args.host, args.port)
    except BaseException:
        exporter.stop()
        sensors.close()
        raise
    sources = ", ".join(f"{src} {label}" for src, label in exporter.labels.items()) or "none"
    print(
        f"wattlab exporter: serving http://{args.host}:{port}/metrics every {args.interval:g} s "
        f"({sources}); Ctrl-C stops",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("wattlab exporter: stopped", file=sys.stderr)
    finally:
        exporter.stop()
        sensors.close()
    return 0


def register(sub) -> None:  # noqa: ANN001 - argparse's private subparsers action type
    s = sub.add_parser(
        "exporter",
        help="serve this node's power and energy in Prometheus format (for --nodes, Prometheus "
        "or Grafana; GPU figures also under dcgm-exporter's names)",
    )
    s.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    s.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for other machines)",
    )
    s.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help=f"seconds between sensor reads (default {DEFAULT_INTERVAL_S:g})",
    )
    s.set_defaults(func=cmd_exporter)
