"""The ``jp-rerank`` command line: builds the parser from one module per subcommand (:mod:`jp_rerank.commands`).

Exit codes: 0 success, 1 runtime failure (e.g. a model that cannot be loaded), 2 usage errors (bad arguments,
missing files, bad formats), 130 interrupted (Ctrl-C: one line, no traceback; what a command writes is atomic, so
the previous output stays as it was).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from jp_rerank._version import __version__
from jp_rerank.errors import ModelLoadError

__all__ = ["COMMANDS", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

COMMANDS: tuple[str, ...] = (
    "demo",
    "models",
    "index",
    "search",
    "rerank",
    "eval",
    "train",
    "report",
    "bench",
    "export",
    "scale",
    "serve",
)
"""Subcommands, in ``--help`` order: each is the module ``jp_rerank.commands.<name>`` with a ``register(sub)``."""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand (each module is imported here, so importing stays light)."""
    parser = argparse.ArgumentParser(prog="jp-rerank", description="Japanese retrieval and reranking for RAG.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    parser.add_argument(
        "--threads",
        dest="num_threads",
        type=_positive_int,
        metavar="N",
        help="torch CPU threads for every model (default: torch's choice, one per core it sees); 1-2 on a shared "
        "machine or a container with a CPU quota, where more threads make every call several times slower",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"jp_rerank.commands.{name}").register(sub)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (Ctrl-C at any point: one line and 130)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        command = next((a for a in (argv if argv is not None else sys.argv[1:]) if a in COMMANDS), "")
        sys.stderr.write(f"jp-rerank{' ' + command if command else ''}: interrupted\n")
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # some libraries (bm25s) set their own loggers to DEBUG
        handler.setLevel(level)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.num_threads is not None:
        from jp_rerank.runtime import set_torch_threads

        set_torch_threads(args.num_threads)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # output piped into e.g. `head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except ModelLoadError as exc:  # an OSError: runtime failure, even when the cause is a bad path
        return _fail(args.command, exc, EXIT_FAILURE)
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:  # CliInputError and bad values
        return _fail(args.command, exc, EXIT_USAGE)
    except RecursionError:  # an input nested deeper than Python can follow
        return _fail(args.command, "an input is nested too deeply", EXIT_USAGE)
    except MemoryError:
        return _fail(args.command, "out of memory (split the input into smaller files or calls)", EXIT_FAILURE)
    except OSError as exc:  # server unavailable, save lock timeout, disk full...
        return _fail(args.command, exc, EXIT_FAILURE)


def _fail(command: str, error: object, code: int) -> int:
    """Print one line (no traceback) and return ``code``."""
    text = " ".join(str(error).split()) or type(error).__name__
    sys.stderr.write(f"jp-rerank {command}: error: {text}\n")
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
