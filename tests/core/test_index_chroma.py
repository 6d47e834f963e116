"""ChromaIndex, embedded (PersistentClient) and against a real local ``chroma run`` server, versus ExactIndex.

Data: 1,500 unit vectors in 32 dimensions from a mixture of 30 Gaussians; at this size Chroma's HNSW
(ef_search=100) finds the exact neighbours, so the top-k must equal the exact index's.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from jp_rerank.index import ChromaIndex, ExactIndex, IndexMismatchError, Record, SearchHit, load_index, make_index
from jp_rerank.testing import GaussianMixture

chromadb = pytest.importorskip("chromadb")

DIM = 32
N = 1500


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], np.ndarray, list[str], list[dict[str, str | int | bool]], np.ndarray]:
    mix = GaussianMixture(DIM, n_clusters=30, seed=2)
    ids = [f"c{i:04d}" for i in range(N)]
    metas: list[dict[str, str | int | bool]] = [
        {"lang": "ja" if i % 3 else "en", "n": i % 5, "even": i % 2 == 0} for i in range(N)
    ]
    return ids, mix.sample(N, seed=1), [f"文書{i}" for i in range(N)], metas, mix.sample(25, seed=2)


@pytest.fixture(scope="module")
def exact(corpus) -> ExactIndex:
    ids, vectors, texts, metas, _ = corpus
    index = ExactIndex(DIM)
    index.add(ids, vectors, texts, metas)
    return index


def assert_same_hits(found: list[list[SearchHit]], truth: list[list[SearchHit]]) -> None:
    for f, t in zip(found, truth, strict=True):
        assert [h.id for h in f] == [h.id for h in t]
        assert [h.score for h in f] == pytest.approx([h.score for h in t], abs=1e-5)
        assert [(h.text, h.metadata) for h in f] == [(h.text, h.metadata) for h in t]


def fill(index: ChromaIndex, corpus) -> ChromaIndex:
    ids, vectors, texts, metas, _ = corpus
    index.add(ids, vectors, texts, metas)
    return index


# ------------------------------------------------------------------------------------------------ embedded


def test_embedded_same_top_k_as_exact_on_cosine(tmp_path, corpus, exact):
    queries = corpus[4]
    index = fill(ChromaIndex(DIM, path=tmp_path / "db", collection_name="docs", embedder_id="toy"), corpus)
    assert len(index) == N
    # we pass our own vectors: the collection has no embedding function, so nothing is ever downloaded
    assert index._collection._embedding_function is None
    assert_same_hits(index.search_many(queries, k=20), exact.search_many(queries, k=20))
    assert_same_hits([index.search(queries[0], k=5)], [exact.search(queries[0], k=5)])
    where = {"lang": "en", "n": 2}
    assert_same_hits(index.search_many(queries, k=10, where=where), exact.search_many(queries, k=10, where=where))
    assert_same_hits(
        [index.search(queries[1], k=10, where={"even": True})], [exact.search(queries[1], k=10, where={"even": True})]
    )
    assert index.search(queries[0], k=3, where={"lang": "fr"}) == []


def test_embedded_reopen_keeps_records_and_checks_embedder(tmp_path, corpus):
    queries = corpus[4]
    path = tmp_path / "db"
    first = fill(ChromaIndex(DIM, path=path, collection_name="docs", embedder_id="toy"), corpus)
    before = first.search_many(queries, k=10)
    again = ChromaIndex(DIM, path=path, collection_name="docs")
    assert again.embedder_id == "toy"
    assert len(again) == N
    assert again.search_many(queries, k=10) == before
    with pytest.raises(IndexMismatchError, match="built with embedder 'toy', not 'other'"):
        ChromaIndex(DIM, path=path, collection_name="docs", embedder_id="other")
    with pytest.raises(IndexMismatchError, match="jp_rerank:dim=32, not 16"):
        ChromaIndex(16, path=path, collection_name="docs")
    with pytest.raises(IndexMismatchError, match="jp_rerank:metric='cosine', not 'ip'"):
        ChromaIndex(DIM, path=path, collection_name="docs", metric="ip")


def test_embedded_add_upsert_delete_get(tmp_path, corpus):
    ids, vectors, texts, metas, _ = corpus
    index = ChromaIndex(DIM, path=tmp_path / "db", collection_name="crud")
    index.add(ids[:100], vectors[:100], texts[:100], metas[:100])
    with pytest.raises(ValueError, match="already in the index"):
        index.add([ids[5], "fresh"], vectors[:2], ["a", "b"])
    assert len(index) == 100
    assert "fresh" not in index
    index.upsert([ids[5], "fresh"], vectors[[200, 201]], ["replaced", "new"], [{"lang": "xx"}, None])
    assert len(index) == 101
    assert index.get([ids[5]]) == [Record(ids[5], "replaced", {"lang": "xx"})]  # replaced, not merged
    assert index.get(["fresh"])[0].metadata == {}
    assert index.search(vectors[200], k=1)[0].id == ids[5]
    assert index.delete([ids[0], "missing", ids[1]]) == 2
    assert len(index) == 99
    assert ids[0] not in index
    with pytest.raises(KeyError, match="not in the index"):
        index.get([ids[0]])
    assert sorted(r.id for r in index.records(batch_size=30)) == sorted([*ids[2:100], "fresh"])


def test_large_writes_are_split_under_the_max_batch_size(tmp_path, corpus, monkeypatch):
    ids, vectors, texts, metas, _ = corpus
    client = chromadb.PersistentClient(
        path=str(tmp_path / "db"), settings=chromadb.config.Settings(anonymized_telemetry=False)
    )
    monkeypatch.setattr(client, "get_max_batch_size", lambda: 400)
    index = ChromaIndex(DIM, client=client, collection_name="split")
    sizes: list[int] = []
    real_add = index._collection.add

    def spy(**kwargs: object) -> None:
        sizes.append(len(kwargs["ids"]))  # type: ignore[arg-type]
        real_add(**kwargs)

    monkeypatch.setattr(index._collection, "add", spy)
    index.add(ids, vectors, texts, metas)
    assert sizes == [400, 400, 400, 300]
    assert len(index) == N


def test_inner_product_space(tmp_path):
    rng = np.random.default_rng(0)
    vectors = (rng.standard_normal((300, 8)) * rng.uniform(0.5, 2, (300, 1))).astype(np.float32)
    ids = [str(i) for i in range(300)]
    chroma, ref = ChromaIndex(8, path=tmp_path / "ip", metric="ip"), ExactIndex(8, metric="ip")
    for index in (chroma, ref):
        index.add(ids, vectors, [""] * 300)
    queries = rng.standard_normal((5, 8))
    assert_same_hits(chroma.search_many(queries, k=10), ref.search_many(queries, k=10))


def test_connection_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="exactly one of path="):
        ChromaIndex(DIM)
    with pytest.raises(ValueError, match=r"exactly one of path=.*\['path', 'host'\]"):
        ChromaIndex(DIM, path=tmp_path, host="127.0.0.1")
    assert isinstance(make_index("chroma", DIM, path=tmp_path / "m"), ChromaIndex)


def test_snapshot_imports_into_a_new_collection(tmp_path, corpus):
    queries = corpus[4]
    source = fill(ChromaIndex(DIM, path=tmp_path / "db", collection_name="src", embedder_id="toy"), corpus)
    source.delete([corpus[0][3]])
    source.save(tmp_path / "snap")
    copy = ChromaIndex.load(tmp_path / "snap", path=tmp_path / "db", collection_name="copy", embedder_id="toy")
    assert copy.collection_name == "copy"
    assert len(copy) == N - 1
    assert copy.embedder_id == "toy"
    # same hits; Chroma computes distances on different code paths (write log vs HNSW segment), so the last
    # float32 bit of a score can differ between two collections holding the same vectors
    assert_same_hits(copy.search_many(queries, k=10), source.search_many(queries, k=10))
    with pytest.raises(ValueError, match="already holds 1499 records"):
        load_index(tmp_path / "snap", path=tmp_path / "db", collection_name="copy")


# ------------------------------------------------------------------------------------------------ server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real ``chroma run`` on 127.0.0.1 and a free port, stopped (by its pid) after the module."""
    exe = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if exe is None:
        pytest.skip("the chroma CLI is not installed")
    data = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [exe, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        settings = chromadb.config.Settings(anonymized_telemetry=False)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"chroma run exited with {proc.returncode}: {(data / 'server.log').read_text()}")
            try:  # the client connects when it is built, so build it inside the wait loop
                chromadb.HttpClient(host="127.0.0.1", port=port, settings=settings).heartbeat()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


