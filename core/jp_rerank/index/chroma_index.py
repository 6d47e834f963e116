"""Chroma vector index, embedded (``chromadb.PersistentClient``) or client/server (``chromadb.HttpClient``).

chromadb is imported on first use (``pip install "jp-rerank[chroma]"``). We always pass our own embeddings and
create and open collections with ``embedding_function=None``, so Chroma never loads (or downloads) its default
ONNX embedder; anonymised telemetry is switched off for the clients built here.

Chroma persists the collection itself: opening the same ``path`` (or server) and ``collection_name`` again gives
the same records, and the collection's metadata records the dimension, metric and embedder id, which are checked
on every open. :meth:`ChromaIndex.save` additionally writes a portable snapshot (vectors + JSONL, same format as
the other backends) that :meth:`ChromaIndex.load` imports into an empty collection.

Large writes are split under the client's ``get_max_batch_size()``. :meth:`~VectorIndex.upsert` replaces whole
records with Chroma's own ``upsert`` (one request per chunk, applied atomically by Chroma, retried on a server like
every idempotent call); metadata keys the new version lacks are removed explicitly (Chroma would otherwise merge
old and new metadata). A process or server killed at any point of an upsert therefore leaves every record either
at its old or at its new version, never missing. Scores are ``1 - distance`` for Chroma's ``cosine`` and ``ip``
spaces, i.e. the cosine or inner product. Chroma searches with its own HNSW graph (``ef_search`` is fixed per
collection), so on large collections results are approximate.

Reading everything (:meth:`~VectorIndex.records`, :meth:`ChromaIndex.save`) lists the stored ids once and then
fetches the records by id, never by offset (offsets shift when another client writes): every record stored for
the whole read is returned exactly once, records deleted before it are never returned, and records written during
it appear at most once, old or new. :meth:`ChromaIndex.save` also checks that the ids did not change while it
read them (and reads again, a few times, if they did), so a snapshot is the collection at one moment.

A client the index builds itself (``path=`` or ``host=``) holds files and sockets: :meth:`ChromaIndex.close` (or
``with ChromaIndex(...) as index:``) releases them, and so does garbage collection of the index. A ``client=``
given by the caller is never closed.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from jp_rerank.checks import check_positive_int
from jp_rerank.errors import IndexCorruptedError, IndexMismatchError
from jp_rerank.extras import require
from jp_rerank.hits import SearchHit, sort_hits
from jp_rerank.index.base import Batch, Record, VectorIndex
from jp_rerank.index.chroma_snapshot import read_batches, write_records
from jp_rerank.index.retry import RetryingProxy, RetryPolicy, call_with_retries, connect_chroma_http
from jp_rerank.index.vectors import Metric
from jp_rerank.snapshots import write_snapshot
from jp_rerank.types import Metadata, MetadataValue

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ChromaIndex"]

logger = logging.getLogger(__name__)

_KEY_DIM = "jp_rerank:dim"
_KEY_METRIC = "jp_rerank:metric"
_KEY_EMBEDDER = "jp_rerank:embedder_id"
_QUERY_CHUNK = 256
_SAVE_ATTEMPTS = 3
"""Reads of a collection that keeps changing before :meth:`ChromaIndex.save` gives up."""

T = TypeVar("T")


class _ClosedCollection:
    """Stands in for the collection of a closed index: any use raises a clear error."""

    def __init__(self, owner: str) -> None:
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"{self._owner} is closed; open the collection again with a new ChromaIndex")


def _close_client(client: Any) -> None:
    close = getattr(client, "close", None)
    if callable(close):
        try:
            close()
        except Exception as exc:  # closing must never raise from a finaliser
            logger.debug("closing the chromadb client failed: %s", exc)


def _chroma_where(where: Mapping[str, MetadataValue]) -> dict[str, Any]:
    clauses = [{key: {"$eq": value}} for key, value in where.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class ChromaIndex(VectorIndex):
    """A Chroma collection behind the :class:`VectorIndex` interface.

    Give exactly one of ``path`` (embedded, persistent), ``host`` (a running ``chroma run`` server) or ``client``
    (any chromadb client you built).

    Args:
        dim: Vector dimension.
        collection_name: Chroma collection (3-512 characters of ``[a-zA-Z0-9._-]``), created if missing.
        path: Folder of an embedded ``PersistentClient``.
        host: Host of a Chroma server (``HttpClient``).
        port: Port of the Chroma server.
        ssl: Use HTTPS for the server.
        headers: Extra HTTP headers (e.g. authentication) for the server.
        client: A ready chromadb client (its settings are used as they are).
        metric: ``"cosine"`` (normalised) or ``"ip"``.
        embedder_id: Id of the model that made the vectors; recorded in the collection and checked on open.
        ef_search: HNSW query-time beam width of a new collection.
        ef_construction: HNSW build-time beam width of a new collection.
        max_neighbors: HNSW graph degree of a new collection.
        retry: For a server (``host=``): request timeout and retries with exponential back-off of transient
            network failures (default :class:`~jp_rerank.index.retry.RetryPolicy`: 5 attempts, 30 s per request).
            Reads, upserts and deletes are retried; an ``add`` only when its request never reached the server.
            Exhausted retries raise :class:`~jp_rerank.index.retry.IndexServerUnavailableError`.

    Raises:
        IndexMismatchError: If the existing collection was made with another dimension, metric or embedder.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp, ChromaIndex(2, path=tmp) as index:
        ...     index.add(["a", "b"], [[1.0, 0.0], [0.0, 1.0]], ["犬", "猫"])
        ...     [h.id for h in index.search([0.9, 0.1], k=1)]
        ['a']
    """

    backend = "chroma"

    def __init__(
        self,
        dim: int,
        *,
        collection_name: str = "jp_rerank",
        path: str | Path | None = None,
        host: str | None = None,
        port: int = 8000,
        ssl: bool = False,
        headers: Mapping[str, str] | None = None,
        client: Any = None,
        metric: Metric = "cosine",
        embedder_id: str | None = None,
        ef_search: int = 100,
        ef_construction: int = 100,
        max_neighbors: int = 16,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(dim, metric=metric, embedder_id=embedder_id)
        given = [name for name, value in (("path", path), ("host", host), ("client", client)) if value is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path= (embedded), host= (server) or client=, got {given or 'none'}")
        self._hnsw = {
            "ef_search": check_positive_int(ef_search, name="ef_search"),
            "ef_construction": check_positive_int(ef_construction, name="ef_construction"),
            "max_neighbors": check_positive_int(max_neighbors, name="max_neighbors"),
        }
        chromadb = require("chromadb", "chroma")
        settings = chromadb.config.Settings(anonymized_telemetry=False)
        self._retry = retry if retry is not None else RetryPolicy()
        self._server: str | None = None  # set for a server: its calls get a timeout and retries
        owns_client = client is None
        if client is None and path is not None:
            client = chromadb.PersistentClient(path=str(path), settings=settings)
        elif client is None:
            self._server = f"Chroma server {'https' if ssl else 'http'}://{host}:{port}"
            client = connect_chroma_http(
                host=str(host), port=port, ssl=ssl, headers=dict(headers or {}), settings=settings, policy=self._retry
            )
        self._client = client
        self._collection_name = collection_name
        # a client built here is closed with the index (close(), ``with``, or garbage collection)
        self._finalizer = weakref.finalize(self, _close_client, client) if owns_client else None
        if self._finalizer is not None:
            self._finalizer.atexit = False  # interpreter shutdown tears chromadb down by itself
        try:
            self._max_batch = int(self._remote("get_max_batch_size", client.get_max_batch_size))
            collection = self._remote("opening the collection", self._open_collection)
        except BaseException:
            self.close()
            raise
        self._collection: Any = (
            collection if self._server is None else RetryingProxy(collection, policy=self._retry, where=self._server)
        )

    def _remote(self, what: str, fn: Callable[[], T]) -> T:
        """Call ``fn`` (idempotent), with retries when talking to a server."""
        if self._server is None:
            return fn()
        return call_with_retries(fn, what=what, where=self._server, policy=self._retry, idempotent=True)

    # ------------------------------------------------------------------ collection

    @property
    def collection_name(self) -> str:
        """Name of the Chroma collection."""
        return self._collection_name

    @property
    def client(self) -> Any:
        """The chromadb client (closed with the index when the index built it)."""
        return self._client

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return isinstance(getattr(self, "_collection", None), _ClosedCollection)

    def close(self) -> None:
        """Release the client's files and sockets if this index built the client (idempotent).

        Any later use of the index raises ``RuntimeError``. A ``client=`` given by the caller stays open.
        """
        self._collection = _ClosedCollection(f"ChromaIndex {self._collection_name!r}")
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"ChromaIndex(dim={self.dim}, collection_name={self._collection_name!r}, closed)"
        return super().__repr__()

    def _open_collection(self) -> Any:
        chromadb = require("chromadb", "chroma")
        try:
            collection = self._client.get_collection(self._collection_name, embedding_function=None)
        except (chromadb.errors.NotFoundError, ValueError):
            metadata: dict[str, Any] = {_KEY_DIM: self.dim, _KEY_METRIC: self.metric}
            if self.embedder_id is not None:
                metadata[_KEY_EMBEDDER] = self.embedder_id
            configuration = {"hnsw": {"space": self.metric, **self._hnsw}}
            return self._client.get_or_create_collection(
                self._collection_name, configuration=configuration, metadata=metadata, embedding_function=None
            )
        self._check_existing(collection)
        return collection

    def _check_existing(self, collection: Any) -> None:
        meta = dict(collection.metadata or {})
        name = self._collection_name
        if _KEY_DIM not in meta:
            raise IndexMismatchError(
                f"Chroma collection {name!r} was not created by jp-rerank (no {_KEY_DIM!r} in its metadata)"
            )
        for key, mine in ((_KEY_DIM, self.dim), (_KEY_METRIC, self.metric)):
            if meta.get(key) != mine:
                raise IndexMismatchError(f"Chroma collection {name!r} has {key}={meta.get(key)!r}, not {mine!r}")
        saved = meta.get(_KEY_EMBEDDER)
        if self.embedder_id is not None and saved is not None and saved != self.embedder_id:
            raise IndexMismatchError(
                f"Chroma collection {name!r} was built with embedder {saved!r}, not {self.embedder_id!r}"
            )
        if self.embedder_id is None and saved is not None:
            self._embedder_id = str(saved)

    def params(self) -> dict[str, Any]:
        """Backend parameters for the manifest."""
        return {"collection_name": self._collection_name, **self._hnsw}

    # ------------------------------------------------------------------ hooks

    def _chunks(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self._max_batch):
            yield slice(start, start + self._max_batch)

    def _count(self) -> int:
        return int(self._collection.count())

    def _present(self, ids: list[str]) -> list[str]:
        found: set[str] = set()
        for part in self._chunks(len(ids)):
            found.update(self._collection.get(ids=ids[part], include=[])["ids"])
        return [i for i in ids if i in found]

    def _insert(self, batch: Batch) -> None:
        for part in self._chunks(len(batch.ids)):
            self._collection.add(
                ids=batch.ids[part],
                embeddings=batch.vectors[part],
                documents=batch.texts[part],
                metadatas=[m or None for m in batch.metadatas[part]],
            )

    def _upsert(self, batch: Batch) -> None:
        """Chroma's own upsert (atomic per request, idempotent), removing metadata keys the new version lacks."""
        for part in self._chunks(len(batch.ids)):
            ids = batch.ids[part]
            stored = self._collection.get(ids=ids, include=["metadatas"])
            old_keys = {
                id_: set(meta or ()) for id_, meta in zip(stored["ids"], stored["metadatas"] or [], strict=False)
            }
            metadatas: list[dict[str, Any] | None] = []
            for id_, meta in zip(ids, batch.metadatas[part], strict=True):
                new: dict[str, Any] = dict(meta)
                new.update(dict.fromkeys(old_keys.get(id_, set()) - new.keys()))  # None deletes a key in Chroma
                metadatas.append(new or None)
            self._collection.upsert(
                ids=ids, embeddings=batch.vectors[part], documents=batch.texts[part], metadatas=metadatas
            )

    def _remove(self, ids: list[str]) -> int:
        present = self._present(ids)
        for part in self._chunks(len(present)):
            self._collection.delete(ids=present[part])
        return len(present)

    def _get(self, ids: list[str]) -> list[Record | None]:
        found: dict[str, Record] = {}
        for part in self._chunks(len(ids)):
            res = self._collection.get(ids=ids[part], include=["documents", "metadatas"])
            for rec in self._records(res):
                found[rec.id] = rec
        return [found.get(i) for i in ids]

    @staticmethod
    def _records(res: Mapping[str, Any]) -> list[Record]:
        metas: Sequence[Metadata | None] = res["metadatas"] or [None] * len(res["ids"])
        return [
            Record(id_, doc or "", dict(meta or {}))
            for id_, doc, meta in zip(res["ids"], res["documents"], metas, strict=True)
        ]

    def _all_ids(self) -> list[str]:
        """Every stored id, in Chroma's order (one request: ids only)."""
        return list(self._collection.get(include=[])["ids"])

    def _pages(self, ids: list[str], batch_size: int, include: list[str]) -> Iterator[dict[str, Any]]:
        """Fetch ``ids`` page by page, by id (never by offset), in the order given; deleted ids are skipped."""
        step = min(batch_size, self._max_batch)
        for start in range(0, len(ids), step):
            wanted = ids[start : start + step]
            with self._lock:
                res = self._collection.get(ids=wanted, include=include)
            position = {id_: i for i, id_ in enumerate(res["ids"])}
            order = [position[i] for i in wanted if i in position]
            page: dict[str, Any] = {"ids": [res["ids"][i] for i in order]}
            for key in include:
                values = res[key]
                page[key] = None if values is None else [values[i] for i in order]
            yield page

    def _iter_records(self, batch_size: int) -> Iterator[Record]:
        with self._lock:
            ids = self._all_ids()
        for page in self._pages(ids, batch_size, ["documents", "metadatas"]):
            yield from self._records(page)

    def _search(
        self, queries: np.ndarray, k: int, where: dict[str, MetadataValue] | None, options: Mapping[str, int]
    ) -> list[list[SearchHit]]:
        n_results = min(k, self._count())
        out: list[list[SearchHit]] = []
        for start in range(0, queries.shape[0], _QUERY_CHUNK):
            res = self._collection.query(
                query_embeddings=queries[start : start + _QUERY_CHUNK],
                n_results=n_results,
                where=None if where is None else _chroma_where(where),
                include=["documents", "metadatas", "distances"],
            )
            for q in range(len(res["ids"])):
                metas = res["metadatas"][q] if res["metadatas"] else [None] * len(res["ids"][q])
                hits = [
                    SearchHit(id_, 1.0 - float(dist), doc or "", dict(meta or {}))
                    for id_, dist, doc, meta in zip(
                        res["ids"][q], res["distances"][q], res["documents"][q], metas, strict=True
                    )
                ]
                out.append(sort_hits(hits))
        return out

    # ------------------------------------------------------------------ snapshot

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save a portable snapshot of the collection (see :mod:`jp_rerank.snapshots`), consistent under writes.

        The ids are listed, every record is fetched by id, and the ids are listed again: if another client changed
        them meanwhile the read starts over (up to 3 times), so the snapshot is the collection at one moment.

        Returns:
            The snapshot folder that was written.

        Raises:
            RuntimeError: If the collection changed during each attempt (other clients keep writing).
        """
        with self._lock:
            return write_snapshot(Path(path), self._manifest(), self._consistent_payload)

    def _consistent_payload(self, folder: Path) -> dict[str, Any]:
        for attempt in range(1, _SAVE_ATTEMPTS + 1):
            ids = self._all_ids()
            pages = self._pages(ids, self._max_batch, ["documents", "metadatas", "embeddings"])
            written = write_records(folder, self.dim, len(ids), ((p["embeddings"], self._records(p)) for p in pages))
            after = self._all_ids()
            if written == len(ids) and len(after) == len(ids) and set(after) == set(ids):
                return {"count": written}
            logger.info(
                "Chroma collection %r changed while it was saved (attempt %d of %d); reading it again",
                self._collection_name,
                attempt,
                _SAVE_ATTEMPTS,
            )
        raise RuntimeError(
            f"Chroma collection {self._collection_name!r} changed while it was being saved, {_SAVE_ATTEMPTS} times "
            "in a row; save again when other clients pause their writes"
        )

    def _write_payload(self, folder: Path) -> None:
        self._consistent_payload(folder)

    @classmethod
    def _from_payload(cls, folder: Path, manifest: Mapping[str, Any], **options: Any) -> Self:
        """Import a snapshot into an empty collection.

        ``options`` are the constructor's connection arguments (``path=``, ``host=``/``port=``, or ``client=``)
        and optionally ``collection_name=`` (default: the saved collection's name).
        """
        try:
            p = dict(manifest["params"])
            saved = {key: p[key] for key in ("ef_search", "ef_construction", "max_neighbors")}
            options.setdefault("collection_name", p["collection_name"])
            dim, metric, embedder_id = manifest["dim"], manifest["metric"], manifest["embedder_id"]
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptedError(f"{folder / 'manifest.json'} lacks a Chroma setting: {exc!r}") from exc
        index = cls(dim, metric=metric, embedder_id=embedder_id, **saved, **options)
        try:
            return index._import(folder)
        except BaseException:
            index.close()
            raise

    def _import(self, folder: Path) -> Self:
        """Add the records of a verified snapshot folder to this (empty) collection, in batches."""
        if len(self):
            raise ValueError(
                f"Chroma collection {self.collection_name!r} already holds {len(self)} records; "
                "load a snapshot into a new or empty collection"
            )
        for batch in read_batches(folder, self.dim, self._max_batch):
            with self._lock:
                self._insert(batch)
        return self
