"""Scaling out on Ray: embed a corpus, build a search index and batch-rerank run files with actor pools.

Three jobs, each a Ray Data ``map_batches`` over chunks of the input with one model per actor (loaded once,
batched), running unchanged on a local Ray (``ray.init()`` on one machine, the default) and on a cluster
(:class:`RayConfig` ``address``):

* :func:`embed_corpus`: JSONL / Parquet / BEIR corpus (sharded or not) → a folder of Parquet vectors with ids;
* :func:`build_index`: corpus → the index folder of ``jp-rerank index`` (IVF-PQ trained on a sample, encoded on
  the workers, merged on the driver; plus the BM25 side for hybrid search), loadable by ``jp-rerank search``;
* :func:`rerank_jsonl`: a ``jp-rerank rerank`` input file (queries x candidates) → ranked JSONL.

Results equal the single-process commands on the same input. A worker that dies is restarted and its work item
retried, and every output is checked to hold every input exactly once; a job that fails leaves the previous
output in place. Install with ``pip install "jp-rerank[ray]"``; importing this package does not import ray.

Example:
    >>> from jp_rerank.distributed import RayConfig, build_index
    >>> report = build_index(  # doctest: +SKIP
    ...     ["corpus/*.jsonl"], "index", embedder="static-ja", config=RayConfig(address="auto", workers=16)
    ... )
"""

from __future__ import annotations

from jp_rerank.distributed.build_index import BuildReport, build_index
from jp_rerank.distributed.cluster import RayConfig, ray_session
from jp_rerank.distributed.corpus import DEFAULT_CHUNK_BYTES, CorpusChunk, CorpusFormatError, iter_corpus, plan_corpus
from jp_rerank.distributed.embed import EmbedReport, embed_corpus, iter_embeddings, load_embeddings
from jp_rerank.distributed.rerank import RerankReport, rerank_jsonl

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "BuildReport",
    "CorpusChunk",
    "CorpusFormatError",
    "EmbedReport",
    "RayConfig",
    "RerankReport",
    "build_index",
    "embed_corpus",
    "iter_corpus",
    "iter_embeddings",
    "load_embeddings",
    "plan_corpus",
    "ray_session",
    "rerank_jsonl",
]
