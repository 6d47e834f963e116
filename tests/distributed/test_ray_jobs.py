"""The Ray jobs on a real local Ray (2 CPUs): equal to the single-process paths, a killed worker, failed jobs.

One Ray for the whole folder (``local_ray`` in conftest). Models are the session's tiny ones (StaticEmbedding:
vectors are bit-identical whatever the batching and thread count, so the indexes compare byte for byte).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jp_rerank import Embedder
from jp_rerank.cli import main
from jp_rerank.data import load_demo_corpus, load_demo_queries
from jp_rerank.errors import ModelLoadError

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("faiss")

from jp_rerank.checks import storable_metadata  # noqa: E402
from jp_rerank.distributed import RayConfig, build_index, embed_corpus, load_embeddings, rerank_jsonl  # noqa: E402
from jp_rerank.pipeline.folder import load_search_index, write_search_index  # noqa: E402
from jp_rerank.records import iter_records  # noqa: E402
from jp_rerank.snapshots import read_snapshot  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.network, pytest.mark.enable_socket, pytest.mark.usefixtures("local_ray")]

# Workers unpickle the factories below; this module is not importable there, so ship it by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

CONFIG = RayConfig(workers=2, max_retries=3, progress=False)
QUESTIONS = ["富士山の高さは？", "日本の首都はどこですか", "桜の季節"]


# ----------------------------------------------------------------------------------------- fault injection


class _KillOnce:
    """Wraps an engine; the first process to make its ``after``-th call kills itself (SIGKILL), once per marker."""

    def __init__(self, engine: Any, marker: str, after: int) -> None:
        self._engine, self._marker, self._after, self._calls = engine, marker, after, 0
        self.model_id = getattr(engine, "model_id", "")

    def _maybe_die(self) -> None:
        self._calls += 1
        if self._calls == self._after and not os.path.exists(self._marker):
            Path(self._marker).write_text(str(os.getpid()), encoding="utf-8")
            os.kill(os.getpid(), signal.SIGKILL)  # the actor process dies in the middle of a work item

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self._maybe_die()
        return self._engine.embed_documents(texts)

    def rerank(self, query: str, docs: list[str], **kwargs: Any) -> Any:
        self._maybe_die()
        return self._engine.rerank(query, docs, **kwargs)


class KillOnceEmbedder:
    def __init__(self, model: Path, marker: Path, after: int = 2) -> None:
        self.model, self.marker, self.after = str(model), str(marker), after

    def __call__(self) -> _KillOnce:
        return _KillOnce(Embedder(self.model, device="cpu").load(), self.marker, self.after)


class KillOnceReranker:
    def __init__(self, model: Path, marker: Path, after: int = 3) -> None:
        self.model, self.marker, self.after = str(model), str(marker), after

    def __call__(self) -> _KillOnce:
        from jp_rerank import Reranker

        return _KillOnce(Reranker(self.model, device="cpu").load(), self.marker, self.after)


class _Broken:
    model_id = "broken"

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("this embedder always fails")


def broken_embedder() -> _Broken:
    return _Broken()


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, recombined_passages: Callable[[int], list[str]]) -> Path:
    """1,200 passages recombined from the demo corpus's sentences, some without ids, some with list metadata."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i, text in enumerate(recombined_passages(1200)):
            rec: dict[str, Any] = {"text": text, "title": f"t{i % 7}"}
            if i % 97:
                rec["id"] = f"p{i:04d}"
            if i % 50 == 0:
                rec["tags"] = ["demo", i]
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            if i % 333 == 0:
                fh.write("\n")  # blank lines are skipped but counted in default ids
    return path


def _records(path: Path) -> list[dict[str, Any]]:
    return [dict(r, metadata=storable_metadata(r["metadata"])) for r in iter_records(str(path))]


def _snapshot_files(root: Path) -> dict[str, bytes]:
    """Every file of an index folder's current snapshot (nested snapshots resolved), manifests left out."""
    snapshot, manifest = read_snapshot(root)
    out: dict[str, bytes] = {}
    for name in manifest["files"]:
        path = snapshot / name
        if path.name in ("manifest.json", "CURRENT"):
            continue
        out[name.split("/snapshot-")[0] + "/" + path.name if "/snapshot-" in name else name] = path.read_bytes()
    return out


