"""The ``evomerge`` command line.

Each sub-command lives in its own module of this package and exposes ``add_parser(subparsers)``
(which registers the sub-parser and sets ``func``) — ``main`` only wires them together and turns
:class:`~evomerge.errors.EvomergeError` into one line on stderr and exit status 2 — and so any
``OSError`` no writer named (``error: PATH: <strerror> (while running evomerge CMD)``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Before torch is imported anywhere: OpenMP threads that spin while they wait made CPU steps 30-45x
# slower as soon as another process shared the cores (3.3 s vs 72 ms a training step, measured);
# passive waiting costs little when the machine is idle. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from evomerge import __version__
from evomerge.errors import EvomergeError
from evomerge.io.oserrors import describe

# Order is the order `evomerge --help` lists them in: the data flow a user follows.
COMMANDS = ["toyworld", "merge", "eval", "run", "resume", "status", "export", "report", "demo"]


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error:`` line like every other user error (argparse
    prints the whole usage block first); ``--help`` still shows the usage."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="evomerge",
        description="Evolutionary search for model-merging recipes.",
    )
    parser.add_argument("--version", action="version", version=f"evomerge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"evomerge.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (one line already printed) or --help / --version
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except EvomergeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a full disk, a read-only folder, a file where a folder belongs: never a traceback
        print(f"error: {describe(exc, doing=f'running evomerge {args.command}')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
