"""BM25 retrieval over Japanese tokens: the index (building, searching, saving), scored by ``bm25s`` weights.

How documents are scored is in :mod:`jp_rerank.lexical.bm25_scoring`; how the index is stored, in
:mod:`jp_rerank.lexical.bm25_store`.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from jp_rerank._pickling import FreshOnCopy
from jp_rerank.checks import (
    DEFAULT_MAX_CHARS,
    check_ids,
    check_metadatas,
    check_optional_positive_int,
    check_positive_int,
    check_texts,
)
from jp_rerank.defaults import DEFAULT_BM25_TOKENIZER, DEFAULT_K
from jp_rerank.errors import IndexMismatchError
from jp_rerank.hits import SearchHit
from jp_rerank.lexical.bm25_scoring import BM25Method, bm25_weights, score_block, search_tokens
from jp_rerank.lexical.bm25_store import BM25State, empty_state, read_state, write_state
from jp_rerank.lexical.tokenizers import Tokenizer, get_tokenizer, prepare_text
from jp_rerank.types import MetadataValue

__all__ = [
    "DEFAULT_B",
    "DEFAULT_K1",
    "DEFAULT_METHOD",
    "DEFAULT_TOKENIZER",
    "BM25Index",
]

DEFAULT_TOKENIZER = DEFAULT_BM25_TOKENIZER
"""Default tokenizer (see :data:`jp_rerank.defaults.DEFAULT_BM25_TOKENIZER`)."""
DEFAULT_K1 = 0.9
"""Term-frequency saturation (Anserini's default; better than 1.2–1.5 on JSQuAD, see the benchmark)."""
DEFAULT_B = 0.4
"""Document-length normalisation (Anserini's default)."""
DEFAULT_METHOD: BM25Method = "lucene"
"""BM25 variant (see :mod:`jp_rerank.lexical.bm25_scoring`)."""


def _check_float(value: object, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return float(value)


class BM25Index(FreshOnCopy):
    """BM25 index over Japanese text with a pluggable tokenizer.

    Documents are tokenised (MeCab lemmas without particles by default), indexed with ``bm25s`` and searched
    by query. Only documents sharing at least one weighted token with the query are returned, so a query with
    no known token returns ``[]``. Documents without any token are indexed (they count in ``len`` and in the
    average length) but never match. The index keeps each passage's id, text and metadata, so it is a first
    stage by itself (:class:`~jp_rerank.hits.FirstStage`): hits are :class:`~jp_rerank.hits.SearchHit` objects
    ordered by score, ties by ascending id.

    Args:
        tokenizer: A spec such as ``"mecab"``, ``"mecab-surface+func"``, ``"sudachi"``, ``"char2"``,
            ``"char1-2"`` (see :func:`~jp_rerank.lexical.get_tokenizer`) or a :class:`Tokenizer` object.
        k1: Term-frequency saturation, ``>= 0``.
        b: Length normalisation, in ``[0, 1]``.
        method: BM25 variant: ``"lucene"``, ``"robertson"`` or ``"atire"`` (see the module docs).
        normalize_text: Pass every text through :func:`~jp_rerank.lexical.prepare_text` (NFKC, lower case)
            before the tokenizer (a tokenizer built from a spec then skips its own normalisation). Queries and
            documents always go through the same steps.
        name: Name of this first stage (the key of its scores in fused results).
        max_chars: Most characters of one query (default 1,000,000, also after NFKC; ``None``: no cap); a longer
            query raises ``ValueError`` (documents have no cap: long ones are tokenised in pieces).

    Raises:
        ValueError: If a parameter is out of range or the tokenizer spec is unknown.

    Example:
        >>> index = BM25Index().index(["東京は日本の首都です。", "大阪はたこ焼きで有名です。"], ids=["tokyo", "osaka"])
        >>> [hit.id for hit in index.search("日本の首都はどこ？")]
        ['tokyo']
    """

    _fresh_on_copy: ClassVar[dict[str, Callable[[], Any]]] = {"_write_lock": threading.Lock}

    def __init__(
        self,
        tokenizer: str | Tokenizer = DEFAULT_TOKENIZER,
        *,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        method: BM25Method = DEFAULT_METHOD,
        normalize_text: bool = True,
        name: str = "bm25",
        max_chars: int | None = DEFAULT_MAX_CHARS,
    ) -> None:
        if method not in ("lucene", "robertson", "atire"):
            raise ValueError(f"method must be 'lucene', 'robertson' or 'atire', got {method!r}")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self._k1 = _check_float(k1, "k1", 0.0, math.inf)
        self._b = _check_float(b, "b", 0.0, 1.0)
        self._method: BM25Method = method
        self._normalize_text = bool(normalize_text)
        self._name = name
        self._max_chars = check_optional_positive_int(max_chars, name="max_chars")
        # The index normalises texts itself, so tokenizers it builds from a spec skip that step.
        self._tokenizer = get_tokenizer(tokenizer, normalize_text=False) if isinstance(tokenizer, str) else tokenizer
        get_tokenizer(self._tokenizer)  # type check of a tokenizer object
        self._state = empty_state()
        self._write_lock = threading.Lock()

    # ------------------------------------------------------------------ properties
    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer (it receives text already prepared when ``normalize_text`` is on)."""
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
    def normalize_text(self) -> bool:
        """Whether texts are NFKC-normalised and lower-cased before tokenising."""
        return self._normalize_text

    @property
    def name(self) -> str:
        """Name of this first stage."""
        return self._name

    @property
    def ids(self) -> tuple[str, ...]:
        """Document ids in index order."""
        return self._state.ids

    @property
    def texts(self) -> tuple[str, ...]:
        """Document texts in index order."""
        return self._state.texts

    @property
    def vocabulary_size(self) -> int:
        """Number of distinct tokens in the indexed documents."""
        return len(self._state.vocab)

    def __len__(self) -> int:
        return len(self._state.ids)

    def __repr__(self) -> str:
        return (
            f"BM25Index(tokenizer={self._tokenizer.name!r}, k1={self._k1}, b={self._b}, "
            f"method={self._method!r}, normalize_text={self._normalize_text}, documents={len(self)})"
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
        tokens = self._tokenizer(prepare_text(text) if self._normalize_text else text)
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise TypeError(f"tokenizer {self._tokenizer.name!r} must return a list of str")
        return tokens

    # ------------------------------------------------------------------ building
    def index(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
        *,
        tokens: Iterable[Sequence[str]] | None = None,
    ) -> BM25Index:
        """Replace the contents of the index with ``texts``.

        Args:
            texts: Documents to index (empty strings allowed).
            ids: One unique id per text; defaults to the positions ``"0"``, ``"1"``, ...
            metadatas: One flat mapping per text (checked and copied, as the vector indexes require).
            tokens: The tokens of each text as :meth:`tokenize` gives them, computed elsewhere (in worker
                processes, say: tokenising is most of the work), one list per text in order; an iterator is
                consumed one list at a time, so a caller can free each once taken. Default: tokenised here. They
                must come from an index with this tokenizer and normalisation, or searches will not match.

        Returns:
            This index, for chaining.

        Raises:
            TypeError: If ``texts`` is not a sequence of ``str`` (the message names the first bad position),
                an id is not a ``str`` or a metadata value has an unsupported type.
            ValueError: If ``ids`` or ``metadatas`` has the wrong length or an id is empty or repeated.
        """
        with self._write_lock:
            self._state = self._extend(empty_state(), texts, ids, metadatas, tokens)
        return self

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
    ) -> list[str]:
        """Append documents (same arguments and errors as :meth:`index`); returns their ids.

        BM25 statistics (idf, average length) depend on the whole corpus, so each call rebuilds the weights of
        every document: prefer one call with many texts to many calls with one. Default ids continue the
        positions (``str(len(index))``, ...). Nothing changes when an error is raised.

        Example:
            >>> BM25Index("char2").index(["東京"]).add(["大阪", "京都"])
            ['1', '2']
        """
        with self._write_lock:
            start = len(self._state.ids)
            self._state = self._extend(self._state, texts, ids, metadatas)
            return list(self._state.ids[start:])

    def _extend(
        self,
        state: BM25State,
        texts: Sequence[str],
        ids: Sequence[str] | None,
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None,
        tokens: Iterable[Sequence[str]] | None = None,
    ) -> BM25State:
        items = check_texts(texts, name="texts")
        given = None if tokens is None else iter(tokens)
        start = len(state.ids)
        if ids is None:
            new_ids = [str(start + i) for i in range(len(items))]
        else:
            new_ids = check_ids(ids)
            if len(new_ids) != len(items):
                raise ValueError(f"got {len(items)} texts but {len(new_ids)} ids")
        metas = check_metadatas(metadatas, len(items))
        stored = set(state.ids)
        for doc_id in new_ids:
            if doc_id in stored:
                raise ValueError(f"duplicate document id {doc_id!r}")
        if not items:
            return state
        vocab = dict(state.vocab)
        new_tokens: list[int] = []
        lengths: list[int] = []
        for i, text in enumerate(items):
            words = self.tokenize(text) if given is None else _token_list(next(given, None), i, len(items))
            new_tokens.extend(vocab.setdefault(token, len(vocab)) for token in words)
            lengths.append(len(words))
        if given is not None and next(given, None) is not None:
            raise ValueError(f"got more token lists than the {len(items)} texts")
        doc_tokens = np.concatenate([state.doc_tokens, np.asarray(new_tokens, dtype=np.int32)])
        doc_offsets = np.concatenate([state.doc_offsets, state.doc_offsets[-1] + np.cumsum(lengths, dtype=np.int64)])
        data, indices, indptr = bm25_weights(
            vocab, doc_offsets, doc_tokens, k1=self._k1, b=self._b, method=self._method
        )
        return BM25State(
            ids=(*state.ids, *new_ids),
            texts=(*state.texts, *items),
            metadatas=(*state.metadatas, *metas),
            vocab=vocab,
            doc_offsets=doc_offsets,
            doc_tokens=doc_tokens,
            data=data,
            indices=indices,
            indptr=indptr,
        )

    # ------------------------------------------------------------------ scoring
    def _query_token_ids(self, state: BM25State, query: str) -> list[int]:
        return [state.vocab[token] for token in self.tokenize(query) if token in state.vocab]

    def search(self, query: str, k: int = DEFAULT_K) -> list[SearchHit]:
        """Return the ``k`` best documents for ``query``.

        Args:
            query: Query text.
            k: Maximum number of hits; larger than the index returns every matching document.

        Returns:
            Hits sorted by score descending, ties by ascending id; ``[]`` when the query has no token known to
            the index (including an empty query) or the index is empty.

        Raises:
            TypeError: If ``query`` is not a ``str`` or ``k`` not an ``int``.
            ValueError: If ``k <= 0``.

        Example:
            >>> index = BM25Index("char2").index(["富士山の標高", "琵琶湖の面積"])
            >>> index.search("富士山は何メートル？", k=5)[0].text
            '富士山の標高'
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        return self.search_many([query], k=k)[0]

    def search_many(self, queries: Sequence[str], k: int = DEFAULT_K) -> list[list[SearchHit]]:
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
            >>> index = BM25Index("char2").index(["富士山の標高", "琵琶湖の面積"], ids=["fuji", "biwa"])
            >>> [[hit.id for hit in hits] for hits in index.search_many(["琵琶湖", "富士山", "なし"])]
            [['biwa'], ['fuji'], []]
        """
        items = check_texts(
            queries, name="queries", max_chars=self._max_chars, nfkc=self._normalize_text, owner="BM25Index"
        )
        check_positive_int(k, name="k")
        state = self._state
        if not items or not state.vocab:
            return [[] for _ in items]
        token_ids = [self._query_token_ids(state, query) for query in items]
        return search_tokens(state, token_ids, k)

    def score(self, query: str, documents: Iterable[int | str]) -> list[float]:
        """Score given documents for ``query`` (e.g. candidates from another retriever).

        Args:
            query: Query text.
            documents: Document ids (``str``) or positions in index order (``int``), in any order, repeats allowed.

        Returns:
            One score per document, in the given order; ``0.0`` for documents that do not match.

        Raises:
            TypeError: If ``query`` is not a ``str`` or a document is neither a ``str`` id nor an ``int``.
            KeyError: If an id is not in the index.
            IndexError: If a position is outside ``[0, len(index))`` (names its position).

        Example:
            >>> index = BM25Index("char2").index(["富士山の標高", "琵琶湖の面積"], ids=["fuji", "biwa"])
            >>> [s > 0 for s in index.score("富士山", ["biwa", "fuji"])]
            [False, True]
        """
        state = self._state
        position_of: dict[str, int] | None = None
        positions: list[int] = []
        for i, value in enumerate(documents):
            if isinstance(value, str):
                if position_of is None:
                    position_of = {doc_id: p for p, doc_id in enumerate(state.ids)}
                if value not in position_of:
                    raise KeyError(f"documents[{i}] = {value!r} is not an id in the index")
                positions.append(position_of[value])
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"documents[{i}] must be a str id or an int position, got {type(value).__name__}")
            if not 0 <= value < len(state.ids):
                raise IndexError(f"documents[{i}] = {value} is outside the index of {len(state.ids)} documents")
            positions.append(int(value))
        token_ids = self._query_token_ids(state, query)
        if not positions:
            return []
        if not token_ids:
            return [0.0] * len(positions)
        row = score_block(state, [token_ids]).toarray()[0]
        return [float(row[i]) for i in positions]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to the folder ``path`` as an atomic, checksummed snapshot (JSON and ``.npz``, no pickle).

        The layout is that of the vector indexes (see :mod:`jp_rerank.snapshots`): the files go into a new
        snapshot folder and ``CURRENT`` is switched to it atomically, so a crash at any point leaves the previous
        index or the new one, never a mix or nothing. An existing folder is replaced only if it holds a saved
        BM25 index (or is empty).

        Returns:
            The snapshot folder that was written.

        Raises:
            FileExistsError: If ``path`` exists and is not an empty folder or a saved BM25 index.
        """
        settings = {
            "tokenizer": self._tokenizer.name,
            "normalize": self._normalize_text,
            "k1": self._k1,
            "b": self._b,
            "method": self._method,
            "name": self._name,
        }
        return write_state(Path(path), self._state, settings)

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
        root = Path(path)
        state, manifest = read_state(root, verify=verify)
        saved_name = str(manifest["tokenizer"])
        if tokenizer is None:
            try:
                chosen: str | Tokenizer = get_tokenizer(saved_name, normalize_text=False)
            except ValueError as exc:
                raise ValueError(
                    f"{root} was built with custom tokenizer {saved_name!r}; pass it as tokenizer=..."
                ) from exc
        else:
            chosen = get_tokenizer(tokenizer, normalize_text=False)
            if chosen.name != saved_name:
                raise IndexMismatchError(f"{root} was built with tokenizer {saved_name!r}, not {chosen.name!r}")
        index = cls(
            chosen,
            k1=float(manifest["k1"]),
            b=float(manifest["b"]),
            method=manifest["method"],
            normalize_text=bool(manifest["normalize"]),
            name=str(manifest.get("name") or "bm25"),
        )
        index._state = state
        return index


def _token_list(tokens: object, i: int, n: int) -> list[str]:
    if tokens is None:
        raise ValueError(f"got {n} texts but only {i} token lists")
    if isinstance(tokens, str) or not isinstance(tokens, Sequence) or not all(isinstance(t, str) for t in tokens):
        raise TypeError(f"tokens[{i}] must be a list of str")
    return list(tokens)
