"""The ``jp-rerank`` command line: builds the parser from one module per subcommand (:mod:`jp_rerank.commands`).

Exit codes: 0 success, 1 runtime failure (e.g. a model that cannot be loaded), 2 usage errors (bad arguments,
missing files, bad formats).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from jp_rerank._version import __version__

__all__ = ["COMMANDS", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

COMMANDS: tuple[str, ...] = ("demo", "models", "index", "search", "rerank", "eval", "report", "bench", "export")
"""Subcommands, in ``--help`` order: each is the module ``jp_rerank.commands.<name>`` with a ``register(sub)``."""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand (each module is imported here, so importing stays light)."""
    parser = argparse.ArgumentParser(prog="jp-rerank", description="Japanese retrieval and reranking for RAG.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"jp_rerank.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # some libraries (bm25s) set their own loggers to DEBUG
        handler.setLevel(level)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except BrokenPipeError:  # output piped into e.g. `head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"jp-rerank {args.command}: error: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:
        sys.stderr.write(f"jp-rerank {args.command}: error: {exc}\n")
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
