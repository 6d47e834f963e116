"""BM25 retrieval over Japanese tokens, with the index built by ``bm25s``.

``bm25s`` computes the BM25 weight of every (document, token) pair once, at indexing time, into a sparse
column-per-token matrix. A query's scores are then the sum of its tokens' columns; this module sums the
columns of many queries in one vectorised pass and ranks the documents itself so that ties break
deterministically (lower document index first) and only matching documents are returned.

Scoring (``method="lucene"``, the default, as in Lucene and ``bm25s``) for a query ``q`` and document ``d``::

    score(q, d) = Σ_{t in q} idf(t) · tf(t, d) / (tf(t, d) + k1 · (1 - b + b · |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

A token repeated in the query counts once per occurrence. ``"robertson"`` uses the idf
``ln((N - df + 0.5) / (df + 0.5))`` clipped at 0; ``"atire"`` uses ``ln(N / df)`` and multiplies the
term-frequency part by ``k1 + 1``. The parity test in ``tests/core/test_lexical.py`` recomputes these formulas.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from jp_rerank._validate import check_positive_int, check_texts
from jp_rerank._version import __version__
from jp_rerank.errors import IndexCorruptedError, IndexMismatchError
from jp_rerank.lexical.tokenizers import Tokenizer, get_tokenizer, prepare_text

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = [
    "DEFAULT_B",
    "DEFAULT_K1",
    "DEFAULT_METHOD",
    "DEFAULT_TOKENIZER",
    "BM25Index",
    "BM25Method",
    "LexicalHit",
]

logger = logging.getLogger(__name__)

BM25Method = Literal["lucene", "robertson", "atire"]
"""BM25 variants (see the module docs)."""

DEFAULT_TOKENIZER = "mecab"
"""Default tokenizer: MeCab lemmas without particles, the best MeCab set-up on JSQuAD (nDCG@10 0.945 vs 0.936 for
surface forms with bm25s defaults). ``"char1-2"`` scored higher there (0.952); see ``benchmarks/bm25_quality.py``."""
DEFAULT_K1 = 0.9
"""Term-frequency saturation (Anserini's default; better than 1.2–1.5 on JSQuAD, see the benchmark)."""
DEFAULT_B = 0.4
"""Document-length normalisation (Anserini's default)."""
DEFAULT_METHOD: BM25Method = "lucene"
"""BM25 variant (see the module docs)."""

_BACKEND = "bm25"
"""Backend name in the snapshot manifest (see :mod:`jp_rerank.index.persist`)."""
_FORMAT_VERSION = 1
_IDS, _VOCAB, _ARRAYS = "ids.json", "vocab.json", "arrays.npz"
# Postings summed per sparse product: bounds the memory of one block of queries (about 16 bytes each).
_BLOCK_POSTINGS = 1 << 24


@dataclass(frozen=True, slots=True)
class LexicalHit:
    """One retrieved document.

    Attributes:
        index: Position of the document in the index (order of :meth:`BM25Index.add`).
        id: The document's id.
        score: BM25 score (always > 0).
    """

    index: int
    id: str
    score: float


@dataclass(frozen=True)
class _State:
    """An immutable snapshot of the index; writers replace it whole so readers never see a half update."""

    ids: tuple[str, ...]
    vocab: dict[str, int]
    doc_offsets: np.ndarray  # int64, len n_docs + 1: document i's token ids are doc_tokens[o[i]:o[i+1]]
    doc_tokens: np.ndarray  # int32 token ids
    data: np.ndarray  # float32 BM25 weights, column-major by token (CSC)
    indices: np.ndarray  # int32 document index of each weight
    indptr: np.ndarray  # int64, len vocab + 1: token t's weights are data[indptr[t]:indptr[t+1]]


def _empty_state() -> _State:
    return _State(
        ids=(),
        vocab={},
        doc_offsets=np.zeros(1, dtype=np.int64),
        doc_tokens=np.zeros(0, dtype=np.int32),
        data=np.zeros(0, dtype=np.float32),
        indices=np.zeros(0, dtype=np.int32),
        indptr=np.zeros(1, dtype=np.int64),
    )


def _check_float(value: object, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return float(value)


def _top_k(docs: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best positive ``(doc, score)`` pairs, by score descending then lower doc index first."""
    keep = scores > 0
    docs, scores = docs[keep], scores[keep]
    if docs.size > k:
        cut = docs.size - k
        kth = np.partition(scores, cut)[cut]
        keep = scores >= kth
        docs, scores = docs[keep], scores[keep]
    order = np.lexsort((docs, -scores))[:k]
    return docs[order], scores[order]


class BM25Index:
    """BM25 index over Japanese text with a pluggable tokenizer.

    Documents are tokenised (MeCab lemmas without particles by default), indexed with ``bm25s`` and searched
    by query. Only documents sharing at least one weighted token with the query are returned, so a query with
    no known token returns ``[]``. Documents without any token are indexed (they count in ``len`` and in the
    average length) but never match. The index keeps ids and token ids, not the texts.

    Args:
        tokenizer: A spec such as ``"mecab"``, ``"mecab-surface+func"``, ``"sudachi"``, ``"char2"``,
            ``"char1-2"`` (see :func:`~jp_rerank.lexical.get_tokenizer`) or a :class:`Tokenizer` object.
        k1: Term-frequency saturation, ``>= 0``.
        b: Length normalisation, in ``[0, 1]``.
        method: BM25 variant: ``"lucene"``, ``"robertson"`` or ``"atire"`` (see the module docs).
        normalize: Pass every text through :func:`~jp_rerank.lexical.prepare_text` (NFKC, lower case) before
            the tokenizer (a tokenizer built from a spec then skips its own normalisation). Queries and documents
            always go through the same steps.

    Raises:
        ValueError: If a parameter is out of range or the tokenizer spec is unknown.

    Example:
        >>> index = BM25Index().index(["東京は日本の首都です。", "大阪はたこ焼きで有名です。"], ids=["tokyo", "osaka"])
        >>> [hit.id for hit in index.search("日本の首都はどこ？")]
        ['tokyo']
    """

    def __init__(
        self,
        tokenizer: str | Tokenizer = DEFAULT_TOKENIZER,
        *,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        method: BM25Method = DEFAULT_METHOD,
        normalize: bool = True,
    ) -> None:
        if method not in ("lucene", "robertson", "atire"):
            raise ValueError(f"method must be 'lucene', 'robertson' or 'atire', got {method!r}")
        self._k1 = _check_float(k1, "k1", 0.0, math.inf)
        self._b = _check_float(b, "b", 0.0, 1.0)
        self._method: BM25Method = method
        self._normalize = bool(normalize)
        # The index normalises texts itself, so tokenizers it builds from a spec skip that step.
        self._tokenizer = get_tokenizer(tokenizer, normalize=False) if isinstance(tokenizer, str) else tokenizer
        get_tokenizer(self._tokenizer)  # type check of a tokenizer object
        self._state = _empty_state()
        self._write_lock = threading.Lock()

    # ------------------------------------------------------------------ properties
    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer (it receives text already prepared when ``normalize`` is on)."""
        return self._tokenizer

    @property
    def k1(self) -> float:
        """Term-frequency saturation."""
        return self._k1

    @property
    def b(self) -> float:
        """Length normalisation."""
        return self._b

    @property
    def method(self) -> BM25Method:
        """BM25 variant."""
        return self._method

    @property
    def normalize(self) -> bool:
        """Whether texts are NFKC-normalised and lower-cased before tokenising."""
        return self._normalize

    @property
    def ids(self) -> tuple[str, ...]:
        """Document ids in index order."""
        return self._state.ids

    @property
    def vocabulary_size(self) -> int:
        """Number of distinct tokens in the indexed documents."""
        return len(self._state.vocab)

    def __len__(self) -> int:
        return len(self._state.ids)

    def __repr__(self) -> str:
        return (
            f"BM25Index(tokenizer={self._tokenizer.name!r}, k1={self._k1}, b={self._b}, "
            f"method={self._method!r}, normalize={self._normalize}, documents={len(self)})"
        )

    # ------------------------------------------------------------------ tokenising
    def tokenize(self, text: str) -> list[str]:
        """Return the tokens the index uses for ``text`` (documents and queries alike).

        Raises:
            TypeError: If ``text`` is not a ``str`` or the tokenizer does not return a list of ``str``.

        Example:
            >>> BM25Index("char2").tokenize("ﾃｽﾄ　ＡＢ")
            ['テス', 'スト', 'ab']
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        tokens = self._tokenizer(prepare_text(text) if self._normalize else text)
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise TypeError(f"tokenizer {self._tokenizer.name!r} must return a list of str")
        return tokens

    # ------------------------------------------------------------------ building
    def index(self, texts: Sequence[str], ids: Sequence[str] | None = None) -> BM25Index:
        """Replace the contents of the index with ``texts``.

        Args:
            texts: Documents to index (empty strings allowed).
            ids: One unique id per text; defaults to the positions ``"0"``, ``"1"``, ...

        Returns:
            This index, for chaining.

        Raises:
            TypeError: If ``texts`` is not a sequence of ``str`` (the message names the first bad position)
                or an id is not a ``str``.
            ValueError: If ``ids`` has the wrong length or repeats an id.
        """
        with self._write_lock:
            self._state = self._extend(_empty_state(), texts, ids)
        return self

    def add(self, texts: Sequence[str], ids: Sequence[str] | None = None) -> BM25Index:
        """Append documents (same arguments and errors as :meth:`index`).

        BM25 statistics (idf, average length) depend on the whole corpus, so each call rebuilds the weights of
        every document: prefer one call with many texts to many calls with one. Default ids continue the
        positions (``str(len(index))``, ...). Nothing changes when an error is raised.

        Returns:
            This index, for chaining.
        """
        with self._write_lock:
            self._state = self._extend(self._state, texts, ids)
        return self

    def _extend(self, state: _State, texts: Sequence[str], ids: Sequence[str] | None) -> _State:
        items = check_texts(texts, name="texts")
        start = len(state.ids)
        if ids is None:
            new_ids = [str(start + i) for i in range(len(items))]
        else:
            new_ids = check_texts(ids, name="ids")
            if len(new_ids) != len(items):
                raise ValueError(f"got {len(items)} texts but {len(new_ids)} ids")
        seen = set(state.ids)
        for doc_id in new_ids:
            if doc_id in seen:
                raise ValueError(f"duplicate document id {doc_id!r}")
            seen.add(doc_id)
        if not items:
            return state
        vocab = dict(state.vocab)
        new_tokens: list[int] = []
        lengths: list[int] = []
        for text in items:
            tokens = self.tokenize(text)
            new_tokens.extend(vocab.setdefault(token, len(vocab)) for token in tokens)
            lengths.append(len(tokens))
        doc_tokens = np.concatenate([state.doc_tokens, np.asarray(new_tokens, dtype=np.int32)])
        doc_offsets = np.concatenate([state.doc_offsets, state.doc_offsets[-1] + np.cumsum(lengths, dtype=np.int64)])
        data, indices, indptr = self._weights(vocab, doc_offsets, doc_tokens)
        return _State(
            ids=(*state.ids, *new_ids),
            vocab=vocab,
            doc_offsets=doc_offsets,
            doc_tokens=doc_tokens,
            data=data,
            indices=indices,
            indptr=indptr,
        )

    def _weights(
        self, vocab: dict[str, int], doc_offsets: np.ndarray, doc_tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Compute the BM25 weight matrix (CSC arrays) with bm25s."""
        if not vocab:
            empty = _empty_state()
            return empty.data, empty.indices, empty.indptr
        import bm25s

        corpus = [doc.tolist() for doc in np.split(doc_tokens, doc_offsets[1:-1])]
        model = bm25s.BM25(k1=self._k1, b=self._b, method=self._method)
        # A copy: bm25s may add entries to the vocabulary it is given.
        model.index((corpus, dict(vocab)), create_empty_token=False, show_progress=False)
        scores = model.scores
        indptr = np.asarray(scores["indptr"], dtype=np.int64)
        if len(indptr) != len(vocab) + 1:
            raise RuntimeError(f"bm25s returned {len(indptr) - 1} token columns for {len(vocab)} tokens")
        return (
            np.asarray(scores["data"], dtype=np.float32),
            np.asarray(scores["indices"], dtype=np.int32),
            indptr,
        )

    # ------------------------------------------------------------------ scoring
    def _query_token_ids(self, state: _State, query: str) -> list[int]:
        return [state.vocab[token] for token in self.tokenize(query) if token in state.vocab]

    @staticmethod
    def _score_block(state: _State, token_ids: list[list[int]]) -> csr_matrix:
        """Sparse ``(len(token_ids), n_docs)`` float64 scores: each row sums the weights of a query's tokens."""
        import scipy.sparse

        weights = scipy.sparse.csr_matrix(
            (state.data, state.indices, state.indptr), shape=(len(state.vocab), len(state.ids))
        )
        rows = np.repeat(np.arange(len(token_ids), dtype=np.int64), [len(ids) for ids in token_ids])
        cols = np.fromiter((t for ids in token_ids for t in ids), dtype=np.int64, count=len(rows))
        # Building from coordinates sums repeats, so a token repeated in the query counts once per occurrence.
        queries = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(token_ids), len(state.vocab)))
        return (queries @ weights).tocsr()

    def search(self, query: str, k: int = 100) -> list[LexicalHit]:
        """Return the ``k`` best documents for ``query``.

        Args:
            query: Query text.
            k: Maximum number of hits; larger than the index returns every matching document.

        Returns:
            Hits sorted by score descending, ties by lower index first; ``[]`` when the query has no token
            known to the index (including an empty query) or the index is empty.

        Raises:
            TypeError: If ``query`` is not a ``str`` or ``k`` not an ``int``.
            ValueError: If ``k <= 0``.

        Example:
            >>> index = BM25Index("char2").index(["富士山の標高", "琵琶湖の面積"])
            >>> index.search("富士山は何メートル？", k=5)[0].index
            0
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        return self.search_many([query], k=k)[0]

    def search_many(self, queries: Sequence[str], k: int = 100) -> list[list[LexicalHit]]:
        """Search many queries at once (same results as :meth:`search` for each).

        All queries are tokenised, then scored in blocks by one sparse matrix product per block (queries x
        tokens times tokens x documents), which is many times faster than scoring queries one by one.

        Args:
            queries: Query texts.
            k: Maximum number of hits per query.

        Returns:
            One list of hits per query, in query order.

        Raises:
            TypeError: If ``queries`` is not a sequence of ``str`` (names the position) or ``k`` is not an ``int``.
            ValueError: If ``k <= 0``.

        Example:
            >>> index = BM25Index("char2").index(["富士山の標高", "琵琶湖の面積"])
            >>> [[hit.index for hit in hits] for hits in index.search_many(["琵琶湖", "富士山", "なし"])]
            [[1], [0], []]
        """
        items = check_texts(queries, name="queries")
        check_positive_int(k, name="k")
        state = self._state
        if not items or not state.vocab:
            return [[] for _ in items]
        token_ids = [self._query_token_ids(state, query) for query in items]
        # Blocks of queries whose postings add up to at most _BLOCK_POSTINGS bound the memory of one product.
        posting_counts = np.diff(state.indptr)
        blocks: list[tuple[int, int]] = []
        start, volume = 0, 0
        for i, ids in enumerate(token_ids):
            cost = int(posting_counts[ids].sum()) if ids else 0
            if i > start and volume + cost > _BLOCK_POSTINGS:
                blocks.append((start, i))
                start, volume = i, 0
            volume += cost
        blocks.append((start, len(token_ids)))
        results = [self._rank_block(state, token_ids[lo:hi], k) for lo, hi in blocks]
        return [hits for block_hits in results for hits in block_hits]

    def _rank_block(self, state: _State, token_ids: list[list[int]], k: int) -> list[list[LexicalHit]]:
        scores = self._score_block(state, token_ids)
        ids = state.ids
        out: list[list[LexicalHit]] = []
        for row in range(len(token_ids)):
            lo, hi = scores.indptr[row], scores.indptr[row + 1]
            docs, values = _top_k(scores.indices[lo:hi], scores.data[lo:hi], k)
            out.append([LexicalHit(i, ids[i], v) for i, v in zip(docs.tolist(), values.tolist(), strict=True)])
        return out

    def score(self, query: str, indices: Iterable[int]) -> list[float]:
        """Score given documents for ``query`` (e.g. candidates from another retriever).

        Args:
            query: Query text.
            indices: Document positions (see :attr:`LexicalHit.index`), in any order, repeats allowed.

        Returns:
            One score per index, in the given order; ``0.0`` for documents that do not match.

        Raises:
            TypeError: If ``query`` is not a ``str`` or an index is not an ``int``.
            IndexError: If an index is outside ``[0, len(index))`` (names its position).

        Example:
            >>> index = BM25Index("char2").index(["富士山の標高", "琵琶湖の面積"])
            >>> [s > 0 for s in index.score("富士山", [1, 0])]
            [False, True]
        """
        state = self._state
        positions: list[int] = []
        for i, value in enumerate(indices):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"indices[{i}] must be an int, got {type(value).__name__}")
            if not 0 <= value < len(state.ids):
                raise IndexError(f"indices[{i}] = {value} is outside the index of {len(state.ids)} documents")
            positions.append(int(value))
        token_ids = self._query_token_ids(state, query)
        if not positions:
            return []
        if not token_ids:
            return [0.0] * len(positions)
        row = self._score_block(state, [token_ids]).toarray()[0]
        return [float(row[i]) for i in positions]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the folder ``path`` as an atomic, checksummed snapshot (JSON and ``.npz``, no pickle).

        The layout is that of the vector indexes (see :mod:`jp_rerank.index.persist`): the files go into a new
        snapshot folder and ``CURRENT`` is switched to it atomically, so a crash at any point leaves the previous
        index or the new one, never a mix or nothing; the leftovers of an interrupted save are removed by the
        next one. An existing folder is replaced only if it holds a saved BM25 index (or is empty).

        Raises:
            FileExistsError: If ``path`` exists and is not an empty folder or a saved BM25 index.
        """
        from jp_rerank.index.persist import write_snapshot

        target = Path(path)
        if target.exists() and not _replaceable(target):
            raise FileExistsError(f"{target} exists and is not a saved BM25 index; refusing to overwrite it")
        state = self._state
        manifest = {
            "backend": _BACKEND,
            "bm25_format_version": _FORMAT_VERSION,
            "count": len(state.ids),
            "tokenizer": self._tokenizer.name,
            "normalize": self._normalize,
            "k1": self._k1,
            "b": self._b,
            "method": self._method,
            "num_docs": len(state.ids),
            "vocabulary_size": len(state.vocab),
        }

        def write_payload(folder: Path) -> None:
            vocab_list = sorted(state.vocab, key=state.vocab.__getitem__)
            (folder / _IDS).write_text(json.dumps(list(state.ids), ensure_ascii=False), encoding="utf-8")
            (folder / _VOCAB).write_text(json.dumps(vocab_list, ensure_ascii=False), encoding="utf-8")
            with (folder / _ARRAYS).open("wb") as fh:
                np.savez(
                    fh,
                    doc_offsets=state.doc_offsets,
                    doc_tokens=state.doc_tokens,
                    data=state.data,
                    indices=state.indices,
                    indptr=state.indptr,
                )

        write_snapshot(target, manifest, write_payload)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, tokenizer: str | Tokenizer | None = None, verify: bool = True
    ) -> BM25Index:
        """Load an index written by :meth:`save`.

        Args:
            path: The folder given to :meth:`save`.
            tokenizer: Needed only when the index was built with a custom tokenizer object; its ``name`` must
                equal the saved one. By default the saved spec is rebuilt.
            verify: Check the size and SHA-256 of every file first (a damaged file is then an error, never a
                wrong result).

        Returns:
            The index, ready to search and to :meth:`add` to.

        Raises:
            FileNotFoundError: If ``path`` is not a saved index.
            IndexMismatchError: If the folder holds another kind of index or an unsupported BM25 format version,
                or ``tokenizer`` does not match the saved tokenizer name.
            IndexCorruptedError: If a file is missing, truncated, altered or inconsistent (a ``ValueError``).
            ValueError: If the saved custom tokenizer cannot be rebuilt (pass ``tokenizer``).
        """
        from jp_rerank.index.persist import read_snapshot

        root = Path(path)
        snapshot, manifest = read_snapshot(root, verify=verify)
        if manifest.get("backend") != _BACKEND or manifest.get("bm25_format_version") != _FORMAT_VERSION:
            raise IndexMismatchError(
                f"{root} holds a {manifest.get('backend')!r} index of BM25 format version "
                f"{manifest.get('bm25_format_version')!r}; this jp-rerank reads {_BACKEND!r} version {_FORMAT_VERSION}"
            )
        if manifest.get("jp_rerank_version") != __version__:
            logger.warning(
                "BM25 index %s was saved by jp-rerank %s, loading with %s",
                root,
                manifest.get("jp_rerank_version"),
                __version__,
            )
        saved_name = str(manifest["tokenizer"])
        if tokenizer is None:
            try:
                chosen: str | Tokenizer = get_tokenizer(saved_name, normalize=False)
            except ValueError as exc:
                raise ValueError(
                    f"{root} was built with custom tokenizer {saved_name!r}; pass it as tokenizer=..."
                ) from exc
        else:
            chosen = get_tokenizer(tokenizer, normalize=False)
            if chosen.name != saved_name:
                raise IndexMismatchError(f"{root} was built with tokenizer {saved_name!r}, not {chosen.name!r}")
        index = cls(
            chosen,
            k1=float(manifest["k1"]),
            b=float(manifest["b"]),
            method=manifest["method"],
            normalize=bool(manifest["normalize"]),
        )
        try:
            ids = json.loads((snapshot / _IDS).read_text(encoding="utf-8"))
            vocab_list = json.loads((snapshot / _VOCAB).read_text(encoding="utf-8"))
            with np.load(snapshot / _ARRAYS, allow_pickle=False) as arrays:
                state = _State(
                    ids=tuple(str(doc_id) for doc_id in ids),
                    vocab={token: i for i, token in enumerate(vocab_list)},
                    doc_offsets=arrays["doc_offsets"].astype(np.int64),
                    doc_tokens=arrays["doc_tokens"].astype(np.int32),
                    data=arrays["data"].astype(np.float32),
                    indices=arrays["indices"].astype(np.int32),
                    indptr=arrays["indptr"].astype(np.int64),
                )
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:  # ValueError: bad JSON, a pickle
            raise IndexCorruptedError(f"{root}: cannot read the BM25 files of {snapshot.name}: {exc}") from exc
        _check_state(root, state, manifest)
        index._state = state
        return index