def _search(folder: Path, model: Path) -> list[list[tuple[str, float]]]:
    retriever = load_search_index(folder, reranker=None, embedder=str(model), device="cpu", top_n=5)
    return [[(p.id, round(p.score, 6)) for p in hits] for hits in retriever.retrieve_many(QUESTIONS)]


# --------------------------------------------------------------------------------------------------- tests


def test_embed_corpus_survives_a_killed_worker(corpus: Path, static_path: Path, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    report = embed_corpus(
        [corpus],
        tmp_path / "emb",
        embedder=KillOnceEmbedder(static_path, marker),
        chunk_bytes=16_000,
        config=CONFIG,
    )
    assert marker.exists(), "no worker was killed"
    records = list(iter_records(str(corpus)))
    ids, vectors = load_embeddings(tmp_path / "emb")
    assert ids == [r["id"] for r in records]  # every passage exactly once, in corpus order
    assert report.count == len(records)
    assert report.parts > 4
    expected = Embedder(static_path, device="cpu").embed_documents([r["text"] for r in records])
    np.testing.assert_array_equal(vectors, expected)  # StaticEmbedding: exact, whatever the batches and threads
    assert not list(tmp_path.glob(".emb.*")), "temporary folders left behind"


def test_asking_for_gpus_a_cpu_only_cluster_lacks_fails_at_once(
    corpus: Path, static_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 25, item 16: `embed-corpus --gpus-per-worker 1` on a CPU-only machine waited for a GPU node forever."""
    import time

    started = time.monotonic()
    code = main(
        [
            "embed-corpus",
            str(corpus),
            "-o",
            str(tmp_path / "emb"),
            "--embedder",
            str(static_path),
            "--gpus-per-worker",
            "1",
        ]
    )
    assert code == 2
    assert time.monotonic() - started < 120
    err = capsys.readouterr().err
    assert "has 0 GPUs, but each worker asks for 1 (--gpus-per-worker)" in err
    assert not (tmp_path / "emb").exists()


def test_build_index_ivfpq_equals_single_process(corpus: Path, static_path: Path, tmp_path: Path) -> None:
    from jp_rerank import BM25Index
    from jp_rerank.index import ingest, make_index

    report = build_index(
        [corpus],
        tmp_path / "ray",
        embedder=str(static_path),
        embedder_options={"device": "cpu"},
        bm25="mecab",
        index_options={"nlist": 8},
        train_size=512,
        batch_size=256,
        chunk_bytes=16_000,
        config=CONFIG,
    )
    assert report.trained_on == 512
    assert report.chunks > 4
    assert report.timings["rest"] > 0
    # The single-process path: the engine's public API, as `jp-rerank index` uses it.
    records = _records(corpus)
    embedder = Embedder(static_path, device="cpu")
    index = make_index("faiss-ivfpq", embedder.dim, embedder_id=embedder.model_id, nlist=8)
    ingest(index, records, embedder.embed_documents, batch_size=256, train_size=512, progress=False)
    bm25 = BM25Index("mecab").index(
        [r["text"] for r in records], [r["id"] for r in records], [r["metadata"] for r in records]
    )
    write_search_index(
        tmp_path / "single",
        passages=records,
        count=len(records),
        bm25=bm25,
        vectors=index,
        vector_backend="faiss-ivfpq",
    )
    ray_files, single_files = _snapshot_files(tmp_path / "ray"), _snapshot_files(tmp_path / "single")
    assert sorted(ray_files) == sorted(single_files)
    for name in single_files:  # passages, BM25 arrays and vocabulary, faiss IVF-PQ codes and lists: byte for byte
        assert ray_files[name] == single_files[name], name
    assert _search(tmp_path / "ray", static_path) == _search(tmp_path / "single", static_path)


def test_build_index_cli_equals_jp_rerank_index(corpus: Path, static_path: Path, tmp_path: Path) -> None:
    from jp_rerank.commands import scale

    parser = argparse.ArgumentParser()
    scale.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "build-index", str(corpus), "-o", str(tmp_path / "ray"), "--embedder", str(static_path),
            "--backend", "faiss-flat", "--bm25", "char2", "--device", "cpu", "--chunk-mb", "0.02", "--no-progress",
        ]
    )  # fmt: skip
    assert args.func(args) == 0
    assert main(
        ["index", str(corpus), "-o", str(tmp_path / "single"), "--embedder", str(static_path),
         "--backend", "faiss-flat", "--bm25", "char2", "--device", "cpu"]
    ) == 0  # fmt: skip
    ray_files, single_files = _snapshot_files(tmp_path / "ray"), _snapshot_files(tmp_path / "single")
    assert ray_files == single_files
    _, manifest = read_snapshot(tmp_path / "ray")
    assert manifest["backend"] == "search-index"
    assert manifest["vector_backend"] == "faiss-flat"
    for folder in ("ray", "single"):  # `jp-rerank search` loads the folder unchanged
        out = tmp_path / f"{folder}.jsonl"
        argv = ["search", str(tmp_path / folder), *QUESTIONS, "-m", "none", "--embedder", str(static_path)]
        assert main([*argv, "--json", "-o", str(out), "--device", "cpu"]) == 0
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "single.jsonl").read_bytes()
    # ... and so do the adapters, through the engine's loader (they take an injected TwoStageRetriever)
    lc = pytest.importorskip("langchain_jp_rerank")
    pipeline = load_search_index(tmp_path / "ray", reranker=None, embedder=str(static_path), device="cpu")
    docs = lc.JapaneseRetriever(pipeline=pipeline, k=3).invoke(QUESTIONS[0])
    assert [d.id for d in docs] == [p.id for p in pipeline.retrieve(QUESTIONS[0])][:3]


def test_a_failed_build_leaves_the_previous_index(corpus: Path, static_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    assert main(["index", str(corpus), "-o", str(out), "--bm25", "char2"]) == 0  # the previous index
    before = _snapshot_files(out)
    with pytest.raises(RuntimeError, match="this embedder always fails"):
        build_index([corpus], out, embedder=broken_embedder, backend="faiss-flat", overwrite=True, config=CONFIG)
    with pytest.raises(ModelLoadError, match=r"does not exist"):
        build_index([corpus], out, embedder=str(tmp_path / "no-such-model"), overwrite=True, config=CONFIG)
    assert _snapshot_files(out) == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".tmp")] == []
    retriever = load_search_index(out, reranker=None)
    assert len(retriever.retrieve("富士山の高さは？")) > 0


def _rerank_input(path: Path) -> Path:
    docs = load_demo_corpus()
    with path.open("w", encoding="utf-8") as fh:
        for i, q in enumerate(load_demo_queries()):
            if i % 2:
                row: dict[str, Any] = {"query": q["text"], "documents": [d["text"] for d in docs[i % 5 :: 2]]}
            else:
                row = {"query": q["text"], "passages": [{"id": d["id"], "text": d["text"]} for d in docs[i % 3 :: 3]]}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def test_rerank_on_ray_equals_jp_rerank_rerank_and_survives_a_kill(xlmr_ce_path: Path, tmp_path: Path) -> None:
    source = _rerank_input(tmp_path / "run.jsonl")
    argv = ["rerank", str(source), "-m", str(xlmr_ce_path), "-o", str(tmp_path / "single.jsonl"), "--device", "cpu"]
    assert main([*argv, "--top-n", "10"]) == 0
    marker = tmp_path / "killed"
    report = rerank_jsonl(
        source,
        tmp_path / "ray.jsonl",
        reranker=KillOnceReranker(xlmr_ce_path, marker),
        top_n=10,
        chunk_bytes=20_000,
        config=CONFIG,
    )
    assert marker.exists(), "no worker was killed"
    single = [json.loads(line) for line in (tmp_path / "single.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text(encoding="utf-8").splitlines()]
    assert report.queries == len(single)
    assert report.chunks > 2
    assert [r["query"] for r in rows] == [r["query"] for r in single]  # every query once, in input order
    for got, want in zip(rows, single, strict=True):
        # One thread per actor vs the single process's two: same order, scores within float tolerance.
        assert [(r["id"], r["index"]) for r in got["results"]] == [(r["id"], r["index"]) for r in want["results"]]
        np.testing.assert_allclose(
            [r["score"] for r in got["results"]], [r["score"] for r in want["results"]], rtol=0, atol=1e-5
        )