@pytest.mark.enable_socket
@pytest.mark.network
def test_server_same_top_k_as_exact_and_as_embedded(chroma_server, tmp_path, corpus, exact):
    host, port = chroma_server
    queries = corpus[4]
    server = fill(ChromaIndex(DIM, host=host, port=port, collection_name="parity", embedder_id="toy"), corpus)
    embedded = fill(ChromaIndex(DIM, path=tmp_path / "db", collection_name="parity"), corpus)
    truth = exact.search_many(queries, k=20)
    assert_same_hits(server.search_many(queries, k=20), truth)
    assert_same_hits(embedded.search_many(queries, k=20), truth)
    where = {"lang": "ja", "n": 4}
    assert_same_hits(server.search_many(queries, k=10, where=where), exact.search_many(queries, k=10, where=where))


@pytest.mark.enable_socket
@pytest.mark.network
def test_server_upsert_delete_and_snapshot_round_trip(chroma_server, tmp_path, corpus):
    host, port = chroma_server
    ids, vectors, texts, metas, queries = corpus
    server = ChromaIndex(DIM, host=host, port=port, collection_name="crud", embedder_id="toy")
    server.add(ids[:300], vectors[:300], texts[:300], metas[:300])
    server.upsert([ids[0]], vectors[[400]], ["moved"])
    assert server.delete([ids[1], "nope"]) == 1
    assert len(server) == 299
    assert server.search(vectors[400], k=1)[0] == SearchHit(ids[0], pytest.approx(1.0, abs=1e-5), "moved", {})
    with pytest.raises(IndexMismatchError, match="built with embedder 'toy'"):
        ChromaIndex(DIM, host=host, port=port, collection_name="crud", embedder_id="other")
    server.save(tmp_path / "snap")
    local = ChromaIndex.load(tmp_path / "snap", path=tmp_path / "db", embedder_id="toy")
    assert local.collection_name == "crud"
    assert_same_hits(local.search_many(queries, k=10), server.search_many(queries, k=10))
