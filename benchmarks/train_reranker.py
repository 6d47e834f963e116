"""Fine-tune a Japanese reranker from mE5-small on JaQuAD within a CPU budget, then rerank JSQuAD.

`jp_rerank.training.train` starts from the real offline mE5-small weights (4-bit dequantized; a
sentence-transformers embedder with mean pooling, so it gets a fresh head and the [CLS]-gets-the-mean layer),
keeps its first ``--keep-layers`` layers (the shape of ja-ce-mini), mines BM25 hard negatives over the JaQuAD
train corpus and trains under a wall-clock ``--budget``. The trained model, ja-ce-mini (the CPU-trained offline
stand-in built the same way in 40 minutes) then rerank the BM25 top-100 of a seeded sample of JSQuAD questions
over the whole JSQuAD corpus; BM25 alone and dense mE5-small alone are measured on the same questions (and on all
of them). Results: a Markdown table and JSON in ``benchmarks/results/train_reranker.*``.

Data: JaQuAD (So et al., 2022), CC BY-SA 3.0 (training); JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0
(evaluation). JaQuAD train is never evaluated on.

Usage:
    python benchmarks/train_reranker.py [--data ../shared/data] [--models ~/.cache/jp-rerank-offline]
        [--budget 80m] [--budget-clock cpu] [--questions 100] [--out /tmp/jp-rerank-bench/ja-ce-trained] [--pilot]

The default budget, 80 minutes of this process's CPU time, is 40 minutes of 2 saturated cores: ja-ce-mini's.
``--pilot`` runs a few-minute version (small budget, few questions) to check the set-up. The JSQuAD part
(dense mE5-small over the corpus, two rerankers over ``--questions`` x ``--first-k`` pairs) takes about
``questions x first-k x 2 / (pairs per second)`` more; ``--skip-train`` re-evaluates a trained ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _paths import E5_SMALL, JA_CE_MINI, RESULTS

from jp_rerank import BM25Index, Embedder, Reranker
from jp_rerank.commands.train import parse_duration
from jp_rerank.evaluation.metrics import evaluate
from jp_rerank.fusion import RerankFusion
from jp_rerank.training import load_training_data, train

ATTRIBUTION = (
    "Training data: JaQuAD (So et al., 2022), CC BY-SA 3.0. Evaluation data: JSQuAD (JGLUE, Kurihara et al., "
    "2022), CC BY-SA 4.0."
)
METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@10")
RENDERED_SETTINGS = (
    "budget",
    "budget_clock",
    "questions",
    "heldout",
    "first_k",
    "bm25",
    "negatives",
    "random_negatives",
    "loss",
    "batch_size",
    "lr",
    "max_length",
    "eval_max_length",
)
"""The settings :func:`write` reads, taken from the JSON by ``--render``."""
TRAINED, MINI = "this run: jp-rerank train", "ja-ce-mini"
logger = logging.getLogger("train_reranker")


class LoadSampler:
    """Sample the 1-minute load average every ``every`` seconds in a background thread."""

    def __init__(self, every: float = 30.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every)

    def summary(self) -> dict[str, float]:
        """Stop sampling; mean and max of the samples."""
        self._stop.set()
        s = self.samples or [os.getloadavg()[0]]
        return {"mean": round(sum(s) / len(s), 2), "max": round(max(s), 2), "samples": len(s)}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine() -> dict[str, Any]:
    model = "unknown"
    flags: set[str] = set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    import torch

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "flags": [f for f in wanted if f in flags],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def load_jsquad(folder: Path) -> tuple[list[str], list[str], dict[str, str], dict[str, dict[str, int]]]:
    docs = [json.loads(line) for line in (folder / "corpus.jsonl").open(encoding="utf-8")]
    ids = [str(d["_id"]) for d in docs]
    texts = [f"{d.get('title', '')} {d['text']}".strip() for d in docs]
    queries = {str(q["_id"]): q["text"] for q in map(json.loads, (folder / "queries.jsonl").open(encoding="utf-8"))}
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / "test.tsv").open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            cols = line.rstrip("\n").split("\t")
            if i == 0 and cols[0] == "query-id":
                continue
            if int(float(cols[2])) > 0:
                qrels.setdefault(cols[0], {})[cols[1]] = int(float(cols[2]))
    queries = {q: t for q, t in queries.items() if q in qrels}
    return ids, texts, queries, qrels


def metrics(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], extra: tuple[str, ...] = ()) -> dict:
    judged = {q: qrels[q] for q in run}
    return {k: round(v, 4) for k, v in evaluate(run, judged, (*METRICS, *extra)).items()}


def rerank_run(
    model: Path, queries: dict[str, str], cands: dict[str, list[str]], texts: dict[str, str], max_length: int
) -> tuple[dict[str, dict[str, float]], float, str]:
    reranker = Reranker(model, max_length=max_length)
    qids = list(queries)
    reranker.score_many([queries[qids[0]]], [[texts[d] for d in cands[qids[0]][:4]]])  # warm-up (load, first call)
    scores: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    block = 8
    for i in range(0, len(qids), block):
        chunk = qids[i : i + block]
        out = reranker.score_many([queries[q] for q in chunk], [[texts[d] for d in cands[q]] for q in chunk])
        for q, values in zip(chunk, out, strict=True):
            scores[q] = {d: float(v) for d, v in zip(cands[q], values, strict=True)}
        done = min(i + block, len(qids))
        if done % 40 == 0 or done == len(qids):
            logger.info("%s: %d/%d questions reranked", model.name, done, len(qids))
    seconds = time.perf_counter() - start
    pairs = sum(len(c) for c in cands.values())
    return scores, pairs / seconds, reranker.scoring_plan.label


def sorted_run(
    scores: dict[str, dict[str, float]],
    order: dict[str, list[str]],
    depth: int,
    first_stage: dict[str, dict[str, float]] | None = None,
    fusion: str = "none",
) -> dict:
    """Rerank only the first-stage top ``depth``; the rest keep their first-stage order below them.

    With ``fusion`` (and ``first_stage`` scores) the top ``depth`` is ordered by the engine's
    :class:`~jp_rerank.fusion.RerankFusion` of both scores, as the adapters' ``rerank_fusion`` does.
    """
    run = {}
    combine = RerankFusion.of(fusion)
    for q, ranked in order.items():
        head = ranked[:depth]
        final = [scores[q][d] for d in head]
        if combine.active and first_stage is not None:
            final = combine.fuse(final, [first_stage[q][d] for d in head])
        by_doc = dict(zip(head, final, strict=True))
        top = sorted(head, key=lambda d: -by_doc[d])
        rest = ranked[depth:]
        run[q] = {d: float(len(ranked) - i) for i, d in enumerate(top + rest)}
    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="folder holding jaquad-train and jsquad-valid")
    p.add_argument("--models", type=Path, default=None, help="folder of the offline models")
    p.add_argument("--out", type=Path, default=Path("/tmp/jp-rerank-bench/ja-ce-trained"))
    p.add_argument("--budget", type=parse_duration, default=parse_duration("80m"), help="training budget")
    p.add_argument(
        "--budget-clock",
        choices=["wall", "cpu"],
        default="cpu",
        help="cpu (default): the budget counts the training process's CPU time, so other jobs on a shared machine "
        "do not eat it; 80 CPU-minutes = 40 minutes of 2 saturated cores (ja-ce-mini's budget)",
    )
    p.add_argument("--questions", type=int, default=100, help="JSQuAD questions reranked (seeded sample)")
    p.add_argument("--heldout", type=int, default=50, help="held-out JaQuAD questions scored after training")
    p.add_argument("--first-k", type=int, default=100)
    p.add_argument("--bm25", default="char1-2")
    p.add_argument("--keep-layers", type=int, default=6)
    p.add_argument("--freeze-layers", type=int, default=2)
    p.add_argument("--max-length", type=int, default=192, help="training tokens per pair")
    p.add_argument("--eval-max-length", type=int, default=256, help="reranking tokens per pair")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--negatives", type=int, default=3)
    p.add_argument("--random-negatives", type=int, default=1)
    p.add_argument("--loss", default="bce")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--train-limit", type=int, default=None, help="use only this many training questions")
    p.add_argument("--skip-train", action="store_true", help="evaluate an existing --out folder")
    p.add_argument("--resume", action="store_true", help="continue a stopped run in --out from its last checkpoint")
    p.add_argument("--no-dense", action="store_true", help="skip the dense row (embeds the corpus: minutes)")
    p.add_argument("--dense-all", action="store_true", help="dense over all questions too (more minutes)")
    p.add_argument("--pilot", action="store_true", help="a few-minute check of the whole script")
    p.add_argument("--results", type=Path, default=RESULTS / "train_reranker")
    p.add_argument("--render", action="store_true", help="rewrite the Markdown from the JSON of --results (no run)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.render:
        report = json.loads(args.results.with_suffix(".json").read_text(encoding="utf-8"))
        for key in RENDERED_SETTINGS:
            setattr(args, key, report["settings"][key])
        write(report, args)
        return 0
    if args.pilot:
        args.budget, args.questions, args.train_limit, args.heldout = 200.0, 8, 1500, 10
        args.results = Path("/tmp/jp-rerank-bench/pilot")
        args.out = Path("/tmp/jp-rerank-bench/pilot-model")
    data = args.data or Path(os.environ.get("JP_RERANK_DATA") or Path(__file__).resolve().parents[2] / "shared/data")
    models = args.models or Path(os.environ.get("JP_RERANK_OFFLINE_MODELS") or Path.home() / ".cache/jp-rerank-offline")
    jaquad, jsquad = data / "jaquad-train", data / "jsquad-valid"
    e5, mini = models / E5_SMALL, models / JA_CE_MINI
    for needed in (jaquad, jsquad, e5, mini):
        if not needed.exists():
            sys.stderr.write(f"missing {needed} (see ../shared/README.md and ../shared/models/README.md)\n")
            return 2
    info = machine()
    load = LoadSampler()
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report: dict[str, Any] = {"machine": info, "settings": settings | {"data": str(data), "models": str(models)}}
    report["load_start"] = os.getloadavg()
    t0, c0 = time.time(), cpu_seconds()

    # ---------------------------------------------------------------- training
    if not args.skip_train:
        if args.out.exists() and not args.resume:
            shutil.rmtree(args.out)
        source: Any = jaquad
        if args.train_limit:
            full = load_training_data(jaquad, split="train")
            rng = random.Random(args.seed)
            keep = sorted(rng.sample(range(len(full.queries)), args.train_limit))
            source = full.with_queries([full.queries[i] for i in keep])
        result = train(
            source,
            args.out,
            resume=args.resume and args.out.exists(),
            base=e5,
            split="train",
            keep_layers=args.keep_layers,
            freeze_layers=args.freeze_layers,
            max_length=args.max_length,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            num_negatives=args.negatives,
            random_negatives=args.random_negatives,
            bm25=args.bm25,
            loss=args.loss,
            time_budget=args.budget,
            budget_clock=args.budget_clock,
            eval_queries=args.heldout,
            eval_depth=20,
            eval_precision="auto",
            evaluate_before=True,
            seed=args.seed,
            save_steps=100,
            logging_steps=20,
            progress=False,
        )
        report["training"] = {
            "steps": result.global_step,
            "stopped_by": result.stopped_by,
            "train_seconds": result.train_seconds,
            "total_seconds": result.total_seconds,
            "train_questions": result.train_queries,
            "train_pairs_available": result.train_pairs,
            "pairs_seen": result.global_step * args.batch_size,
            "heldout_jaquad": result.metrics_after,
            "heldout_before": result.metrics_before,
            "precision": "bf16 autocast" if result.data.get("bf16") else "fp32",
            "losses": [list(x) for x in result.losses],
            "heldout_bm25": result.metrics_first_stage,
            "base": result.base.as_dict(),
            "loss_first_last": [result.losses[0][1], result.losses[-1][1]] if result.losses else [],
            "mining": result.mining,
        }
        report["training_cpu_seconds"] = round(cpu_seconds() - c0, 1)
        report["training_wall_seconds"] = round(time.time() - t0, 1)
        report["load_training"] = load.summary()
        load = LoadSampler()
        saved = {k: report[k] for k in ("training", "training_cpu_seconds", "training_wall_seconds", "load_training")}
        (args.out / "bench_training.json").write_text(json.dumps(saved, ensure_ascii=False, indent=1), encoding="utf-8")
    elif (args.out / "bench_training.json").is_file():
        report.update(json.loads((args.out / "bench_training.json").read_text(encoding="utf-8")))

    # ---------------------------------------------------------------- evaluation on JSQuAD
    ids, texts, queries, qrels = load_jsquad(jsquad)
    by_id = dict(zip(ids, texts, strict=True))
    index = BM25Index(args.bm25).index(texts, ids=ids)
    all_q = list(queries)
    hits = index.search_many([queries[q] for q in all_q], args.first_k)
    bm25_order = {q: [h.id for h in hs] for q, hs in zip(all_q, hits, strict=True)}
    bm25_run = {q: {h.id: float(h.score) for h in hs} for q, hs in zip(all_q, hits, strict=True)}
    rng = random.Random(args.seed)
    sample = sorted(rng.sample(all_q, min(args.questions, len(all_q))))
    rows: list[dict[str, Any]] = []
    extra = (f"recall@{args.first_k}",)
    rows.append({"name": f"BM25 {args.bm25} (all {len(all_q)} questions)", **metrics(bm25_run, qrels, extra)})
    rows.append({"name": f"BM25 {args.bm25}", **metrics({q: bm25_run[q] for q in sample}, qrels, extra)})
    if not args.no_dense:
        emb = Embedder(e5)
        start = time.perf_counter()
        import numpy as np

        dense_q = all_q if args.dense_all else sample
        doc_vecs = emb.embed_documents(texts)
        qv = emb.embed_queries([queries[q] for q in dense_q])
        sims = qv @ doc_vecs.T
        dense_run = {}
        for q, row in zip(dense_q, sims, strict=True):
            top = np.argsort(-row)[: args.first_k]
            dense_run[q] = {ids[j]: float(row[j]) for j in top}
        report["dense_seconds"] = round(time.perf_counter() - start, 1)
        if args.dense_all:
            rows.append(
                {"name": f"dense mE5-small (4-bit dequantized) (all {len(all_q)})", **metrics(dense_run, qrels, extra)}
            )
        rows.append(
            {"name": "dense mE5-small (4-bit dequantized)", **metrics({q: dense_run[q] for q in sample}, qrels, extra)}
        )
        del emb
    cands = {q: bm25_order[q] for q in sample}
    sample_q = {q: queries[q] for q in sample}
    for label, folder in (
        ("ja-ce-mini (CPU-trained offline stand-in, 40 min)", mini),
        ("this run: jp-rerank train", args.out),
    ):
        scores, pps, plan = rerank_run(folder, sample_q, cands, by_id, args.eval_max_length)
        for depth in (20, args.first_k):
            for fusion in ("none", "minmax") if folder == args.out else ("none",):
                run = sorted_run(scores, cands, depth, bm25_run, fusion)
                suffix = "" if fusion == "none" else f', rerank_fusion="{fusion}" (weight 0.5)'
                rows.append(
                    {
                        "name": f"{label}, rerank BM25 top-{depth}{suffix}",
                        **metrics(run, qrels, extra),
                        "pairs_per_s": round(pps, 1),
                        "plan": plan,
                    }
                )
    report["rows"] = rows
    report["questions"] = len(sample)
    report["load_eval"] = load.summary()
    report["total_wall_seconds"] = round(time.time() - t0, 1)
    report["total_cpu_seconds"] = round(cpu_seconds() - c0, 1)
    write(report, args)
    return 0


def verdict(rows: list[dict[str, Any]], bm25_name: str) -> list[str]:
    """One sentence per candidate depth: the fine-tuned model against ja-ce-mini and against BM25 alone."""
    ndcg = {row["name"]: row["ndcg@10"] for row in rows}
    sentences = []
    for k in (20, 100):
        ours = ndcg.get(f"{TRAINED}, rerank BM25 top-{k}")
        mini = next((v for n, v in ndcg.items() if n.startswith(MINI) and n.endswith(f"top-{k}")), None)
        fused = next((v for n, v in ndcg.items() if n.startswith(f"{TRAINED}, rerank BM25 top-{k}, ")), None)
        bm25 = ndcg.get(bm25_name)
        if ours is None or mini is None or bm25 is None:
            continue
        against_mini = (
            f"beats ja-ce-mini by {ours - mini:.4f}" if ours > mini else f"trails ja-ce-mini by {mini - ours:.4f}"
        )
        against_bm25 = "beats" if ours > bm25 else "does not beat"
        with_fusion = (
            "" if fused is None else f" ({'beats' if fused > bm25 else 'does not beat'} it with fusion: {fused:.4f})"
        )
        sentences.append(
            f"- **BM25 top-{k}: the fine-tuned model {against_mini} nDCG@10** ({ours:.4f} vs {mini:.4f}); it "
            f"{against_bm25} {bm25_name} alone ({bm25:.4f}) without fusion{with_fusion}."
        )
    return sentences


def write(report: dict[str, Any], args: argparse.Namespace) -> None:
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    m = report["machine"]
    tr = report.get("training", {})
    lines = [
        "# Fine-tuning a Japanese reranker with `jp-rerank train` (CPU budget)",
        "",
        f"`python benchmarks/train_reranker.py --budget {args.budget:.0f}s --budget-clock {args.budget_clock} "
        f"--questions {args.questions} --loss {args.loss}` "
        f"on {m['cpu']} ({m['cores']} cores, flags: {', '.join(m['flags'])}; torch {m['torch']}, "
        f"{m['torch_threads']} threads). 1-min load average during "
        f"training mean {report.get('load_training', {}).get('mean', '?')} (max "
        f"{report.get('load_training', {}).get('max', '?')}), during evaluation mean "
        f"{report['load_eval']['mean']} (2 cores = load 2 when saturated by one job).",
        "",
    ]
    if tr:
        base = tr["base"]
        lines += [
            "## Training",
            "",
            f"- base: mE5-small (4-bit dequantized), a sentence-transformers embedder with {base['pooling']} pooling: "
            f"first {base['kept_layers']} of {base['base_layers']} layers kept, new head, [CLS]-mean layer "
            f"{'added' if base['cls_mean_layer'] else 'not added'} (measured [CLS] spread ratio "
            f"{base['cls_spread_ratio']:.3f}), frozen: {', '.join(base['frozen'])}; "
            f"{base['trainable_parameters'] / 1e6:.1f}M of {base['total_parameters'] / 1e6:.1f}M parameters trained",
            f"- data: JaQuAD train (BEIR), {tr['train_questions']} training questions; per question 1 positive, "
            f"{args.negatives} BM25 ({args.bm25}) hard negatives (margin 0.05, near-duplicates dropped) + "
            f"{args.random_negatives} random; {tr['train_pairs_available']} pairs available",
            f"- {args.loss} loss, batch {args.batch_size} (length-grouped, label-stratified), lr {args.lr:g} "
            f"(linear warm-up 0.1, linear decay shortened to the budget), max_length {args.max_length}, "
            f"{tr.get('precision', '?')}",
            f"- **budget {args.budget / 60:.0f} min of "
            f"{'process CPU time' if args.budget_clock == 'cpu' else 'wall clock'}**: {tr['steps']} steps "
            f"({tr['pairs_seen']} pairs seen) in {tr['train_seconds']:.0f} s, stopped by "
            f"{tr['stopped_by'].replace('_', ' ')}; whole `train()` call {tr['total_seconds']:.0f} s (reading, "
            f"mining {tr['mining'].get('hard_negatives', 0)} hard negatives, held-out scoring, saving); process CPU "
            f"time {report.get('training_cpu_seconds', '?')} s",
            f"- loss {tr['loss_first_last'][0]:.3f} → {tr['loss_first_last'][-1]:.3f}; held-out JaQuAD "
            f"({args.heldout} questions, BM25 top-20): nDCG@10 before training "
            f"{tr.get('heldout_before', {}).get('ndcg@10', float('nan')):.4f}, after "
            f"{tr['heldout_jaquad'].get('ndcg@10', float('nan')):.4f}, BM25 alone "
            f"{tr['heldout_bm25'].get('ndcg@10', float('nan')):.4f}",
            "",
        ]
    names = [*METRICS, f"recall@{args.first_k}"]
    lines += [
        f"## JSQuAD valid: {report['questions']} seeded questions, whole corpus (1,145 passages, title + text)",
        "",
        "| configuration | " + " | ".join(names) + " | pairs/s |",
        "| --- |" + " ---: |" * (len(names) + 1),
    ]
    for row in report["rows"]:
        cells = " | ".join(f"{row[n]:.4f}" for n in names)
        lines.append(f"| {row['name']} | {cells} | {row.get('pairs_per_s', '')} |")
    lines += ["", *verdict(report["rows"], f"BM25 {args.bm25}")]
    lines += [
        "",
        f"Rerankers score the BM25 top-{args.first_k} once (max_length {args.eval_max_length}, the engine's default "
        f"plan on this CPU: {', '.join(sorted({r['plan'] for r in report['rows'] if 'plan' in r}))}); the top-20 "
        "rows rerank only the first 20 of those candidates with the same scores. "
        "R@100 of rerank rows is the BM25 candidates' recall.",
        "",
        ATTRIBUTION,
        "",
    ]
    args.results.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    logger.info("wrote %s", args.results.with_suffix(".md"))


if __name__ == "__main__":
    raise SystemExit(main())
