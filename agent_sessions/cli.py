"""``agent-sessions``: the command line. It parses arguments and calls the public API."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-sessions",
        description="Inspect and demonstrate agent_sessions session stores.",
    )
    parser.add_argument("--version", action="version", version=f"agent-sessions {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="hold a short conversation that survives a restart (offline unless OPENAI_API_KEY)",
        description="Run a conversation on a SQLite file, reopen it, and show that the agent "
        "remembers. Uses a deterministic offline model unless OPENAI_API_KEY is set.",
    )
    demo.add_argument(
        "--db",
        type=Path,
        default=Path("agent_sessions_demo.db"),
        help="SQLite file to use (default: ./agent_sessions_demo.db)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        0 on success, 2 on a usage error.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo  # noqa: PLC0415 - the SDK import is only paid by `demo`

        asyncio.run(run_demo(args.db))
        return 0
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
