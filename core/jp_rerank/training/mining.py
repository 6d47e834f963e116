"""Hard negatives from our own first stage, and the candidate lists of the held-out questions.

A reranker learns most from passages the first stage ranks high but that do not answer the question. For each
question, :func:`mine_hard_negatives` searches the passage pool with Japanese BM25, a dense embedder (with its
query/document prompts) or both fused by reciprocal rank (``"hybrid"``), then drops candidates that are likely
**false negatives** before taking the best remaining ones:

* the positives themselves, and passages equal to one after normalisation (NFKC, whitespace);
* near-duplicates of a positive: passages whose character bigrams are at least ``max_overlap`` contained in a
  positive's (or the other way round);
* passages scored almost as high as the best positive by the first stage: a score of at least
  ``(1 - relative_margin) x`` the positive's (the "95% of the positive" rule of NV-Retriever). BM25 scores are
  used for ``"bm25"``, cosine similarities for ``"dense"`` and ``"hybrid"``.

``random_negatives`` easy negatives drawn at random from the pool may be added too. Questions that already carry
enough negatives (e.g. a mined set saved earlier with :func:`~jp_rerank.training.save_jsonl`) are not mined again.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from jp_rerank.defaults import MINING_BM25_TOKENIZER
from jp_rerank.text import normalize_text
from jp_rerank.training.trainingset import TrainingSet, TrainQuery

if TYPE_CHECKING:
    import numpy as np

    from jp_rerank.embed import Embedder

__all__ = ["CorpusSearcher", "FirstStageName", "MiningStats", "mine_hard_negatives"]

logger = logging.getLogger(__name__)

FirstStageName = Literal["bm25", "dense", "hybrid"]
"""First stages that mine negatives and find held-out candidates."""

_RRF_K = 60
_QUERY_BLOCK = 256


@lru_cache(maxsize=65536)
def _bigrams(text: str) -> frozenset[str]:
    t = normalize_text(text).replace(" ", "")
    return frozenset(t[i : i + 2] for i in range(len(t) - 1)) if len(t) > 1 else frozenset([t])


def _containment(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


class CorpusSearcher:
    """Search a passage pool with Japanese BM25, a dense embedder, or both (reciprocal-rank fusion).

    Args:
        ids: Passage ids.
        texts: Passage texts, one per id.
        method: ``"bm25"``, ``"dense"`` or ``"hybrid"``.
        bm25: BM25 tokenizer spec (``"char1-2"``, ``"mecab"``...; see :class:`jp_rerank.BM25Index`).
        embedder: Dense embedder (object, alias, hub id or local path), required for ``"dense"`` and
            ``"hybrid"``; its query/document prompts are applied.

    Example:
        >>> s = CorpusSearcher(["a", "b"], ["富士山の標高は3776m", "琵琶湖は日本一の湖"], method="bm25")
        >>> [doc_id for doc_id, _ in s.search(["富士山の高さ"], 1)[0]]
        ['a']
    """

    def __init__(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        *,
        method: FirstStageName = "bm25",
        bm25: str = MINING_BM25_TOKENIZER,
        embedder: Embedder | str | None = None,
    ) -> None:
        if method not in ("bm25", "dense", "hybrid"):
            raise ValueError(f"first stage must be bm25, dense or hybrid, got {method!r}")
        if method != "bm25" and embedder is None:
            raise ValueError(f"the {method!r} first stage needs an embedder (a dense model alias, hub id or path)")
        if len(ids) != len(texts) or not texts:
            raise ValueError(f"need one id per text and at least one passage, got {len(ids)} ids, {len(texts)} texts")
        self.ids = list(ids)
        self.texts = list(texts)
        self.method: FirstStageName = method
        self.position = {doc_id: i for i, doc_id in enumerate(self.ids)}
        self._bm25: Any = None
        self._embedder: Any = None
        self._doc_vectors: np.ndarray | None = None
        if method in ("bm25", "hybrid"):
            from jp_rerank.lexical import BM25Index

            logger.info("indexing %d passages with BM25 (%s)", len(self.texts), bm25)
            self._bm25 = BM25Index(bm25).index(self.texts, ids=[str(i) for i in range(len(self.texts))])
        if method in ("dense", "hybrid"):
            from jp_rerank.embed import Embedder

            self._embedder = embedder if isinstance(embedder, Embedder) else Embedder(embedder)  # type: ignore[arg-type]
            logger.info("embedding %d passages with %s", len(self.texts), self._embedder.model_id)
            self._doc_vectors = self._embed(self.texts, side="document")

    def _embed(self, texts: list[str], *, side: Literal["query", "document"]) -> np.ndarray:
        import numpy as np
        from tqdm.auto import tqdm

        blocks = []
        step = 512
        with tqdm(total=len(texts), desc=f"embedding {side}s", unit="text", disable=len(texts) < 2 * step) as bar:
            for i in range(0, len(texts), step):
                chunk = texts[i : i + step]
                blocks.append(
                    self._embedder.embed_documents(chunk) if side == "document" else self._embedder.embed_queries(chunk)
                )
                bar.update(len(chunk))
        return np.concatenate(blocks, axis=0) if blocks else np.zeros((0, 1), dtype=np.float32)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Return up to ``k`` ``(passage id, score)`` per query, best first."""
        return [[(self.ids[i], s) for i, s in hits] for hits in self._search_positions(list(queries), k)[0]]

    def _search_positions(self, queries: list[str], k: int) -> tuple[list[list[tuple[int, float]]], np.ndarray | None]:
        """Hits as ``(position, score)`` plus the query vectors (dense and hybrid)."""
        import numpy as np

        k = min(k, len(self.texts))
        lexical: list[list[tuple[int, float]]] | None = None
        dense: list[list[tuple[int, float]]] | None = None
        qvec: np.ndarray | None = None
        if self._bm25 is not None:
            lexical = [[(int(h.id), float(h.score)) for h in hits] for hits in self._bm25.search_many(queries, k)]
        if self._doc_vectors is not None:
            qvec = self._embed(queries, side="query")
            sims = qvec @ self._doc_vectors.T
            top = (
                np.argpartition(-sims, k - 1, axis=1)[:, :k]
                if k < sims.shape[1]
                else np.tile(np.arange(k), (len(queries), 1))
            )
            dense = []
            for row, cand in zip(sims, top, strict=True):
                order = sorted(cand.tolist(), key=lambda j: (-row[j], j))
                dense.append([(j, float(row[j])) for j in order])
        if lexical is not None and dense is not None:
            fused = []
            for lex, den in zip(lexical, dense, strict=True):
                totals: dict[int, float] = {}
                for ranking in (lex, den):
                    for rank, (j, _) in enumerate(ranking, 1):
                        totals[j] = totals.get(j, 0.0) + 1.0 / (_RRF_K + rank)
                fused.append(sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:k])
            return fused, qvec
        hits = lexical if lexical is not None else dense
        assert hits is not None
        return hits, qvec

    def margin_scores(self, query: str, positions: Sequence[int], qvec: np.ndarray | None) -> list[float]:
        """Scores used by the false-negative margin: BM25 for ``"bm25"``, cosine otherwise."""
        if self._doc_vectors is not None and qvec is not None:
            return [float(v) for v in self._doc_vectors[list(positions)] @ qvec]
        return list(self._bm25.score(query, [int(p) for p in positions]))


