"""The ``jp-rerank`` command line.

Exit codes: 0 success, 1 runtime failure (e.g. a model that cannot be loaded), 2 usage errors (bad arguments,
missing files, bad formats).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from jp_rerank._version import __version__

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from jp_rerank.demo import run_demo

    run_demo(
        reranker=args.reranker,
        embedder=args.embedder,
        questions=args.question or None,
        top_n=args.top_n,
        first_k=args.first_k,
        out=sys.stdout,
    )
    return EXIT_OK


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run the demo RAG pipeline on the bundled Japanese passages",
        description="Index the bundled Japanese passages, retrieve (BM25, + dense when an embedder loads) and "
        "rerank with a cross-encoder. Stages whose model cannot be loaded are skipped with a banner.",
    )
    p.add_argument("--reranker", help="alias, hub id or local path of the cross-encoder ('none' to skip)")
    p.add_argument("--embedder", help="alias, hub id or local path of the dense embedder ('none' to skip)")
    p.add_argument("--question", "-q", action="append", help="ask this question (repeatable)")
    p.add_argument("--top-n", type=int, default=3, help="passages shown per question (default 3)")
    p.add_argument("--first-k", type=int, default=20, help="first-stage candidates reranked (default 20)")
    p.set_defaults(func=_cmd_demo)


def _commands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Functions that add one subcommand each (imported here so ``import jp_rerank`` stays light)."""
    from jp_rerank.bench import add_bench_command
    from jp_rerank.commands.evaluate import add_eval_command, add_report_command
    from jp_rerank.commands.models import add_models_command
    from jp_rerank.commands.rerank import add_rerank_command
    from jp_rerank.commands.search_index import add_index_command, add_search_command
    from jp_rerank.rerank.onnx_backend import add_export_command

    return [
        _add_demo,
        add_models_command,
        add_index_command,
        add_search_command,
        add_rerank_command,
        add_eval_command,
        add_report_command,
        add_bench_command,
        add_export_command,
    ]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="jp-rerank", description="Japanese retrieval and reranking for RAG.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _commands():
        add(sub)
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
