"""``jp-rerank train``: fine-tune a cross-encoder reranker on your (question, passage) data."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from typing import Any

from jp_rerank.commands._io import CliInputError

__all__ = ["parse_duration", "parse_trainer_arg", "register"]

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


def parse_duration(text: str) -> float:
    """Parse ``"45m"``, ``"1h30m"``, ``"90s"`` or ``"3600"`` (seconds) into seconds.

    Raises:
        argparse.ArgumentTypeError: If the text is not a positive duration.

    Example:
        >>> parse_duration("1h30m"), parse_duration("45m"), parse_duration("90")
        (5400.0, 2700.0, 90.0)
    """
    match = _DURATION_RE.match(text.lower())
    if not match or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 45m, 1h30m, 90s or 3600)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise argparse.ArgumentTypeError(f"the duration must be positive, got {text!r}")
    return total


def parse_trainer_arg(text: str) -> tuple[str, Any]:
    """Parse ``--trainer-arg KEY=VALUE``: the value as a JSON literal when it is one, else as a string.

    Raises:
        argparse.ArgumentTypeError: If there is no ``=`` or no key.

    Example:
        >>> parse_trainer_arg("max_grad_norm=0.5"), parse_trainer_arg("lr_scheduler_type=cosine")
        (('max_grad_norm', 0.5), ('lr_scheduler_type', 'cosine'))
        >>> parse_trainer_arg('report_to=["tensorboard"]'), parse_trainer_arg("torch_compile=true")
        (('report_to', ['tensorboard']), ('torch_compile', True))
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r} (e.g. max_grad_norm=0.5)")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "off") else int(text)


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "off") else float(text)


