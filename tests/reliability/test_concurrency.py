"""Concurrency: one shared model serving 32 threads and 32 asyncio tasks gives exactly the sequential results.

Each engine serialises its model calls with a lock (tokenizer and forward pass), so results never depend on
what else runs at the same time, the fast tokenizer never raises "Already borrowed", and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jp_rerank import Embedder, Reranker, RerankResult
from jp_rerank.data import load_demo_corpus, load_demo_queries
from jp_rerank.lexical import BM25Index
from jp_rerank.rerank import scoring

pytestmark = [pytest.mark.timeout(600)]

N = 32


def workload() -> list[tuple[str, list[str]]]:
    """32 different (query, candidates) requests: demo questions over rotating slices of the demo corpus."""
    texts = [d["text"] for d in load_demo_corpus()]
    questions = [str(q["text"]) for q in load_demo_queries()]
    out = []
    for i in range(N):
        start = (i * 5) % len(texts)
        docs = (texts[start:] + texts[:start])[: 8 + i % 9]
        out.append((questions[i % len(questions)], docs))
    return out


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        resident_pages = int(fh.read().split()[1])
    import os

    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def run_threads(fn: Callable[[int], Any], n: int = N) -> list[Any]:
    """Call ``fn(i)`` for ``i < n`` from ``n`` threads released together by a barrier; re-raise any error."""
    barrier = threading.Barrier(n)

    def call(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(call, range(n)))


def assert_same_rankings(got: list[Any], want: list[Any], reranker: Reranker) -> None:
    """The results a call gets alone: concurrent calls share forward passes, whose batches pad differently, so
    scores agree to the plan's rounding noise (float32; bf16 autocast, the default on CPUs with native bf16, more)
    and only documents whose scores are that close may swap places."""
    noise = 1e-5 if reranker.scoring_plan.precision == "fp32" else 2e-3
    for g, w in zip(got, want, strict=True):
        by_index = {r.index: r.score for r in w}
        assert sorted(by_index) == sorted(r.index for r in g)
        np.testing.assert_allclose([r.score for r in g], [by_index[r.index] for r in g], atol=noise)
        for mine, theirs in zip(g, w, strict=True):
            assert mine.index == theirs.index or abs(mine.score - theirs.score) <= noise


@pytest.mark.slow
def test_32_threads_share_one_reranker_and_one_embedder(xlmr_ce_path: Path, dense_path: Path) -> None:
    requests = workload()
    reranker = Reranker(xlmr_ce_path, device="cpu", batch_size=4)  # several batches per call
    embedder = Embedder(dense_path, device="cpu", batch_size=4)
    want_rank = [reranker.rerank(q, docs) for q, docs in requests]
    want_docs = [embedder.embed_documents(docs) for _, docs in requests]
    want_query = [embedder.embed_query(q) for q, _ in requests]

    def mixed(i: int) -> tuple[Any, np.ndarray, np.ndarray]:
        q, docs = requests[i]
        # interleave engine calls so tokenizers and models are used by many threads at once
        return reranker.rerank(q, docs), embedder.embed_documents(docs), embedder.embed_query(q)

    for _ in range(2):
        got = run_threads(mixed)
        assert_same_rankings([g[0] for g in got], want_rank, reranker)
        for (_, d, q), wd, wq in zip(got, want_docs, want_query, strict=True):
            np.testing.assert_array_equal(d, wd)
            np.testing.assert_array_equal(q, wq)


def test_lazy_load_happens_once_under_a_thundering_herd(
    xlmr_ce_path: Path, dense_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = []
    real_load = scoring.PairScorer.load.__func__  # type: ignore[attr-defined]

    def counting_load(cls: type, *args: Any, **kwargs: Any) -> Any:
        created.append(args)
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(scoring.PairScorer, "load", classmethod(counting_load))
    fresh = Reranker(xlmr_ce_path, device="cpu")
    fresh_emb = Embedder(dense_path, device="cpu")
    q, docs = workload()[0]
    got = run_threads(lambda i: (fresh.rerank(q, docs), fresh_emb.embed_query(q)), n=16)
    assert len(created) == 1
    assert len({id(m) for m in [fresh.model, fresh_emb.model]}) == 2
    first = got[0]
    for g in got[1:]:
        assert_same_rankings([g[0]], [first[0]], fresh)
        np.testing.assert_array_equal(g[1], first[1])


@pytest.mark.slow
def test_32_asyncio_tasks_through_the_adapters_share_one_model(xlmr_ce_path: Path, dense_path: Path) -> None:
    lc = pytest.importorskip("langchain_jp_rerank")
    li = pytest.importorskip("llamaindex_jp_rerank")
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    requests = workload()
    reranker = Reranker(xlmr_ce_path, device="cpu", batch_size=4)
    embedder = Embedder(dense_path, device="cpu", batch_size=4)
    lc_rerank = lc.JapaneseReranker(reranker=reranker, top_n=None)
    lc_embed = lc.JapaneseEmbeddings(embedder=embedder)
    li_rerank = li.JapaneseRerank(reranker=reranker, top_n=None)
    li_embed = li.JapaneseEmbedding(embedder=embedder)
    want_rank = [reranker.rerank(q, docs) for q, docs in requests]
    want_docs = [embedder.embed_documents(docs).tolist() for _, docs in requests]

    async def one(i: int) -> tuple[list[RerankResult], list[RerankResult], list[list[float]], list[list[float]]]:
        q, docs = requests[i]
        lc_docs = [Document(page_content=t, metadata={"i": j}) for j, t in enumerate(docs)]
        nodes = [NodeWithScore(node=TextNode(text=t, id_=str(j))) for j, t in enumerate(docs)]
        a, b, c, d = await asyncio.gather(
            lc_rerank.acompress_documents(lc_docs, q),
            li_rerank.apostprocess_nodes(nodes, query_bundle=QueryBundle(q)),
            lc_embed.aembed_documents(docs),
            li_embed.aget_text_embedding_batch(docs),
        )
        lc_got = [RerankResult(x.metadata["i"], x.metadata["relevance_score"]) for x in a]
        li_got = [RerankResult(int(n.node.id_), float(n.score or 0.0)) for n in b]
        return lc_got, li_got, c, d

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(one(i) for i in range(N))))

    got = asyncio.run(main())
    for (lc_got, li_got, lc_vecs, li_vecs), want, vecs in zip(got, want_rank, want_docs, strict=True):
        assert_same_rankings([lc_got, li_got], [want, want], reranker)
        assert lc_vecs == vecs
        assert li_vecs == vecs


@pytest.mark.slow
def test_engine_calls_from_asyncio_to_thread_match_sequential(xlmr_ce_path: Path, dense_path: Path) -> None:
    requests = workload()
    reranker = Reranker(xlmr_ce_path, device="cpu")
    embedder = Embedder(dense_path, device="cpu")
    want_rank = [reranker.rerank(q, docs) for q, docs in requests]
    want_q = np.stack([embedder.embed_query(q) for q, _ in requests])

    async def main() -> tuple[list[Any], list[np.ndarray]]:
        ranks = [asyncio.to_thread(reranker.rerank, q, docs) for q, docs in requests]
        queries = [asyncio.to_thread(embedder.embed_query, q) for q, _ in requests]
        results = await asyncio.gather(*ranks, *queries)
        return list(results[:N]), list(results[N:])

    got_rank, got_q = asyncio.run(main())
    assert_same_rankings(got_rank, want_rank, reranker)
    np.testing.assert_array_equal(np.stack(got_q), want_q)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc to read the resident set size")
def test_memory_stays_bounded_over_repeated_concurrent_calls(xlmr_ce_path: Path, dense_path: Path) -> None:
    requests = workload()
    reranker = Reranker(xlmr_ce_path, device="cpu")
    embedder = Embedder(dense_path, device="cpu")

    def call(i: int) -> int:
        q, docs = requests[i]
        return len(reranker.rerank(q, docs)) + embedder.embed_documents(docs).shape[0]

    run_threads(call)  # warm up: model loading, allocator pools, thread stacks
    run_threads(call)
    baseline = rss_bytes()
    for _ in range(8):
        counts = run_threads(call)
        assert counts == [2 * len(docs) for _, docs in requests]
    growth = rss_bytes() - baseline
    assert growth < 150 * 2**20, f"RSS grew by {growth / 2**20:.0f} MiB over 256 concurrent calls"


def test_bm25_search_from_many_threads_matches_sequential() -> None:
    corpus = load_demo_corpus()
    index = BM25Index().index([d["text"] for d in corpus], ids=[d["id"] for d in corpus])
    questions = [str(q["text"]) for q in load_demo_queries()]
    want = [index.search(q, k=5) for q in questions]
    got = run_threads(lambda i: index.search(questions[i % len(questions)], k=5))
    for i, hits in enumerate(got):
        assert hits == want[i % len(questions)]


def test_a_folder_that_is_not_a_model_fails_the_same_clear_way_in_16_threads(tmp_path: Path) -> None:
    """Issue 12, item 10: each of 16 threads sharing one engine gets ModelLoadError (was a raw ValueError)."""
    from jp_rerank.errors import ModelLoadError

    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("no weights here", encoding="utf-8")
    shared = Reranker(folder, device="cpu")
    barrier = threading.Barrier(16)

    def call(_: int) -> BaseException | None:
        barrier.wait()
        try:
            shared.score("質問", ["文書"])
        except BaseException as exc:
            return exc
        return None

    with ThreadPoolExecutor(16) as pool:
        errors = list(pool.map(call, range(16)))
    assert all(isinstance(e, ModelLoadError) for e in errors), {type(e).__name__ for e in errors}
    assert {str(e) for e in errors} == {str(errors[0])}  # one message, the same for everyone
    assert "is not a model folder" in str(errors[0])
