"""Speed side by side: our reranker and embedder against the ways people usually run the same models.

One run, the same model and the same Japanese (question, passage) pairs for every method:

* ``tutorial``: the plain transformers loop of popular tutorials (all pairs of a question tokenised and padded
  together, one forward pass);
* ``st-predict``: sentence-transformers ``CrossEncoder.predict`` with its defaults;
* ``langchain``: LangChain's ``CrossEncoderReranker`` over ``HuggingFaceCrossEncoder`` (xsmall/small only);
* ``llamaindex``: LlamaIndex's ``SentenceTransformerRerank`` (xsmall/small only);
* ours: :class:`jp_rerank.Reranker` with its defaults and with each backend/precision we offer.

The timing rules (rotation, medians, same-run ratios, memory) are :mod:`jp_rerank.evaluation.timing`'s; the run is
:func:`jp_rerank.evaluation.bench.run_bench` with the peers above added. Real offline models are used when built
(see ``benchmarks/_paths.py``): the real XLM-R tokenizer for the same-shape XLM-R models, the real mE5-small
embedder, and ``ja-ce-mini`` (a real trained Japanese cross-encoder) for the ranking-agreement table.

Data: JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0.

Usage:
    python benchmarks/bench.py                                  # xsmall + small, peers, embeddings -> results/bench.*
    python benchmarks/bench.py --quick                          # smoke run
    python benchmarks/bench.py --shapes base,large --questions 1 --no-peers --no-embed --stem bench-base-large
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _paths import E5_SMALL, JA_CE_MINI, RESULTS, data_dir, offline_model

from jp_rerank.evaluation.bench import run_bench
from jp_rerank.evaluation.bench_models import cached_preset
from jp_rerank.evaluation.bench_report import write_report
from jp_rerank.evaluation.timing import MethodResult, Scorer
from jp_rerank.testing import build_dense_embedder, build_static_embedder

PEERS_ON = ("xsmall", "small")  # peers load extra model copies: only on the shapes the speed goals are about


def tutorial(path: str) -> Scorer:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    def score(query: str, docs: list[str]) -> np.ndarray:
        enc = tokenizer([query] * len(docs), docs, padding=True, truncation=True, max_length=512, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits
        return torch.sigmoid(logits[:, -1]).numpy()

    return score


def langchain(path: str) -> Scorer:
    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
    from langchain_community.cross_encoders import HuggingFaceCrossEncoder
    from langchain_core.documents import Document

    compressor = CrossEncoderReranker(
        model=HuggingFaceCrossEncoder(model_name=path, model_kwargs={"device": "cpu"}), top_n=10
    )
    return lambda query, docs: compressor.compress_documents([Document(page_content=d) for d in docs], query)


def llamaindex(path: str) -> Scorer:
    from llama_index.core.postprocessor import SentenceTransformerRerank
    from llama_index.core.schema import NodeWithScore, TextNode

    post = SentenceTransformerRerank(model=path, top_n=10, device="cpu")
    return lambda query, docs: post.postprocess_nodes(
        [NodeWithScore(node=TextNode(text=d)) for d in docs], query_str=query
    )


def peer_methods(with_peers: bool) -> Callable[[str, str], Sequence[tuple[MethodResult, Callable[[], Any]]]]:
    def extra(shape: str, path: str) -> Sequence[tuple[MethodResult, Callable[[], Any]]]:
        methods: list[tuple[MethodResult, Callable[[], Any]]] = [
            (
                MethodResult("tutorial", "baseline", "transformers: pad all pairs together, one forward"),
                lambda: tutorial(path),
            )
        ]
        if with_peers and shape in PEERS_ON:
            methods += [
                (
                    MethodResult("langchain", "peer", "CrossEncoderReranker + HuggingFaceCrossEncoder"),
                    lambda: langchain(path),
                ),
                (MethodResult("llamaindex", "peer", "SentenceTransformerRerank"), lambda: llamaindex(path)),
            ]
        return methods

    return extra


def embed_models(models_dir: Path) -> list[tuple[str, str, str]]:
    """(kind, path, note) of the StaticEmbedding model and the mE5-small transformer."""
    out = []
    static = cached_preset("static-ja")
    if static is not None:
        out.append(("static", static, "real preset static-ja (from the local Hugging Face cache)"))
    else:
        folder = models_dir / "static-1024"
        if not (folder / "modules.json").is_file():
            build_static_embedder(folder, dim=1024)
        out.append(("static", str(folder), "same-shape StaticEmbedding (1024 dims, random weights, demo tokenizer)"))
    e5 = offline_model(E5_SMALL)
    if e5 is not None:
        out.append(("e5-small", str(e5), "real mE5-small weights (4-bit dequantized, offline)"))
    else:
        folder = models_dir / "e5-small"
        if not (folder / "modules.json").is_file():
            build_dense_embedder(folder, shape="e5-small")
        out.append(("e5-small", str(folder), "same-shape random-weight model of multilingual-e5-small's shape"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=data_dir("jsquad-valid"), help="BEIR folder (default: jsquad-valid)"
    )
    parser.add_argument("--shapes", default="xsmall,small")
    parser.add_argument("--questions", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-peers", action="store_true", help="skip LangChain and LlamaIndex")
    parser.add_argument("--no-variants", action="store_true")
    parser.add_argument("--no-agreement", action="store_true")
    parser.add_argument("--no-embed", action="store_true")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".cache" / "jp-rerank" / "bench-models")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--stem", default="bench")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write results/<stem>.*")
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error("no data: pass --data or set JP_RERANK_DATA (a BEIR folder such as jsquad-valid)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    e5, ce = offline_model(E5_SMALL), offline_model(JA_CE_MINI)
    trained = (
        (str(ce), "ja-ce-mini (CPU-trained offline stand-in, a real trained Japanese cross-encoder)") if ce else None
    )
    report = run_bench(
        data=args.data,
        shapes=[s.strip() for s in args.shapes.split(",") if s.strip()],
        questions=args.questions,
        candidates=args.candidates,
        repeats=args.repeats,
        quick=args.quick,
        variants=not args.no_variants,
        with_agreement=not args.no_agreement,
        agreement_model=trained,
        embed_models=[] if args.no_embed else embed_models(args.models_dir),
        models_dir=args.models_dir,
        tokenizer_json=e5 / "tokenizer.json" if e5 else None,
        extra_methods=peer_methods(not args.no_peers),
        threads=args.threads,
    )
    sys.stdout.write(report.to_markdown())
    if not args.no_write:
        json_path, md_path = write_report(report, RESULTS, args.stem)
        sys.stdout.write(f"\nwrote {json_path} and {md_path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