# CLI option → TrainConfig field, for options that map one to one (the rest are handled in _run).
_FIELDS = (
    "data_format",
    "split",
    "corpus",
    "skip_bad_rows",
    "eval_data",
    "eval_queries",
    "eval_depth",
    "eval_precision",
    "first_stage",
    "bm25",
    "embedder",
    "num_negatives",
    "random_negatives",
    "mining_depth",
    "relative_margin",
    "max_overlap",
    "save_mined",
    "max_length",
    "cls_mean_layer",
    "keep_layers",
    "freeze_layers",
    "loss",
    "pos_weight",
    "teacher",
    "epochs",
    "max_steps",
    "time_budget",
    "budget_clock",
    "batch_size",
    "learning_rate",
    "warmup_ratio",
    "weight_decay",
    "precision",
    "seed",
    "save_steps",
    "save_total_limit",
    "keep_checkpoints",
    "logging_steps",
    "device",
)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave (unset options are absent, so a resumed run keeps its own)."""
    options = {name: getattr(args, name) for name in _FIELDS if hasattr(args, name)}
    if hasattr(args, "freeze_embeddings"):
        options["freeze_embeddings"] = args.freeze_embeddings
    if hasattr(args, "no_title"):
        options["with_title"] = not args.no_title
    if hasattr(args, "no_group_by_length"):
        options["group_by_length"] = not args.no_group_by_length
    if hasattr(args, "no_eval_before"):
        options["evaluate_before"] = not args.no_eval_before
    if hasattr(args, "no_normalize_text"):
        options["normalize_text"] = not args.no_normalize_text
    if getattr(args, "quiet", False):
        options["progress"] = False
    if hasattr(args, "trainer_args"):
        options["trainer_args"] = dict(args.trainer_args)  # a key given twice: the last value
    return options


def _table(result: Any) -> str:
    rows = [("first stage", result.metrics_first_stage), ("before", result.metrics_before)]
    rows.append(("after", result.metrics_after))
    names = list(result.metrics_after or result.metrics_first_stage)
    if not names:
        return "no held-out evaluation\n"
    lines = ["model        " + "  ".join(f"{n:>10}" for n in names)]
    for label, metrics in rows:
        if metrics:
            lines.append(f"{label:<12} " + "  ".join(f"{metrics.get(n, float('nan')):>10.4f}" for n in names))
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace) -> int:
    from jp_rerank.training import train

    options = _options(args)
    logger = logging.getLogger("jp_rerank.training")
    handler: logging.Handler | None = None
    if not getattr(args, "verbose", 0) and not getattr(args, "quiet", False):
        # A long CPU job should say what it is doing even without -v: our own INFO lines go to stderr.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        result = train(args.data, args.output, base=getattr(args, "base", None), resume=args.resume, **options)
    except KeyboardInterrupt:
        sys.stderr.write(
            f"jp-rerank train: interrupted; continue with: jp-rerank train {args.data} -o {args.output} --resume\n"
        )
        return 130  # jp_rerank.cli.EXIT_INTERRUPTED, with the line that says how to resume
    except FileExistsError as exc:
        raise CliInputError(str(exc)) from exc
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
    sys.stdout.write(_table(result))
    skipped = int(result.data.get("skipped_rows", 0) or 0)
    if skipped:
        sys.stdout.write(f"skipped {skipped} bad row{'s' if skipped != 1 else ''} of {result.data.get('source')}\n")
    sys.stdout.write(
        f"saved {result.output_dir} ({result.global_step} steps, stopped by {result.stopped_by.replace('_', ' ')}, "
        f"{result.train_seconds:.0f} s of training)\n"
    )
    return 0


def _data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--format", dest="data_format", choices=["auto", "jsonl", "beir", "csv"])
    g.add_argument("--split", help="qrels split of a BEIR folder (default train)")
    g.add_argument("--corpus", help="extra passage pool to mine from (BEIR folder or JSONL with text)")
    g.add_argument("--no-title", action="store_true", help="do not prefix BEIR passages with their title")
    g.add_argument("--skip-bad-rows", action="store_true", help="leave malformed rows out (the count is reported)")
    g.add_argument("--no-normalize-text", action="store_true", help="do not NFKC-normalise training texts")
    g = p.add_argument_group("held-out evaluation")
    g.add_argument("--eval-data", help="separate held-out file or BEIR folder (default: split off the data)")
    g.add_argument("--eval-queries", type=int, help="held-out questions (default 200; 0: none)")
    g.add_argument("--eval-depth", type=int, help="first-stage candidates reranked per question (default 20)")
    g.add_argument("--eval-precision", choices=["fp32", "auto"], help="held-out scoring precision (default fp32)")
    g.add_argument("--no-eval-before", action="store_true", help="do not score the starting model")


def _mining_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hard negatives")
    g.add_argument("--first-stage", choices=["bm25", "dense", "hybrid"], help="first stage (default bm25)")
    g.add_argument("--bm25", help="BM25 tokenizer: char1-2 (default), char2, mecab, sudachi...")
    g.add_argument("--embedder", help="dense embedder for --first-stage dense/hybrid")
    g.add_argument("--negatives", dest="num_negatives", type=int, help="hard negatives per question (default 3)")
    g.add_argument("--random-negatives", type=int, help="random negatives per question (default 1)")
    g.add_argument("--mining-depth", type=int, help="candidates considered per question (default 30)")
    g.add_argument(
        "--margin",
        dest="relative_margin",
        type=_optional_float,
        help="drop candidates scoring >= (1 - MARGIN) x the positive (default 0.05; 'off')",
    )
    g.add_argument("--max-overlap", type=float, help="drop near-duplicates of a positive (default 0.9)")
    g.add_argument("--save-mined", help="also write the mined set to this JSONL (train on it later as is)")


def _model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--max-length", type=int, help="tokens per pair (default 256)")
    g.add_argument(
        "--cls-mean-layer",
        choices=["auto", "on", "off"],
        help="[CLS]-gets-the-mean layer for mean-pooled bases (default auto)",
    )
    g.add_argument("--keep-layers", type=_optional_int, help="keep only the first N encoder layers")
    g.add_argument("--freeze-embeddings", action=argparse.BooleanOptionalAction, help="default on")
    g.add_argument("--freeze-layers", type=int, help="do not train the lowest N layers (default 0)")


def _training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--loss", choices=["bce", "listwise", "distill"], help="default bce")
    g.add_argument("--pos-weight", type=float, help="BCE weight of positives (default: negatives per positive)")
    g.add_argument("--teacher", help="teacher reranker for --loss distill")
    g.add_argument("--epochs", type=float, help="default 1")
    g.add_argument("--max-steps", type=_optional_int, help="stop after N steps")
    g.add_argument(
        "--time-budget",
        type=parse_duration,
        help="how long the whole run may take (45m, 1h30m, 900): reading, mining, held-out scoring (at most 10%% of "
        "it before and after, as many questions as fit), training (what is left) and saving",
    )
    g.add_argument(
        "--budget-clock",
        choices=["wall", "cpu"],
        help="what --time-budget counts: elapsed time (default) or this process's CPU time (for shared machines)",
    )
    g.add_argument("--batch-size", type=int, help="pairs per step (default 16)")
    g.add_argument("--lr", dest="learning_rate", type=float, help="peak learning rate (default 5e-5)")
    g.add_argument("--warmup-ratio", type=float, help="default 0.1")
    g.add_argument("--weight-decay", type=float, help="default 0.01")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="default auto (bf16 where native)")
    g.add_argument("--no-group-by-length", action="store_true", help="plain random batches")
    g.add_argument("--seed", type=int, help="default 42")
    g.add_argument(
        "--trainer-arg",
        dest="trainer_args",
        action="append",
        type=parse_trainer_arg,
        metavar="KEY=VALUE",
        help="a field of sentence-transformers' CrossEncoderTrainingArguments, e.g. max_grad_norm=0.5 "
        "(repeatable; VALUE is read as JSON when it is, else as text)",
    )
    g.add_argument("--save-steps", type=int, help="checkpoint every N steps (default 200)")
    g.add_argument("--save-total-limit", type=int, help="checkpoints kept (default 2)")
    g.add_argument("--keep-checkpoints", action="store_true", help="keep OUTPUT/checkpoints after the run")
    g.add_argument("--logging-steps", type=int, help="log every N steps (default 20)")
    g.add_argument("--device", help="cpu, cuda, ... (default: auto)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or progress lines")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``jp-rerank train``."""
    p = sub.add_parser(
        "train",
        help="fine-tune a Japanese reranker on your (question, passage) data",
        description="Train a cross-encoder reranker from a base model and (question, relevant passage) data: JSONL "
        '({"query", "positive" | "positives", "negatives"?}), a BEIR folder, or CSV (query,passage,label). Hard '
        "negatives are mined with Japanese BM25 / dense / hybrid search over the passages; a held-out split is "
        "scored before and after. Writes a sentence-transformers CrossEncoder folder with a model card. "
        "Interrupted runs continue with --resume.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("data", help="JSONL or CSV file, or BEIR folder")
    p.add_argument("-o", "--output", required=True, help="folder to write the trained model to (new or empty)")
    p.add_argument("-m", "--base", help="base model: reranker alias, hub id or folder; embedders get a new head")
    p.add_argument("--resume", action="store_true", default=False, help="continue the run in --output")
    _data_options(p)
    _mining_options(p)
    _model_options(p)
    _training_options(p)
    p.set_defaults(func=_run)
