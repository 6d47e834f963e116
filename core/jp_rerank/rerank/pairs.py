"""Turning (query, document) pairs into model inputs: tokenizing, pair template, truncation, windows, batches.

The query is tokenized once per call and never truncated. Documents are tokenized without special tokens and then
joined to the query with the tokenizer's own pair template, which is derived once from the tokenizer itself, so the
ids equal ``tokenizer(query, document, truncation="only_second", max_length=...)`` exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from jp_rerank.lexical.tokenizers import MECAB_MAX_CHARS, split_for_analysis
from jp_rerank.text import iter_windows

__all__ = ["EncodedPair", "EncodedRequest", "Overflow", "PairEncoder", "PairTemplate", "length_sorted_batches"]

Overflow = Literal["truncate", "window"]
"""What happens to a passage longer than the model's limit: cut it, or score it by its best token window."""

logger = logging.getLogger(__name__)

_PROBE_QUERY = "東京の天気"
_PROBE_DOC = "今日は晴れです"


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of one model input and which (pair, window) it belongs to."""

    pair: int
    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None


@dataclass(frozen=True)
class PairTemplate:
    """How a tokenizer wraps two sequences: ``prefix + A + middle + B + suffix`` and their token type ids."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    type_a: int
    type_b: int
    uses_token_types: bool

    @property
    def n_special(self) -> int:
        """Number of special tokens added around a pair."""
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, *, segment_types: bool = False) -> PairTemplate:
        """Derive the template by encoding a probe pair with and without special tokens.

        Args:
            tokenizer: A transformers tokenizer.
            segment_types: Give the second segment token type 1 even when the tokenizer returns no token type ids.
                transformers 5's ``BertJapaneseTokenizer`` returns none, while BERT cross-encoders (e.g. the
                MeCab-based Japanese rerankers) were trained with type 0 for the query and 1 for the passage.

        Raises:
            ValueError: If the tokenizer's pair encoding is not ``prefix + A + middle + B + suffix``.
        """
        full = tokenizer(_PROBE_QUERY, _PROBE_DOC)
        ids = list(full["input_ids"])
        a = list(tokenizer(_PROBE_QUERY, add_special_tokens=False)["input_ids"])
        b = list(tokenizer(_PROBE_DOC, add_special_tokens=False)["input_ids"])
        returned = "token_type_ids" in getattr(tokenizer, "model_input_names", ()) and "token_type_ids" in full
        types = list(full["token_type_ids"]) if returned else [0] * len(ids)
        uses_types = returned or segment_types
        for p in range(len(ids) - len(a) - len(b) + 1):
            if ids[p : p + len(a)] != a:
                continue
            start_b_min = p + len(a)
            for start_b in range(start_b_min, len(ids) - len(b) + 1):
                if ids[start_b : start_b + len(b)] != b:
                    continue
                first, second = types[:start_b], types[start_b:]
                if len(set(first)) > 1 or len(set(second)) > 1:
                    continue
                return cls(
                    prefix=tuple(ids[:p]),
                    middle=tuple(ids[start_b_min:start_b]),
                    suffix=tuple(ids[start_b + len(b) :]),
                    type_a=first[0] if returned and first else 0,
                    type_b=(second[0] if second else 0) if returned else int(segment_types),
                    uses_token_types=uses_types,
                )
        raise ValueError(f"cannot derive the pair template of tokenizer {type(tokenizer).__name__}")

    def join(self, pair: int, query: Sequence[int], document: Sequence[int]) -> EncodedPair:
        """Build one model input from query ids and (already cut) document ids."""
        first = (*self.prefix, *query, *self.middle)
        second = (*document, *self.suffix)
        types = (self.type_a,) * len(first) + (self.type_b,) * len(second) if self.uses_token_types else None
        return EncodedPair(pair=pair, input_ids=first + second, token_type_ids=types)

    def document_budget(self, query_len: int, max_length: int) -> int:
        """Tokens left for the document once the query and special tokens are placed.

        Raises:
            ValueError: If the query alone leaves no room (the query is never truncated).
        """
        budget = max_length - query_len - self.n_special
        if budget < 1:
            raise ValueError(
                f"the query is {query_len} tokens long, which leaves no room for the document within "
                f"max_length={max_length}; queries are never truncated: shorten the query or raise max_length"
            )
        return budget

    def encode(
        self,
        pair: int,
        query: Sequence[int],
        document: Sequence[int],
        *,
        max_length: int,
        overflow: str,
        overlap: int,
    ) -> list[EncodedPair]:
        """Encode one pair: one input (``"truncate"``) or one input per overlapping window (``"window"``).

        Windows hold ``budget`` document tokens and overlap by ``overlap`` tokens, capped at half a window
        (``budget // 2``): a larger overlap would leave almost no stride, and the number of windows (the cost)
        would grow with every token of the document instead of every half window.

        Example:
            >>> t = PairTemplate(prefix=(0,), middle=(1,), suffix=(2,), type_a=0, type_b=0, uses_token_types=False)
            >>> doc = tuple(range(100, 200))
            >>> len(t.encode(0, (9,), doc, max_length=14, overflow="window", overlap=2))
            13
            >>> len(t.encode(0, (9,), doc, max_length=14, overflow="window", overlap=10**6))  # capped at 5
            19
        """
        budget = self.document_budget(len(query), max_length)
        if overflow == "truncate" or len(document) <= budget:
            return [self.join(pair, query, document[:budget])]
        stride = budget - min(overlap, budget // 2)
        return [self.join(pair, query, document[s:e]) for s, e in iter_windows(len(document), budget, stride)]


def length_sorted_batches(items: Sequence[EncodedPair], *, batch_size: int, token_budget: int) -> Iterator[list[int]]:
    """Yield batches of item positions, longest first, each within ``batch_size`` items and ``token_budget``.

    A batch is padded to its longest item, so ``len(batch) * longest <= token_budget`` (a single item longer than
    the budget still forms its own batch).

    Example:
        >>> from jp_rerank.rerank.pairs import EncodedPair
        >>> xs = [EncodedPair(i, (0,) * n, None) for i, n in enumerate([3, 9, 5])]
        >>> list(length_sorted_batches(xs, batch_size=2, token_budget=100))
        [[1, 2], [0]]
    """
    order = sorted(range(len(items)), key=lambda i: (-len(items[i].input_ids), i))
    batch: list[int] = []
    longest = 0
    for i in order:
        n = len(items[i].input_ids)
        if batch and (len(batch) >= batch_size or (len(batch) + 1) * max(longest, n) > token_budget):
            yield batch
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, n)
    if batch:
        yield batch


