"""Concurrent async reranking inside one process: the adapters vs the hosts' own cross-encoder rerankers.

An application serving many users awaits many reranks at once (LangChain ``acompress_documents`` / ``ainvoke``,
LlamaIndex ``apostprocess_nodes`` / ``aquery``). For 1, 8 and 32 concurrent callers (asyncio tasks; each takes the
next request when its previous one is answered) a fixed number of requests (``--requests``: a JSQuAD question with
its BM25 top-``--candidates`` passages) is timed from the first call to the last answer. Rows, taking turns within
each concurrency level so load changes hit them alike:

* ``langchain jp-rerank``: :class:`langchain_jp_rerank.JapaneseReranker` (concurrent calls share forward passes);
* ``langchain peer``: ``CrossEncoderReranker(model=HuggingFaceCrossEncoder(...))`` (langchain-classic /
  langchain-community, sentence-transformers ``CrossEncoder.predict``);
* ``llamaindex jp-rerank``: :class:`llamaindex_jp_rerank.JapaneseRerank`;
* ``llamaindex peer``: ``llama_index.core.postprocessor.SentenceTransformerRerank``.

The jp-rerank rows run torch fp32 like the peers (``--plan auto`` measures the default plan instead), so the ratio
is the batching alone. Reported: requests/s, pairs/s, p50 / p99 latency and the ratio to the peer of the same host at
the same concurrency, with the CPU's flags and the load average. Data: JSQuAD (JGLUE, Kurihara et al., 2022),
CC BY-SA 4.0.

Usage:
    python benchmarks/async_rerank.py [--model DIR] [--data DIR] [--callers 1 8 32] [--requests 32]
        [--candidates 20] [--plan fp32|auto]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _paths import JA_CE_MINI, RESULTS, data_dir, offline_model

Call = Callable[[str, list[str]], Awaitable[Any]]


def build_methods(model: Path, top_n: int, plan: str) -> dict[str, Call]:
    """The four rerankers, loaded and warmed up, as ``async call(query, passages)``."""
    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
    from langchain_community.cross_encoders import HuggingFaceCrossEncoder
    from langchain_core.documents import Document
    from llama_index.core.postprocessor import SentenceTransformerRerank
    from llama_index.core.schema import NodeWithScore, TextNode

    from langchain_jp_rerank import JapaneseReranker
    from llamaindex_jp_rerank import JapaneseRerank

    engine = {"device": "cpu"} | ({"backend": "torch", "precision": "fp32"} if plan == "fp32" else {})
    lc_ours = JapaneseReranker(model=str(model), top_n=top_n, model_kwargs=engine)
    lc_peer = CrossEncoderReranker(
        model=HuggingFaceCrossEncoder(model_name=str(model), model_kwargs={"device": "cpu"}), top_n=top_n
    )
    li_ours = JapaneseRerank(str(model), top_n=top_n, cross_encoder_kwargs=engine)
    li_peer = SentenceTransformerRerank(model=str(model), top_n=top_n, device="cpu")

    def docs(passages: list[str]) -> list[Document]:
        return [Document(page_content=p) for p in passages]

    def nodes(passages: list[str]) -> list[NodeWithScore]:
        return [NodeWithScore(node=TextNode(text=p), score=1.0) for p in passages]

    return {
        "langchain jp-rerank": lambda q, ps: lc_ours.acompress_documents(docs(ps), q),
        "langchain peer": lambda q, ps: lc_peer.acompress_documents(docs(ps), q),
        "llamaindex jp-rerank": lambda q, ps: li_ours.apostprocess_nodes(nodes(ps), query_str=q),
        "llamaindex peer": lambda q, ps: li_peer.apostprocess_nodes(nodes(ps), query_str=q),
    }


async def run_cell(call: Call, requests: list[tuple[str, list[str]]], callers: int) -> dict[str, float]:
    """Time ``requests`` served by ``callers`` concurrent tasks (closed loop)."""
    queue = list(reversed(requests))
    latencies: list[float] = []

    async def caller() -> None:
        while queue:
            query, passages = queue.pop()
            started = time.perf_counter()
            await call(query, passages)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    wall = time.perf_counter() - started
    pairs = sum(len(p) for _, p in requests)
    ordered = sorted(latencies)
    return {
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(requests) / wall, 3),
        "pairs_per_s": round(pairs / wall, 1),
        "p50_s": round(statistics.median(ordered), 3),
        "p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="cross-encoder folder (default: the offline ja-ce-mini)")
    parser.add_argument("--data", help="BEIR folder (default: jsquad-valid)")
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--top-n", type=int, default=5)
    parser.add_argument("--plan", choices=["fp32", "auto"], default="fp32")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from jp_rerank.evaluation.bench_pairs import candidate_pairs
    from jp_rerank.evaluation.datasets import load_beir
    from jp_rerank.evaluation.timing import load_average
    from jp_rerank.hardware import machine_info
    from jp_rerank.rerank.plans import cpu_class

    model = Path(args.model) if args.model else offline_model(JA_CE_MINI)
    data = Path(args.data) if args.data else data_dir()
    if model is None or data is None:
        sys.stderr.write("needs --model (or the offline ja-ce-mini) and --data (or jsquad-valid)\n")
        return 2
    pairs = candidate_pairs(load_beir(data), args.requests, args.candidates)
    requests = list(zip(pairs.queries, pairs.docs, strict=True))
    load_start, started = load_average(), time.perf_counter()
    methods = build_methods(model, args.top_n, args.plan)
    for name, call in methods.items():  # load and warm up each, outside the timings
        asyncio.run(call(*requests[0]))
        print(f"{name}: ready", file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    for callers in args.callers:
        order = list(methods)[callers % len(methods) :] + list(methods)[: callers % len(methods)]
        for name in order:
            cell = asyncio.run(run_cell(methods[name], requests, callers))
            rows.append({"method": name, "callers": callers, **cell})
            print(f"{callers:>3} callers  {name:<22} {cell['pairs_per_s']:>7} pairs/s", file=sys.stderr, flush=True)
    for row in rows:
        host = row["method"].split()[0]
        peer = next(r for r in rows if r["method"] == f"{host} peer" and r["callers"] == row["callers"])
        row["x_peer"] = round(row["pairs_per_s"] / peer["pairs_per_s"], 2)
    info = machine_info(include_torch=True)
    report = {
        "model": model.name,
        "cpu": info.cpu_model,
        "cpu_class": cpu_class(),
        "flags": sorted(k for k, v in info.cpu_features.items() if v),
        "torch_threads": info.torch_threads,
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "elapsed_s": round(time.perf_counter() - started, 1),
        "requests": len(requests),
        "candidates": args.candidates,
        "plan": args.plan,
        "rows": rows,
    }
    _write(report, Path(args.out) / "async_rerank")
    return 0


def _write(report: dict[str, Any], stem: Path) -> None:
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    flags = ", ".join(f for f in report["flags"] if f.startswith(("avx", "amx", "fma")))
    lines = [
        "# Concurrent async reranking in one process: jp-rerank adapters vs the hosts' cross-encoder rerankers",
        "",
        f"`python benchmarks/async_rerank.py --plan {report['plan']}` on {report['cpu']} ({flags}; torch threads "
        f"{report['torch_threads']}; load average {report['load_average_start']} at start, "
        f"{report['load_average_end']} at end; {report['elapsed_s']} s). Model `{report['model']}`; "
        f"{report['requests']} requests per cell (a JSQuAD question with its BM25 top-{report['candidates']}); "
        "closed-loop asyncio callers; methods take turns within a concurrency level.",
        "",
        "| method | callers | requests/s | pairs/s | p50 s | p99 s | x peer (same host) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(report["rows"], key=lambda r: (r["method"].split()[0], r["callers"], r["method"])):
        lines.append(
            f"| {r['method']} | {r['callers']} | {r['requests_per_s']} | {r['pairs_per_s']} | {r['p50_s']} | "
            f"{r['p99_s']} | {r['x_peer']:.2f} |"
        )
    lines += ["", "Evaluation data: JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0.", ""]
    stem.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
