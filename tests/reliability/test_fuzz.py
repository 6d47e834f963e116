"""Fuzzing (hypothesis) of text normalisation, sentence splitting, chunking and the BM25 tokenizers.

Properties: nothing raises on arbitrary Unicode (lone surrogates, controls, combining marks, emoji, astral
characters included); normalised text is clean and encodable; splitting and chunking lose no characters.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jp_rerank.lexical import BM25Index, Tokenizer, get_tokenizer
from jp_rerank.text import chunk_text, iter_windows, normalize_text, split_sentences

pytestmark = pytest.mark.timeout(300)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that matter for Japanese text, mixed into otherwise arbitrary Unicode (surrogates included).
_JAPANESE_ISH = list(
    "あいうえおアイウエオｱｲｳｴｵﾞﾟ漢字東京都ＡＢＣａｂｃ１２３。、！？!?．・「」ー〜 \u3000\t\n\r\x00\x1f\x7f\x85"
    "\u200b\u200d\ufeff\u0301\u3099\ufe0f😀🎌👩‍👩‍👧한국어English"
)
ANY_CHAR = st.characters(exclude_categories=())  # every code point, lone surrogates (Cs) included
TEXT = st.text(st.one_of(ANY_CHAR, st.sampled_from(_JAPANESE_ISH)), max_size=300)

_BAD_IN_OUTPUT = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b\ufeff\ud800-\udfff]")


@FUZZ
@given(TEXT)
def test_normalize_text_never_raises_and_returns_clean_text(text: str) -> None:
    out = normalize_text(text)
    assert isinstance(out, str)
    assert out == out.strip()
    assert "  " not in out
    assert not _BAD_IN_OUTPUT.search(out)
    out.encode("utf-8")  # always encodable (lone surrogates are replaced)
    assert normalize_text(text, nfkc=False).encode("utf-8") is not None


@FUZZ
@given(TEXT)
def test_normalize_text_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@FUZZ
@given(TEXT)
def test_split_sentences_keeps_every_character(text: str) -> None:
    parts = split_sentences(text)
    assert "".join(parts) == text
    assert all(parts)


def covers_with_overlaps(text: str, chunks: list[str], overlap: int) -> bool:
    """Whether ``chunks`` are substrings of ``text`` in order, each starting at most ``overlap`` characters before
    the end of the previous one and never after it, the last one ending at the end of ``text``."""
    reachable = {0}
    for chunk in chunks:
        nxt = set()
        for cursor in reachable:
            for back in range(min(overlap, cursor) + 1):
                start = cursor - back
                if start + len(chunk) > cursor and text.startswith(chunk, start):
                    nxt.add(start + len(chunk))
        if not nxt:
            return False
        reachable = nxt
    return len(text) in reachable


@FUZZ
@given(TEXT, st.integers(1, 40), st.data())
def test_chunking_loses_no_characters(text: str, size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, size - 1))
    chunks = chunk_text(text, size=size, overlap=overlap)
    assert all(0 < len(c) <= size for c in chunks)
    assert covers_with_overlaps(text, chunks, overlap)
    if not text:
        assert chunks == []
    exact = chunk_text(text, size=size, overlap=0)
    assert "".join(exact) == text  # without overlap, the chunks are a partition of the text


@FUZZ
@given(st.integers(0, 500), st.integers(1, 50), st.data())
def test_iter_windows_cover_the_range_without_gaps(length: int, window: int, data: st.DataObject) -> None:
    stride = data.draw(st.integers(1, window))
    spans = list(iter_windows(length, window, stride))
    assert spans[0][0] == 0
    assert spans[-1][1] == length
    for (s0, e0), (s1, _) in itertools.pairwise(spans):
        assert s1 <= e0  # no gap
        assert s1 > s0
    assert all(0 < e - s <= window for s, e in spans) or length == 0


TOKENIZERS = ["mecab", "mecab-surface+func", "mecab-base", "char2", "char1-3"]


@pytest.fixture(scope="module", params=[*TOKENIZERS, "sudachi"])
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    if request.param.startswith("sudachi"):
        pytest.importorskip("sudachipy")
    return get_tokenizer(str(request.param))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT)
def test_bm25_tokenizers_never_raise(tokenizer: Tokenizer, text: str) -> None:
    tokens = tokenizer(text)
    assert isinstance(tokens, list)
    for token in tokens:
        assert isinstance(token, str)
        assert token.strip() == token
        assert token
        token.encode("utf-8")


def test_tokenizers_handle_100k_characters(tokenizer: Tokenizer) -> None:
    text = "東京都に住んでいます。ﾃｽﾄＡＢＣ😀\x00\ud800한국어 " * 4_000
    tokens = tokenizer(text)
    assert len(tokens) > 4_000


# Valid text: everything but lone surrogates, which every entry point refuses with a clear ValueError.
VALID_TEXT = st.text(st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(_JAPANESE_ISH)), max_size=300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(VALID_TEXT, min_size=1, max_size=8), query=VALID_TEXT)
def test_bm25_index_and_search_never_raise(docs: list[str], query: str) -> None:
    index = BM25Index(tokenizer="mecab").index(docs)
    assert len(index) == len(docs)  # every document is kept, even those with no tokens
    hits = index.search(query, k=len(docs))
    assert len({h.id for h in hits}) == len(hits)
    assert all(h.id in index.ids and h.text == docs[int(h.id)] for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_bm25_index_refuses_lone_surrogates_clearly() -> None:
    with pytest.raises(ValueError, match=r"texts\[1\] contains a lone surrogate U\+D800"):
        BM25Index(tokenizer="mecab").index(["東京", "壊れた\ud800"])


def test_unicode_categories_survive_normalisation() -> None:
    """Letters of every script are kept (only controls, format characters and spacing are touched)."""
    text = "東京ｶﾀｶﾅ한국어Ελληνικάабв١٢٣"
    out = normalize_text(text)
    assert all(unicodedata.category(c)[0] in "LN" for c in out)
    assert len(out) == len(unicodedata.normalize("NFKC", text))
