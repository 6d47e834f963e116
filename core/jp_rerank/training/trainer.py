"""Fine-tune a Japanese cross-encoder reranker on your own (question, passage) data: :func:`train`.

One call reads the data, mines hard negatives with our own first stage, holds out a split of questions, scores
that split with the base model, trains with sentence-transformers' ``CrossEncoderTrainer``, saves a standard
``CrossEncoder`` folder (loads with ``Reranker(path)``, the LangChain / LlamaIndex adapters and ``jp-rerank
eval``), scores the split again and writes a model card (``README.md``) and ``training_result.json``.

While it runs, ``<output>/checkpoints/`` holds the prepared data (mined negatives, held-out candidates, teacher
scores), ``run.json`` and transformers checkpoints; ``train(..., resume=True)`` continues an interrupted run
from its last checkpoint. The folder is removed when the run finishes (``keep_checkpoints=True`` keeps it, so a
run stopped by its time budget can be resumed for more steps).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jp_rerank._version import __version__
from jp_rerank.snapshots import try_lock
from jp_rerank.text import normalize_text
from jp_rerank.training.card import render_model_card
from jp_rerank.training.config import RESUMABLE, TrainConfig, TrainResult
from jp_rerank.training.data import TrainingSet, load_training_data, save_jsonl, split_heldout
from jp_rerank.training.mining import CorpusSearcher, mine_hard_negatives

if TYPE_CHECKING:
    from transformers import TrainerCallback

__all__ = ["EVAL_METRICS", "WORK_DIR", "HeldOut", "train"]

logger = logging.getLogger(__name__)

WORK_DIR = "checkpoints"
"""Sub-folder of the output folder holding the run state while training."""

RESULT_FILE = "training_result.json"
EVAL_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@1", "recall@10")
"""Metrics of the held-out split (plus ``recall@<eval_depth>``, the first stage's ceiling)."""


@dataclass(frozen=True)
class HeldOut:
    """The held-out questions and the first-stage candidates their rerankers are scored on.

    Attributes:
        queries: Question id → text.
        qrels: Question id → {relevant passage id → 1}.
        candidates: Question id → ``[(passage id, first-stage score), ...]``, best first.
        passages: Passage id → text, for every candidate.

    Example:
        >>> cands = {"q1": [("d2", 3.0), ("d1", 2.0)]}
        >>> held = HeldOut({"q1": "質問"}, {"q1": {"d1": 1}}, cands, {"d1": "a", "d2": "b"})
        >>> len(held), held.num_pairs, first_stage_metrics(held, 2)["mrr@10"]
        (1, 2, 0.5)
    """

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    candidates: dict[str, list[tuple[str, float]]]
    passages: dict[str, str]

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def num_pairs(self) -> int:
        """Number of (question, candidate) pairs scored per evaluation."""
        return sum(len(c) for c in self.candidates.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "queries": self.queries,
            "qrels": self.qrels,
            "candidates": {q: [[d, s] for d, s in c] for q, c in self.candidates.items()},
            "passages": self.passages,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HeldOut:
        """Rebuild from :meth:`as_dict` output."""
        return cls(
            queries=dict(values["queries"]),
            qrels={q: dict(r) for q, r in values["qrels"].items()},
            candidates={q: [(str(d), float(s)) for d, s in c] for q, c in values["candidates"].items()},
            passages=dict(values["passages"]),
        )


# ------------------------------------------------------------------------------------------ helpers


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(value, fh, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _metric_names(depth: int) -> tuple[str, ...]:
    extra = f"recall@{depth}"
    return EVAL_METRICS if extra in EVAL_METRICS else (*EVAL_METRICS, extra)


def _metrics(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], depth: int) -> dict[str, float]:
    from jp_rerank.evaluation.metrics import evaluate

    judged = {q: r for q, r in qrels.items() if r}
    return {k: round(float(v), 4) for k, v in evaluate(run, judged, _metric_names(depth)).items()}


def build_heldout(heldout: TrainingSet, searcher: CorpusSearcher, depth: int) -> HeldOut:
    """Search the first-stage candidates of the held-out questions."""
    text_id = {text: did for did, text in zip(searcher.ids, searcher.texts, strict=True)}
    queries = {q.qid: q.query for q in heldout.queries}
    qrels = {q.qid: {text_id[p]: 1 for p in q.positives if p in text_id} for q in heldout.queries}
    logger.info("searching %d first-stage candidates for %d held-out questions", depth, len(queries))
    results = searcher.search(list(queries.values()), depth)
    candidates = dict(zip(queries, results, strict=True))
    wanted = {d for hits in candidates.values() for d, _ in hits}
    passages = {d: text for d, text in zip(searcher.ids, searcher.texts, strict=True) if d in wanted}
    return HeldOut(queries=queries, qrels=qrels, candidates=candidates, passages=passages)


def first_stage_metrics(heldout: HeldOut, depth: int) -> dict[str, float]:
    """Held-out metrics of the first stage's own ranking."""
    run = {q: dict(hits) for q, hits in heldout.candidates.items()}
    return _metrics(run, heldout.qrels, depth)


def score_heldout(
    model: str | os.PathLike[str],
    heldout: HeldOut,
    depth: int,
    *,
    precision: str,
    device: str | None,
    desc: str,
    max_length: int | None = None,
) -> dict[str, float]:
    """Rerank the held-out candidates with ``Reranker(model)`` and return the metrics."""
    import numpy as np
    from tqdm.auto import tqdm

    from jp_rerank.rerank import Reranker

    reranker = Reranker(model, precision=precision, device=device, max_length=max_length)  # type: ignore[arg-type]
    run: dict[str, dict[str, float]] = {}
    qids = list(heldout.queries)
    block = 16
    with tqdm(total=heldout.num_pairs, desc=desc, unit="pair") as bar:
        for start in range(0, len(qids), block):
            chunk = [q for q in qids[start : start + block] if heldout.candidates[q]]
            if not chunk:
                continue
            docs = [[heldout.passages[d] for d, _ in heldout.candidates[q]] for q in chunk]
            scores = reranker.score_many([heldout.queries[q] for q in chunk], docs)
            for q, values in zip(chunk, scores, strict=True):
                values = np.where(np.isfinite(values), values, -1e9)
                ids = [d for d, _ in heldout.candidates[q]]
                order = sorted(range(len(ids)), key=lambda i: -float(values[i]))
                run[q] = {ids[i]: float(values[i]) for i in order}
                bar.update(len(ids))
    del reranker
    gc.collect()
    return _metrics(run, heldout.qrels, depth)


def _resolve_precision(precision: str, device: str) -> bool:
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_bf16_supported())
    if device == "cpu":
        from jp_rerank.rerank.backends import cpu_supports_bf16

        return cpu_supports_bf16()
    return False


def _data_stats(ts: TrainingSet) -> dict[str, Any]:
    return {
        "source": ts.source,
        "format": ts.format,
        "questions": len(ts.queries),
        "pairs": ts.num_pairs,
        "positives": sum(len(q.positives) for q in ts.queries),
        "negatives_given": sum(len(q.negatives) for q in ts.queries),
        "pool": len(ts.corpus),
        "skipped_rows": ts.skipped,
    }


def _norm(text: str, on: bool) -> str:
    return normalize_text(text) if on else text


# ------------------------------------------------------------------------------------------ preparation


def _prepare(data: str | os.PathLike[str] | TrainingSet, cfg: TrainConfig, work: Path) -> dict[str, Any]:
    """Read, mine, split and search; write everything training needs into ``work``."""
    ts = (
        data
        if isinstance(data, TrainingSet)
        else load_training_data(
            data,
            data_format=cfg.data_format,
            split=cfg.split,
            corpus=cfg.corpus,
            with_title=cfg.with_title,
            skip_bad_rows=cfg.skip_bad_rows,
        )
    )
    stats = _data_stats(ts)
    ids = list(ts.corpus)
    needs_search = cfg.num_negatives > 0 or (cfg.eval_queries > 0 and cfg.eval_data is None)
    searcher = (
        CorpusSearcher(ids, [ts.corpus[i] for i in ids], method=cfg.first_stage, bm25=cfg.bm25, embedder=cfg.embedder)
        if needs_search
        else None
    )
    mined, mining = mine_hard_negatives(
        ts,
        searcher=searcher,
        first_stage=cfg.first_stage,
        bm25=cfg.bm25,
        embedder=cfg.embedder,
        num_negatives=cfg.num_negatives,
        random_negatives=cfg.random_negatives,
        depth=cfg.mining_depth,
        relative_margin=cfg.relative_margin,
        max_overlap=cfg.max_overlap,
        seed=cfg.seed,
    )
    if cfg.save_mined:
        logger.info("saved the mined set to %s", save_jsonl(mined, cfg.save_mined))
    heldout: HeldOut | None = None
    if cfg.eval_data:
        train_set = mined
        eval_set = load_training_data(
            cfg.eval_data, split="test", with_title=cfg.with_title, skip_bad_rows=cfg.skip_bad_rows
        )
        eval_ids = list(eval_set.corpus)
        eval_searcher = CorpusSearcher(
            eval_ids,
            [eval_set.corpus[i] for i in eval_ids],
            method=cfg.first_stage,
            bm25=cfg.bm25,
            embedder=cfg.embedder,
        )
        heldout = build_heldout(eval_set, eval_searcher, cfg.eval_depth)
    else:
        train_set, held = split_heldout(mined, cfg.eval_queries, seed=cfg.seed)
        if cfg.eval_queries and not held.queries:
            logger.warning("too few questions (%d) to hold any out: no evaluation", len(mined.queries))
        heldout = build_heldout(held, searcher, cfg.eval_depth) if held.queries and searcher else None
    train_set = train_set.with_queries([q for q in train_set.queries if q.positives])
    if not any(q.negatives for q in train_set.queries):
        raise ValueError(
            "no negatives to train with: set num_negatives / random_negatives > 0 or give negatives in the data"
        )
    if cfg.loss == "listwise" and not any(len(q.positives) + len(q.negatives) > 1 for q in train_set.queries):
        raise ValueError("the listwise loss needs questions with at least two passages")
    save_jsonl(train_set, work / "train.jsonl")
    if heldout is not None:
        _write_json(work / "heldout.json", heldout.as_dict())
    first = first_stage_metrics(heldout, cfg.eval_depth) if heldout is not None and len(heldout) else {}
    if first:
        logger.info("held-out first stage (%s): %s", cfg.first_stage, _fmt(first))
    teacher: list[list[float]] | None = None
    if cfg.loss == "distill":
        assert cfg.teacher is not None
        teacher = _teacher_scores(cfg.teacher, train_set, cfg)
        _write_json(work / "teacher.json", teacher)
    return {
        "train": train_set,
        "heldout": heldout,
        "data": stats,
        "mining": mining.as_dict(),
        "first_stage": first,
        "teacher": teacher,
    }


def _teacher_scores(teacher: str, ts: TrainingSet, cfg: TrainConfig) -> list[list[float]]:
    """Raw logits of the teacher for each question's positives then negatives."""
    from tqdm.auto import tqdm

    from jp_rerank.rerank import Reranker

    reranker = Reranker(teacher, activation="none", device=cfg.device)
    out: list[list[float]] = []
    block = 16
    total = ts.num_pairs
    logger.info("scoring %d training pairs with the teacher %s", total, teacher)
    with tqdm(total=total, desc="teacher scores", unit="pair") as bar:
        for start in range(0, len(ts.queries), block):
            chunk = ts.queries[start : start + block]
            scores = reranker.score_many([q.query for q in chunk], [[*q.positives, *q.negatives] for q in chunk])
            for values in scores:
                out.append([float(v) if math.isfinite(float(v)) else 0.0 for v in values])
                bar.update(len(values))
    del reranker
    gc.collect()
    return out


def _load_prepared(work: Path, run: dict[str, Any]) -> dict[str, Any]:
    train_set = load_training_data(work / "train.jsonl", data_format="jsonl")
    heldout_file = work / "heldout.json"
    teacher_file = work / "teacher.json"
    return {
        "train": train_set,
        "heldout": HeldOut.from_dict(_read_json(heldout_file)) if heldout_file.is_file() else None,
        "data": run.get("data", {}),
        "mining": run.get("mining", {}),
        "first_stage": run.get("first_stage", {}),
        "teacher": _read_json(teacher_file) if teacher_file.is_file() else None,
    }


def _fmt(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


# ------------------------------------------------------------------------------------------ datasets


def _build_dataset(cfg: TrainConfig, ts: TrainingSet, teacher: list[list[float]] | None) -> tuple[Any, dict[str, Any]]:
    from datasets import Dataset

    norm = cfg.normalize_text
    if cfg.loss == "listwise":
        from jp_rerank.training.data import shuffled

        qs, docs, labels = [], [], []
        for q in ts.queries:
            items = [(p, 1.0) for p in q.positives] + [(n, 0.0) for n in q.negatives]
            if len(items) < 2:
                continue
            items = shuffled(items, f"{cfg.seed}:{q.qid}")
            qs.append(_norm(q.query, norm))
            docs.append([_norm(t, norm) for t, _ in items])
            labels.append([y for _, y in items])
        pairs = sum(len(d) for d in docs)
        return Dataset.from_dict({"query": qs, "docs": docs, "labels": labels}), {
            "rows": len(qs),
            "pairs": pairs,
            "positives": sum(int(sum(x)) for x in labels),
        }
    queries, passages, targets = [], [], []
    n_pos = n_neg = 0
    for i, q in enumerate(ts.queries):
        texts = [*q.positives, *q.negatives]
        values = teacher[i] if teacher is not None else [1.0] * len(q.positives) + [0.0] * len(q.negatives)
        if len(values) != len(texts):
            raise ValueError(f"teacher scores do not match question {q.qid!r}; start the run again")
        n_pos += len(q.positives)
        n_neg += len(q.negatives)
        for text, value in zip(texts, values, strict=True):
            queries.append(_norm(q.query, norm))
            passages.append(_norm(text, norm))
            targets.append(float(value))
    dataset = Dataset.from_dict({"query": queries, "passage": passages, "label": targets})
    return dataset, {"rows": len(queries), "pairs": len(queries), "positives": n_pos, "negatives": n_neg}


def _build_loss(cfg: TrainConfig, model: Any, counts: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    import torch
    from sentence_transformers.cross_encoder import losses

    if cfg.loss == "listwise":
        return losses.LambdaLoss(model, mini_batch_size=cfg.batch_size), {"loss": "LambdaLoss (NDCGLoss2++)"}
    if cfg.loss == "distill":
        return losses.MSELoss(model), {"loss": f"MSELoss to the logits of {cfg.teacher}"}
    weight = cfg.pos_weight
    if weight is None:
        weight = max(1.0, counts.get("negatives", 0) / max(1, counts.get("positives", 1)))
    return losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(weight))), {
        "loss": "BinaryCrossEntropyLoss",
        "pos_weight": round(float(weight), 3),
    }


# ------------------------------------------------------------------------------------------ train


def _resolve_config(config: TrainConfig | None, options: Mapping[str, Any], saved: TrainConfig | None) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"unknown training option(s) {', '.join(unknown)}; see jp_rerank.training.TrainConfig")
    if saved is None:
        return dataclasses.replace(config or TrainConfig(), **options)
    changes = dict(options)
    if config is not None:
        changes = {**{k: v for k, v in config.as_dict().items() if v != getattr(TrainConfig(), k)}, **changes}
    for name, value in changes.items():
        old = getattr(saved, name)
        if value != old and name not in RESUMABLE:
            raise ValueError(
                f"cannot change {name} when resuming (the run used {old!r}, now {value!r}); only "
                f"{', '.join(sorted(RESUMABLE))} may change"
            )
    return dataclasses.replace(saved, **changes)


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(work: Path) -> str | None:
    """The newest ``checkpoint-N`` folder in ``work`` that was written to the end, or ``None``.

    transformers writes ``trainer_state.json`` after the weights, optimizer and scheduler: a process killed while
    saving leaves a newer folder without it (or with it cut short), which resuming from would fail on. Such folders
    are passed over.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for n, complete in ((4, True), (8, False)):
        ...         (Path(tmp) / f"checkpoint-{n}").mkdir()
        ...         if complete:
        ...             _ = (Path(tmp) / f"checkpoint-{n}" / "trainer_state.json").write_text("{}")
        ...     Path(last_complete_checkpoint(Path(tmp))).name
        'checkpoint-4'
    """
    steps = {int(f.name.rsplit("-", 1)[-1]): f for f in work.glob("checkpoint-*") if f.name[11:].isdigit()}
    complete = [n for n, f in steps.items() if f.is_dir() and _readable_json(f / "trainer_state.json")]
    if not complete:
        return None
    last = max(complete)
    skipped = [steps[n].name for n in steps if n > last]
    if skipped:
        logger.warning("passing over incomplete checkpoints %s (a save was interrupted)", ", ".join(sorted(skipped)))
    return str(steps[last])


