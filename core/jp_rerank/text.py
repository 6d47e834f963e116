"""Japanese text normalisation, sentence splitting and character-window chunking.

The same normalisation is applied to queries and documents so the two sides always match.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from jp_rerank.defaults import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE

__all__ = ["chunk_text", "normalize_text", "split_sentences"]

_SPACE_RE = re.compile(r"[\s\u3000]+")
# Control characters except tab/newline (normalised to spaces afterwards anyway), zero-width characters, and lone
# surrogates (not encodable as UTF-8, e.g. from ``json.loads('"\\ud800"')``).
_CONTROL_RE = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u200b\ufeff\ud800-\udfff]")
_SENTENCE_END_RE = re.compile(r"(?<=[。！？!?．])|(?<=\n)")


def normalize_text(text: str, *, nfkc: bool = True) -> str:
    r"""Normalise Japanese text: NFKC, control/zero-width characters and lone surrogates to spaces, fold whitespace.

    NFKC maps half-width katakana to full-width and full-width ASCII to ASCII, so ``ｶﾀｶﾅ`` and ``カタカナ``
    (or ``ＡＢＣ`` and ``ABC``) compare equal. Runs of whitespace (including the ideographic space U+3000)
    become one ASCII space and the ends are stripped.

    Args:
        text: Input text.
        nfkc: Apply Unicode NFKC normalisation (default ``True``).

    Returns:
        The normalised text (possibly empty).

    Raises:
        TypeError: If ``text`` is not a ``str``.

    Example:
        >>> normalize_text("ﾃｽﾄ　ＡＢＣ\t１２３ ")
        'テスト ABC 123'
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    if nfkc:
        text = unicodedata.normalize("NFKC", text)
    text = _CONTROL_RE.sub(" ", text)
    return _SPACE_RE.sub(" ", text).strip()


def split_sentences(text: str) -> list[str]:
    """Split Japanese text into sentences after 。！？!? and newlines, keeping the punctuation.

    No character is lost: ``"".join(split_sentences(t)) == t``.

    Example:
        >>> split_sentences("今日は晴れ。明日は雨！")
        ['今日は晴れ。', '明日は雨！']
    """
    return [s for s in _SENTENCE_END_RE.split(text) if s]


def iter_windows(length: int, window: int, stride: int) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` spans of at most ``window`` items stepping by ``stride``, covering ``length``.

    Example:
        >>> list(iter_windows(10, 4, 3))
        [(0, 4), (3, 7), (6, 10)]
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be positive, got window={window}, stride={stride}")
    if length <= window:
        yield (0, length)
        return
    start = 0
    while True:
        end = min(start + window, length)
        yield (start, end)
        if end >= length:
            return
        start += stride


def chunk_text(text: str, *, size: int = DEFAULT_CHUNK_SIZE, overlap: int = DEFAULT_CHUNK_OVERLAP) -> list[str]:
    """Split ``text`` into chunks of at most ``size`` characters, preferring sentence boundaries.

    Sentences are packed greedily; a sentence longer than ``size`` is cut into character windows that overlap
    by ``overlap`` characters. Chunks concatenated without their overlaps give back the text exactly.

    Args:
        text: Text to split.
        size: Maximum characters per chunk.
        overlap: Characters repeated between consecutive windows of an over-long sentence (``< size``).

    Returns:
        The chunks; ``[]`` for an empty text.

    Raises:
        ValueError: If ``size <= 0`` or ``overlap`` is not in ``[0, size)``.

    Example:
        >>> chunk_text("一文目。二文目。", size=5, overlap=0)
        ['一文目。', '二文目。']
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size), got {overlap}")
    chunks: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        if len(current) + len(sentence) <= size:
            current += sentence
            continue
        if current:
            chunks.append(current)
            current = ""
        if len(sentence) <= size:
            current = sentence
            continue
        for start, end in iter_windows(len(sentence), size, size - overlap):
            chunks.append(sentence[start:end])
    if current:
        chunks.append(current)
    return chunks