@dataclass
class MiningStats:
    """What mining did.

    Attributes:
        method: The first stage used.
        queries_mined: Questions that were searched (those without enough negatives already).
        hard_negatives: Hard negatives added.
        random_negatives: Random negatives added.
        dropped_duplicates: Candidates dropped as positives or near-duplicates of one.
        dropped_margin: Candidates dropped by the score margin.
        short: Questions that got fewer hard negatives than asked.
        settings: The mining settings.

    Example:
        >>> MiningStats(method="bm25", hard_negatives=3).as_dict()["hard_negatives"]
        3
    """

    method: str = ""
    queries_mined: int = 0
    hard_negatives: int = 0
    random_negatives: int = 0
    dropped_duplicates: int = 0
    dropped_margin: int = 0
    short: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "method": self.method,
            "queries_mined": self.queries_mined,
            "hard_negatives": self.hard_negatives,
            "random_negatives": self.random_negatives,
            "dropped_duplicates": self.dropped_duplicates,
            "dropped_margin": self.dropped_margin,
            "short": self.short,
            "settings": dict(self.settings),
        }


@dataclass(frozen=True)
class _Rules:
    """The mining settings (checked on construction)."""

    num_negatives: int
    random_negatives: int
    depth: int
    relative_margin: float | None
    max_overlap: float
    sampling: Literal["top", "random"]

    def __post_init__(self) -> None:
        if self.num_negatives < 0 or self.random_negatives < 0:
            raise ValueError("num_negatives and random_negatives must be >= 0")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if self.relative_margin is not None and not 0.0 <= self.relative_margin < 1.0:
            raise ValueError(f"relative_margin must be in [0, 1) or None, got {self.relative_margin}")
        if not 0.0 < self.max_overlap <= 1.0:
            raise ValueError(f"max_overlap must be in (0, 1], got {self.max_overlap}")
        if self.sampling not in ("top", "random"):
            raise ValueError(f"sampling must be 'top' or 'random', got {self.sampling!r}")