def _replaceable(target: Path) -> bool:
    """Whether ``save`` may write into ``target``: an empty folder, or a snapshot folder of a BM25 index."""
    from jp_rerank.index.persist import CURRENT_FILE, read_snapshot

    if not target.is_dir():
        return False
    if not any(target.iterdir()):
        return True
    if not (target / CURRENT_FILE).is_file():
        return False
    try:
        _, manifest = read_snapshot(target, verify=False)
    except IndexCorruptedError:
        return True  # a damaged snapshot folder: replacing it is how it gets repaired
    return manifest.get("backend") == _BACKEND


def _check_state(root: Path, state: _State, manifest: dict[str, Any]) -> None:
    n_docs, n_vocab = len(state.ids), len(state.vocab)
    problems = []
    if n_docs != manifest.get("num_docs") or len(state.doc_offsets) != n_docs + 1:
        problems.append("document count")
    if n_vocab != manifest.get("vocabulary_size") or len(state.indptr) != n_vocab + 1:
        problems.append("vocabulary size")
    if int(state.doc_offsets[-1]) != len(state.doc_tokens) or int(state.indptr[-1]) != len(state.data):
        problems.append("array lengths")
    if len(state.indices) != len(state.data) or len(set(state.ids)) != n_docs:
        problems.append("postings or ids")
    if state.indices.size and (state.indices.min() < 0 or state.indices.max() >= n_docs):
        problems.append("document indices")
    if problems:
        raise IndexCorruptedError(f"{root}: saved BM25 index is inconsistent ({', '.join(problems)})")
