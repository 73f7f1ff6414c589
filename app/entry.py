"""The ``wattlab`` console script: no arguments or ``gui`` opens the app, anything else is the
headless CLI. Lives in app/ so that core/ never has to know Qt exists."""

from __future__ import annotations

import sys


def main() -> int:
    args = sys.argv[1:]
    if args[:2] == ["-m", "wattlab.core.worker"]:
        # A frozen (PyInstaller) app's sys.executable is this program: the session runner's
        # `sys.executable -m wattlab.core.worker SPEC` lands here.
        from wattlab.core.worker.main import main as worker_main

        return worker_main(args[2:])
    if not args or args[0] == "gui":
        from .main import main as gui_main

        return gui_main(args[1:])
    from wattlab.core.cli.main import main as cli_main
    from wattlab.core.cli.signals import stop_like_ctrl_c

    stop_like_ctrl_c()  # SIGTERM/SIGHUP cancel the session and clean up, as Ctrl-C does
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