def mine_hard_negatives(
    training_set: TrainingSet,
    *,
    searcher: CorpusSearcher | None = None,
    first_stage: FirstStageName = "bm25",
    bm25: str = MINING_BM25_TOKENIZER,
    embedder: Embedder | str | None = None,
    num_negatives: int = 3,
    random_negatives: int = 1,
    depth: int = 30,
    relative_margin: float | None = 0.05,
    max_overlap: float = 0.9,
    sampling: Literal["top", "random"] = "top",
    seed: int = 42,
) -> tuple[TrainingSet, MiningStats]:
    """Add hard (and random) negatives to every question that has fewer than asked.

    Args:
        training_set: The questions; their pool (:attr:`TrainingSet.corpus`) is searched.
        searcher: A prebuilt :class:`CorpusSearcher` over that pool (built from the other arguments if ``None``).
        first_stage: ``"bm25"``, ``"dense"`` or ``"hybrid"``.
        bm25: BM25 tokenizer spec.
        embedder: Dense embedder for ``"dense"`` / ``"hybrid"``.
        num_negatives: Hard negatives per question.
        random_negatives: Random negatives per question, added after the hard ones.
        depth: How many first-stage candidates to consider per question.
        relative_margin: Drop candidates scoring at least ``(1 - relative_margin)`` x the best positive's score
            (``None`` turns the check off). Skipped for a question whose positive scores zero.
        max_overlap: Drop candidates whose character-bigram containment with a positive is at least this.
        sampling: ``"top"`` takes the best remaining candidates; ``"random"`` draws among them.
        seed: Seed of random choices (per question, so results do not depend on question order).

    Returns:
        The set with negatives added (given negatives are kept first), and what was done.

    Raises:
        ValueError: On a bad setting.

    Example:
        >>> ts = TrainingSet.from_pairs(
        ...     [("富士山の高さは？", "富士山の高さは3776mです。")],
        ...     corpus=["富士山の麓には湖がある。", "琵琶湖は日本一大きい湖。", "東京タワーの高さは333m。"],
        ... )
        >>> mined, stats = mine_hard_negatives(ts, num_negatives=1, random_negatives=0)
        >>> mined.queries[0].negatives
        ('富士山の麓には湖がある。',)
    """
    rules = _Rules(num_negatives, random_negatives, depth, relative_margin, max_overlap, sampling)
    method = first_stage if searcher is None else searcher.method
    settings = {"first_stage": method, "bm25": bm25, "embedder": getattr(embedder, "model_id", embedder)}
    stats = MiningStats(method=method, settings={**settings, **asdict(rules), "seed": seed})
    wanted = num_negatives + random_negatives
    todo = [i for i, q in enumerate(training_set.queries) if len(q.negatives) < wanted]
    if not todo or wanted == 0:
        logger.info("no mining needed: every question already has %d negatives", wanted)
        return training_set, stats
    if searcher is None and num_negatives > 0:
        ids = list(training_set.corpus)
        texts = [training_set.corpus[i] for i in ids]
        searcher = CorpusSearcher(ids, texts, method=first_stage, bm25=bm25, embedder=embedder)
    pool = searcher.texts if searcher is not None else list(training_set.corpus.values())
    logger.info(
        "mining %d hard + %d random negatives for %d questions (%s, depth %d)",
        num_negatives,
        random_negatives,
        len(todo),
        method,
        depth,
    )
    out = _Miner(rules, searcher, pool, stats, seed).mine_all(training_set.queries, todo)
    return training_set.with_queries(out), stats


