"""`replay COMMAND ...` (or `python -m replay`): the analysts' command line.

Each command lives in its own module under ``replay.commands`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Only the named command's module is imported,
and command modules import pandas, scipy, VW and matplotlib inside ``run``, so ``--help`` and
argument errors start at once.

Exit status (the same for the ops CLI, ``service.ops_cli``): 0 success; 1 the command failed
(bad input file, bad value, unreachable Redis: one ``error:`` line on stderr naming the argument
or row); 2 usage error (unknown flag, missing argument: argparse's message); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import os
import sys
from typing import NoReturn

from replay.errors import ReplayError

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

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class CliError(ReplayError):
    """A user-facing error raised by a command: one line, exit status 1, no traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` gets (and imports) its arguments."""
    parser = _Parser(prog="replay", description=__doc__.splitlines()[0],
                                     epilog="exit status: 0 ok, 1 the command failed (one error line), 2 usage error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module)
        if name == chosen:
            importlib.import_module(module).add_arguments(sp)
    return parser


def _return_freed_memory() -> None:
    """Let big freed buffers go back to the OS, so one stage's garbage is not the next one's peak.

    glibc raises its mmap threshold after big frees, after which large buffers come from a heap it
    does not shrink; Arrow's own allocator also keeps what it frees. Fixing the threshold and
    using the system allocator for Arrow (only if pyarrow is not loaded yet and the user did not
    choose) keeps ``evaluate``'s peak near its live data. The threshold is 16 MiB: per-row columns
    of a million rows (8 MB) and per-chunk temporaries are then reused from the heap instead of
    being mapped and page-faulted afresh each time (a lower one costs ~0.5 s of system time
    on 1M rows); (n, K) arrays and whole tables still go back to the OS. No effect off glibc.
    """
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-3, 16 * 1024 * 1024)  # M_MMAP_THRESHOLD = 16 MiB


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    _return_freed_memory()
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except ReplayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
