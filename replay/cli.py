"""`python -m replay COMMAND ...`: the analysts' command line.

Each command lives in its own module under ``replay.commands`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their command
runs, so one command's heavy imports (VW, matplotlib) never slow another.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("replay.commands.evaluate", "estimate policies' values from logged impressions"),
    "check": ("replay.commands.check", "check logged propensities against what was served"),
    "simulate": ("replay.commands.simulate", "write synthetic logs with known true CTRs"),
    "export": ("replay.commands.export", "write the service's logged impressions joined with rewards"),
    "abtest": ("replay.commands.abtest", "fixed-split A/B analysis: z-test, interval, SRM, power"),
    "compare": ("replay.commands.compare", "A/B vs Thompson sampling vs VW on the same simulated traffic"),
    "train-vw": ("replay.commands.train_vw", "train a VW model from logs (offline warm start)"),
}


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m replay", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(sp)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            sp.set_defaults(_missing=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_missing", False):
        print(f"error: command {args.command!r} is not available in this build", file=sys.stderr)
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