class _Miner:
    """Mines the negatives of one question at a time, counting what it does in ``stats``."""

    def __init__(
        self, rules: _Rules, searcher: CorpusSearcher | None, pool: list[str], stats: MiningStats, seed: int
    ) -> None:
        self.rules = rules
        self.searcher = searcher
        self.pool = pool
        self.position = {text: i for i, text in enumerate(pool)}
        self.stats = stats
        self.seed = seed

    def mine_all(self, queries: Sequence[TrainQuery], todo: list[int]) -> list[TrainQuery]:
        """``queries`` with the questions at positions ``todo`` mined, in blocks searched at once."""
        from tqdm.auto import tqdm

        out = list(queries)
        with tqdm(total=len(todo), desc="mining negatives", unit="q") as bar:
            for start in range(0, len(todo), _QUERY_BLOCK):
                block = todo[start : start + _QUERY_BLOCK]
                for i, mined in zip(block, self.mine_block([out[i] for i in block]), strict=True):
                    out[i] = mined
                bar.update(len(block))
        self.stats.queries_mined = len(todo)
        logger.info(
            "mined %d hard and %d random negatives; dropped %d duplicates of positives and %d by the score margin; "
            "%d questions got fewer hard negatives than asked",
            self.stats.hard_negatives,
            self.stats.random_negatives,
            self.stats.dropped_duplicates,
            self.stats.dropped_margin,
            self.stats.short,
        )
        return out

    def mine_block(self, queries: list[TrainQuery]) -> list[TrainQuery]:
        """Search a block of questions at once, then mine each."""
        hits: list[list[tuple[int, float]]] = [[] for _ in queries]
        qvecs = None
        if self.searcher is not None and self.rules.num_negatives > 0:
            extra = max(len(q.positives) for q in queries)  # the positives themselves do not count to the depth
            hits, qvecs = self.searcher._search_positions([q.query for q in queries], self.rules.depth + extra)
        return [self.mine(q, hits[j], qvecs[j] if qvecs is not None else None) for j, q in enumerate(queries)]

    def mine(self, q: TrainQuery, hits: list[tuple[int, float]], qvec: Any) -> TrainQuery:
        """``q`` with hard negatives from ``hits`` then random ones added after its own."""
        rng = random.Random(f"{self.seed}:{q.qid}:{q.query}")
        taken = list(q.negatives)
        need_hard = max(0, self.rules.num_negatives - len(taken))
        if need_hard:
            eligible = self._eligible(q, hits, qvec, set(taken))
            chosen = (
                eligible[:need_hard]
                if self.rules.sampling == "top"
                else rng.sample(eligible, min(need_hard, len(eligible)))
            )
            self.stats.short += int(len(chosen) < need_hard)
            self.stats.hard_negatives += len(chosen)
            taken.extend(chosen)
        self._add_random(q, taken, rng)
        return TrainQuery(q.query, q.positives, tuple(taken), qid=q.qid, source=q.source)

    def _margin_scores(self, q: TrainQuery, hits: list[tuple[int, float]], qvec: Any) -> tuple[list[float], float]:
        """The candidates' scores for the margin rule and the cap they must stay under (``inf``: no cap)."""
        searcher, margin = self.searcher, self.rules.relative_margin
        if searcher is None or margin is None:
            return [], math.inf
        positions = [self.position[p] for p in q.positives if p in self.position]
        best = max(searcher.margin_scores(q.query, positions, qvec) if positions else [], default=0.0)
        if best <= 0:
            return [], math.inf
        if searcher.method == "bm25":
            return [s for _, s in hits], (1.0 - margin) * best
        return searcher.margin_scores(q.query, [p for p, _ in hits], qvec), (1.0 - margin) * best

    def _eligible(self, q: TrainQuery, hits: list[tuple[int, float]], qvec: Any, taken: set[str]) -> list[str]:
        """Candidates within the depth that are neither taken, a copy of a positive, nor scored like one."""
        scores, cap = self._margin_scores(q, hits, qvec)
        positives = set(q.positives)
        pos_norm = {normalize_text(p) for p in q.positives}
        pos_grams = [_bigrams(p) for p in q.positives]
        eligible: list[str] = []
        considered = 0
        for rank, (position, _) in enumerate(hits):
            text = self.pool[position]
            if text in positives:
                continue  # the positive itself does not count towards the depth
            considered += 1
            if considered > self.rules.depth:
                break
            if text in taken:
                continue
            if normalize_text(text) in pos_norm or any(
                _containment(_bigrams(text), g) >= self.rules.max_overlap for g in pos_grams
            ):
                self.stats.dropped_duplicates += 1
            elif scores and scores[rank] >= cap:
                self.stats.dropped_margin += 1
            else:
                eligible.append(text)
        return eligible

    def _add_random(self, q: TrainQuery, taken: list[str], rng: random.Random) -> None:
        """Append random pool passages to ``taken`` until the question has all its negatives (or tries run out)."""
        positives = set(q.positives)
        pos_norm = {normalize_text(p) for p in q.positives}
        taken_set = set(taken)
        need = max(0, self.rules.num_negatives + self.rules.random_negatives - len(taken))
        tries = 0
        while need and tries < 20 * (need + 1) and len(self.pool) > len(positives) + len(taken_set):
            tries += 1
            text = self.pool[rng.randrange(len(self.pool))]
            if text in positives or text in taken_set or normalize_text(text) in pos_norm:
                continue
            taken.append(text)
            taken_set.add(text)
            self.stats.random_negatives += 1
            need -= 1