@contextlib.contextmanager
def _run_lock(out: Path) -> Iterator[None]:
    """Refuse a second run writing into ``out`` while one is live (a lock per folder in the temporary folder).

    The lock is taken before the folder is looked at, so a ``resume`` cannot overlap a live run and two new runs
    cannot both find the folder empty. It is an advisory lock: runs on other machines sharing the folder over a
    network file system are not seen.
    """
    key = hashlib.sha256(str(out.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    owner = os.getuid() if hasattr(os, "getuid") else "user"
    with (Path(tempfile.gettempdir()) / f"jp-rerank-train-{owner}-{key}.lock").open("a+") as fh:
        if not try_lock(fh.fileno()):
            raise FileExistsError(f"another training run is writing to {out}; wait for it or choose another folder")
        yield  # closing the file releases the lock


def train(
    data: str | os.PathLike[str] | TrainingSet,
    output_dir: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str] | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    callbacks: Sequence[TrainerCallback] | None = None,
    **options: Any,
) -> TrainResult:
    """Fine-tune a cross-encoder reranker on your data and save it as a standard CrossEncoder folder.

    Args:
        data: JSONL, CSV or BEIR folder (see :mod:`jp_rerank.training.data`), or a :class:`TrainingSet`.
        output_dir: Folder to write (must be new or empty, unless resuming).
        base: Base model: a reranker alias (``"xsmall"``...), hub id or local folder; a sentence-transformers
            embedder or a plain encoder gets a fresh head (and, when mean-pooled, the [CLS]-mean layer).
            Default: :data:`jp_rerank.presets.DEFAULT_RERANKER` (resuming: the run's base).
        config: Settings (:class:`TrainConfig`); ``options`` override single fields.
        resume: Continue the interrupted (or checkpoint-kept) run in ``output_dir`` from its last checkpoint,
            with its prepared data and settings; only run-length settings (``max_steps``, ``epochs``,
            ``time_budget``...) may change.
        callbacks: Extra ``transformers.TrainerCallback`` objects.
        **options: Any :class:`TrainConfig` field, e.g. ``max_steps=500``, ``time_budget=1800``.

    Returns:
        What was done, with held-out metrics of the first stage, the starting model and the trained model.

    Raises:
        TrainingDataError: Malformed training data (names file and line).
        FileExistsError: ``output_dir`` is not empty (or holds an unfinished run and ``resume`` is false), or
            another run is writing to it now.
        FileNotFoundError: Data not found, or nothing to resume.
        ModelLoadError: The base (or teacher) cannot be loaded.
        ValueError / TypeError: Bad settings.

    Example:
        >>> from jp_rerank.training import train
        >>> result = train("faq_pairs.jsonl", "models/my-reranker", base="xsmall", time_budget=1800)  # doctest: +SKIP
        >>> result.metrics_before["ndcg@10"], result.metrics_after["ndcg@10"]  # doctest: +SKIP
        (0.71, 0.83)
    """
    start = time.monotonic()
    out = Path(output_dir)
    with _run_lock(out):
        work = out / WORK_DIR
        run_file = work / "run.json"
        if resume:
            if not run_file.is_file():
                hint = " (a run stopped while preparing its data: run again without resume)" if work.is_dir() else ""
                raise FileNotFoundError(f"nothing to resume in {out}: {run_file} not found{hint}")
            run = _read_json(run_file)
            cfg = _resolve_config(config, options, TrainConfig.from_dict(run["config"]))
            base_name = str(run["base"])
            if base is not None and str(base) != base_name:
                raise ValueError(
                    f"cannot change the base when resuming (the run used {base_name!r}, now {str(base)!r})"
                )
            if not isinstance(data, TrainingSet) and str(data) != run.get("data", {}).get("source"):
                logger.warning("resuming: using the data prepared from %s, not %s", run["data"].get("source"), data)
            prepared = _load_prepared(work, run)
            logger.info("resuming the run in %s", out)
        else:
            if work.is_dir() and not run_file.exists() and [p.name for p in out.iterdir()] == [WORK_DIR]:
                logger.warning("removing %s, left by a run stopped while preparing its data", work)
                shutil.rmtree(work)
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                if run_file.is_file():
                    raise FileExistsError(
                        f"{out} holds an unfinished training run; pass resume=True (--resume) to continue it, or "
                        "choose another folder"
                    )
                raise FileExistsError(f"output folder {out} exists and is not empty; choose a new or empty folder")
            cfg = _resolve_config(config, options, None)
            from jp_rerank.presets import DEFAULT_RERANKER

            base_name = str(base) if base is not None else DEFAULT_RERANKER
            work.mkdir(parents=True, exist_ok=True)
            try:
                prepared = _prepare(data, cfg, work)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                if out.is_dir() and not any(out.iterdir()):
                    out.rmdir()
                raise
            run = {
                "jp_rerank": __version__,
                "status": "prepared",
                "base": base_name,
                "config": cfg.as_dict(),
                "data": prepared["data"],
                "mining": prepared["mining"],
                "first_stage": prepared["first_stage"],
            }
            _write_json(run_file, run)
        try:
            return _train_prepared(cfg, base_name, out, work, run, prepared, resume, callbacks, start)
        except Exception:
            if not resume and run.get("status") == "prepared":
                # failed before the training loop (a base that does not load, an option it does not support): leave
                # nothing behind, so the same command with the mistake fixed runs (resuming cannot change the base)
                shutil.rmtree(work, ignore_errors=True)
                if out.is_dir() and not any(out.iterdir()):
                    out.rmdir()
            raise


def _train_prepared(
    cfg: TrainConfig,
    base_name: str,
    out: Path,
    work: Path,
    run: dict[str, Any],
    prepared: dict[str, Any],
    resume: bool,
    callbacks: Sequence[TrainerCallback] | None,
    start: float,
) -> TrainResult:
    from jp_rerank.extras import is_available, require

    for module in ("accelerate", "datasets"):
        if not is_available(module):
            require(module, "train")  # raises ImportError naming the extra
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from jp_rerank.loading import resolve_device
    from jp_rerank.training import _hf
    from jp_rerank.training.model import load_base

    train_set: TrainingSet = prepared["train"]
    heldout: HeldOut | None = prepared["heldout"]
    device = resolve_device(cfg.device)
    set_seed(cfg.seed)
    norm = cfg.normalize_text
    probe = [(_norm(q.query, norm), _norm(q.positives[0], norm)) for q in train_set.queries[:16]]
    ce, info = load_base(
        base_name,
        max_length=cfg.max_length,
        cls_mean_layer=cfg.cls_mean_layer,
        keep_layers=cfg.keep_layers,
        freeze_embeddings=cfg.freeze_embeddings,
        freeze_layers=cfg.freeze_layers,
        probe_pairs=probe,
        device=device,
    )
    before: dict[str, float] = dict(run.get("before") or {})
    if heldout is not None and len(heldout) and cfg.evaluate_before and not before:
        # A modified base (new head, kept layers, [CLS]-mean layer) is scored as it starts training: saved first.
        initial: str | Path = work / "initial" if info.modified else info.location  # a hub id stays a str
        if info.modified:
            ce.save_pretrained(str(initial))
        before = score_heldout(
            initial,
            heldout,
            cfg.eval_depth,
            precision=cfg.eval_precision,
            device=device,
            desc="held-out (before)",
            max_length=cfg.max_length,
        )
        if info.modified:
            shutil.rmtree(initial, ignore_errors=True)
        logger.info("held-out before training: %s", _fmt(before))
        run["before"] = before
        _write_json(work / "run.json", run)

    dataset, counts = _build_dataset(cfg, train_set, prepared["teacher"])
    loss, loss_info = _build_loss(cfg, ce, counts)
    bf16 = _resolve_precision(cfg.precision, device)
    per_step = cfg.batch_size
    if cfg.loss == "listwise":
        per_step = max(1, cfg.batch_size // max(1, round(counts["pairs"] / max(1, counts["rows"]))))
    plan = _hf.StepPlan(cfg.warmup_ratio)
    budget = _hf.BudgetCallback(cfg.time_budget, plan, cfg.budget_clock)
    pairs_per_row = counts["pairs"] / max(1, counts["rows"])
    log_cb = _hf.LogCallback(plan, budget, pairs_per_step=per_step * cfg.gradient_accumulation_steps * pairs_per_row)
    args = CrossEncoderTrainingArguments(
        output_dir=str(work),
        num_train_epochs=float(cfg.epochs),
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        per_device_train_batch_size=per_step,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        use_cpu=device == "cpu",
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        eval_strategy="no",
        report_to="none",
        disable_tqdm=not cfg.progress,
        dataloader_pin_memory=False,
        batch_sampler=_hf.LengthGroupedBatchSampler if cfg.group_by_length else "batch_sampler",
    )
    trainer = _hf.Trainer(
        model=ce,
        args=args,
        train_dataset=dataset,
        loss=loss,
        callbacks=[budget, log_cb, *(callbacks or [])],
        plan=plan,
    )
    # our LogCallback logs each step's loss: drop transformers' printed log dicts, keep a progress bar
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if cfg.progress:
        trainer.add_callback(_hf.QuietProgressCallback)
    checkpoint = last_complete_checkpoint(work) if resume and work.is_dir() else None
    resumed_from = int(checkpoint.rsplit("-", 1)[-1]) if checkpoint else None
    if resume and checkpoint is None:
        logger.warning("no checkpoint in %s yet: training from the start with the prepared data", work)
    logger.info(
        "training on %d pairs (%d questions), %s, batch %d, lr %g, %s%s%s",
        counts["pairs"],
        len(train_set.queries),
        loss_info["loss"],
        per_step,
        cfg.learning_rate,
        "bf16 autocast" if bf16 else "fp32",
        f", max {cfg.max_steps} steps" if cfg.max_steps else f", {cfg.epochs:g} epochs",
        f", budget {cfg.time_budget:.0f} s ({cfg.budget_clock})" if cfg.time_budget else "",
    )
    run["status"] = "training"
    _write_json(work / "run.json", run)
    train_start = time.monotonic()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except KeyboardInterrupt:
        last = last_complete_checkpoint(work)
        logger.warning(
            "training interrupted at step %d; %s",
            trainer.state.global_step,
            f"continue from {last} with resume=True (--resume)" if last else "no checkpoint was written yet",
        )
        raise
    train_seconds = time.monotonic() - train_start
    step = int(trainer.state.global_step)
    if budget.stopped:
        stopped_by = "time_budget"
    elif cfg.max_steps is not None and step >= cfg.max_steps:
        stopped_by = "max_steps"
    else:
        stopped_by = "epochs"
    logger.info("training stopped by %s at step %d after %.0f s; saving to %s", stopped_by, step, train_seconds, out)
    ce.save_pretrained(str(out))
    losses = tuple((int(entry["step"]), float(entry["loss"])) for entry in trainer.state.log_history if "loss" in entry)
    del trainer
    gc.collect()
    after: dict[str, float] = {}
    if heldout is not None and len(heldout):
        after = score_heldout(
            out,
            heldout,
            cfg.eval_depth,
            precision=cfg.eval_precision,
            device=device,
            desc="held-out (after)",
            max_length=cfg.max_length,
        )
        logger.info("held-out after training: %s", _fmt(after))
    result = TrainResult(
        output_dir=out,
        base=info,
        global_step=step,
        stopped_by=stopped_by,
        resumed_from_step=resumed_from,
        train_queries=len(train_set.queries),
        train_pairs=int(counts["pairs"]),
        eval_queries=len(heldout) if heldout is not None else 0,
        metrics_first_stage=dict(prepared["first_stage"]),
        metrics_before=before,
        metrics_after=after,
        losses=losses,
        train_seconds=round(train_seconds, 1),
        total_seconds=round(time.monotonic() - start, 1),
        config=cfg,
        data={**prepared["data"], **counts, "loss_settings": loss_info, "bf16": bf16, "batch": per_step},
        mining=dict(prepared["mining"]),
    )
    (out / "README.md").write_text(render_model_card(result), encoding="utf-8")
    _write_json(out / RESULT_FILE, result.as_dict())
    if cfg.keep_checkpoints:
        run["status"] = "done"
        _write_json(work / "run.json", run)
    else:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("done: %s (%.0f s in all)", out, result.total_seconds)
    return result
