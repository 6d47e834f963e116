"""Turning (query, document) pairs into model inputs: tokenizing, pair template, truncation, windows.

The query is tokenized once per call and never truncated. Documents are tokenized without special tokens and then
joined to the query with the tokenizer's own pair template, which is derived once from the tokenizer itself, so the
ids equal ``tokenizer(query, document, truncation="only_second", max_length=...)`` exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from jp_rerank.lexical.tokenizers import MECAB_MAX_CHARS, split_for_analysis
from jp_rerank.text import iter_windows

__all__ = ["EncodedPair", "EncodedRequest", "Overflow", "PairEncoder", "PairTemplate"]

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
    n_special: int = field(init=False, repr=False, compare=False)
    """Number of special tokens added around a pair."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_special", len(self.prefix) + len(self.middle) + len(self.suffix))

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
        return self.encode_request([query], [list(documents)], overflow="truncate", overlap=0).items

    def encode_request(
        self, queries: list[str], doc_lists: list[list[str]], *, overflow: Overflow, overlap: int
    ) -> EncodedRequest:
        """Encode each query with its own passages; pair ids number the (query, passage) pairs in order.

        A query is tokenized once and never truncated; its passages get the tokens left within ``max_length`` (the
        budget). ``"truncate"`` cuts a longer passage to the budget (passages are cut to 8 characters per budget
        token before tokenizing, and tokenized whole when that left them short). ``"window"`` scores it as windows of
        ``budget`` tokens overlapping by ``overlap``, capped at half a window: a larger overlap would leave almost
        no stride, and the number of windows (the cost) would grow with every token instead of every half window.

        Raises:
            ValueError: If a query alone leaves no room for a passage (queries are never truncated).
        """
        t, out = self.template, EncodedRequest()
        query_ids = self.tokenize(queries)
        budgets = [self.max_length - len(q) - t.n_special for q in query_ids]
        for q_ids, budget in zip(query_ids, budgets, strict=True):
            if budget < 1:
                raise ValueError(
                    f"the query is {len(q_ids)} tokens long, which leaves no room for the document within "
                    f"max_length={self.max_length}; queries are never truncated: shorten the query or raise max_length"
                )
        out.owners = [(qi, di) for qi, docs in enumerate(doc_lists) for di in range(len(docs))]
        docs = [doc for group in doc_lists for doc in group]
        limits = [budgets[qi] for qi, _ in out.owners]
        if overflow == "truncate":
            texts = [doc[: limit * _CHAR_CUT_FACTOR] for doc, limit in zip(docs, limits, strict=True)]
            doc_ids = self.tokenize(texts)
            short = [i for i, text in enumerate(texts) if len(text) < len(docs[i]) and len(doc_ids[i]) <= limits[i]]
            for i, whole in zip(short, self.tokenize([docs[i] for i in short]), strict=True):
                doc_ids[i] = whole  # the cut by characters left it within the budget: tokenize it whole
            out.truncated = sum(len(ids) > limit for ids, limit in zip(doc_ids, limits, strict=True))
        else:
            doc_ids = self.tokenize(docs)
        heads = [(*t.prefix, *q, *t.middle) for q in query_ids]
        for pair, ((qi, _), ids, limit) in enumerate(zip(out.owners, doc_ids, limits, strict=True)):
            head = heads[qi]
            if not ids:  # empty passage: encode exactly as the tokenizer does (some drop the empty segment)
                out.items.append(self._encode_direct(pair, queries[qi], docs[pair], head))
                continue
            if overflow == "truncate" or len(ids) <= limit:
                spans: Iterable[tuple[int, int]] = [(0, limit)]
            else:
                spans = iter_windows(len(ids), limit, limit - min(overlap, limit // 2))
            for start, end in spans:
                tail = (*ids[start:end], *t.suffix)
                types = (t.type_a,) * len(head) + (t.type_b,) * len(tail) if t.uses_token_types else None
                out.items.append(EncodedPair(pair, head + tail, types))
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

    def _encode_direct(self, pair: int, query: str, document: str, head: tuple[int, ...]) -> EncodedPair:
        """Encode with the tokenizer itself (used for empty passages, which some tokenizers drop from the pair)."""
        ids = tuple(self.tokenizer(query, document, truncation="only_second", max_length=self.max_length)["input_ids"])
        t = self.template
        if ids == head + t.suffix:
            return EncodedPair(
                pair, ids, (t.type_a,) * len(head) + (t.type_b,) * len(t.suffix) if t.uses_token_types else None
            )
        return EncodedPair(pair, ids, (0,) * len(ids) if t.uses_token_types else None)