_CHAR_CUT_FACTOR = 8  # in truncate mode, tokenize at most this many characters per budget token


@dataclass
class EncodedRequest:
    """The model inputs of one call.

    Attributes:
        items: Every (window of a) pair, tagged with its pair id.
        owners: The (query position, document position) of each pair id.
        truncated: How many passages were cut to fit the limit.
    """

    items: list[EncodedPair] = field(default_factory=list)
    owners: list[tuple[int, int]] = field(default_factory=list)
    truncated: int = 0


@dataclass(frozen=True)
class PairEncoder:
    """Encodes queries with their passages exactly as ``tokenizer(query, passage, truncation="only_second")`` would.

    Attributes:
        tokenizer: The model's tokenizer.
        template: The tokenizer's pair template (:meth:`PairTemplate.from_tokenizer`).
        max_length: Token limit of one (query, passage) input.
    """

    tokenizer: Any
    template: PairTemplate
    max_length: int

    def encode(self, query: str, documents: Sequence[str]) -> list[EncodedPair]:
        """Model inputs of one query's passages, truncated to the limit (for calibration and tests)."""
        q_ids = self.tokenize([query])[0]
        budget = self.template.document_budget(len(q_ids), self.max_length)
        doc_ids, _ = self._encode_documents(list(documents), budget, "truncate")
        return [
            self.template.encode(i, q_ids, d, max_length=self.max_length, overflow="truncate", overlap=0)[0]
            for i, d in enumerate(doc_ids)
            if d
        ]

    def encode_request(
        self, queries: list[str], doc_lists: list[list[str]], *, overflow: Overflow, overlap: int
    ) -> EncodedRequest:
        """Encode each query with its own passages; pair ids number the (query, passage) pairs in order."""
        out = EncodedRequest()
        for qi, (q_ids, docs) in enumerate(zip(self.tokenize(queries), doc_lists, strict=True)):
            budget = self.template.document_budget(len(q_ids), self.max_length)
            doc_ids, over = self._encode_documents(docs, budget, overflow)
            out.truncated += over if overflow == "truncate" else 0
            for di, d_ids in enumerate(doc_ids):
                pair = len(out.owners)
                out.owners.append((qi, di))
                if not d_ids:  # empty passage: encode exactly as the tokenizer does (some drop the empty segment)
                    out.items.append(self._encode_direct(pair, queries[qi], q_ids, docs[di]))
                    continue
                out.items.extend(
                    self.template.encode(
                        pair, q_ids, d_ids, max_length=self.max_length, overflow=overflow, overlap=overlap
                    )
                )
        return out

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens.

        Slow (Python) tokenizers, such as the MeCab/Sudachi-based ``BertJapaneseTokenizer``, get texts longer than
        :data:`~jp_rerank.lexical.tokenizers.MECAB_MAX_CHARS` in pieces cut at sentence ends or spaces
        (:func:`~jp_rerank.lexical.tokenizers.split_for_analysis`): MeCab segfaults on very long inputs and Sudachi
        refuses them. The pieces' ids are concatenated.
        """
        if not texts:
            return []
        if getattr(self.tokenizer, "is_fast", False) or all(len(t) <= MECAB_MAX_CHARS for t in texts):
            encoded = self.tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)
            return [list(ids) for ids in encoded["input_ids"]]
        pieces: list[str] = []
        owners: list[int] = []
        for i, text in enumerate(texts):
            parts = split_for_analysis(text, MECAB_MAX_CHARS) if len(text) > MECAB_MAX_CHARS else [text]
            pieces.extend(parts)
            owners.extend([i] * len(parts))
        out: list[list[int]] = [[] for _ in texts]
        encoded = self.tokenizer(pieces, add_special_tokens=False, truncation=False, verbose=False)
        for i, ids in zip(owners, encoded["input_ids"], strict=True):
            out[i].extend(ids)
        return out

    def _encode_documents(self, docs: list[str], budget: int, overflow: Overflow) -> tuple[list[list[int]], int]:
        """Tokenize documents; in truncate mode long ones are cut by characters first (re-checked afterwards)."""
        if overflow == "window":
            ids = self.tokenize(docs)
            return ids, sum(len(x) > budget for x in ids)
        cut = budget * _CHAR_CUT_FACTOR
        ids = self.tokenize([d[:cut] for d in docs])
        short_after_cut = [i for i, d in enumerate(docs) if len(d) > cut and len(ids[i]) <= budget]
        if short_after_cut:
            for i, full in zip(short_after_cut, self.tokenize([docs[i] for i in short_after_cut]), strict=True):
                ids[i] = full
        return ids, sum(len(x) > budget for x in ids)

    def _encode_direct(self, pair: int, query: str, query_ids: list[int], document: str) -> EncodedPair:
        """Encode with the tokenizer itself (used for empty passages, which some tokenizers drop from the pair)."""
        ids = tuple(self.tokenizer(query, document, truncation="only_second", max_length=self.max_length)["input_ids"])
        joined = self.template.join(pair, query_ids, [])
        if joined.input_ids == ids:
            return joined
        types = (0,) * len(ids) if self.template.uses_token_types else None
        return EncodedPair(pair, ids, types)
