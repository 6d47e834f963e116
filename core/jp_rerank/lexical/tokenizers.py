"""Japanese tokenizers for lexical (BM25) retrieval: MeCab, Sudachi and character n-grams.

Every tokenizer is a callable ``text -> list[str]`` with a ``name`` that :func:`get_tokenizer` turns back into
the same tokenizer, so a saved index can rebuild the tokenizer it was made with.

Behaviour shared by the built-in tokenizers, whatever the input:

* ``""`` (or text without words) gives ``[]``; a non-``str`` input raises ``TypeError``.
* With ``normalize_text=True`` (default) the text goes through :func:`jp_rerank.text.normalize_text` (NFKC, control
  and zero-width characters removed, whitespace folded) and is lower-cased, so ``ﾃｽﾄ`` matches ``テスト`` and
  ``ＡＢＣ`` matches ``abc``.
* Whatever ``normalize_text`` says, control characters (NUL would otherwise cut MeCab's input short) and lone
  surrogates (which cannot be encoded to UTF-8) are treated as whitespace: they separate tokens and never
  appear in one.
* Whitespace, punctuation and symbols (including emoji) are never tokens.
* Instances are safe to call from many threads at once (each thread gets its own MeCab/Sudachi analyser).
* Any length is safe: MeCab crashes the whole process (a segmentation fault) on inputs from about 200,000
  characters, and Sudachi refuses inputs over 49,149 bytes, so long texts are analysed in consecutive pieces of at
  most :data:`MECAB_MAX_CHARS` (MeCab) or 12,000 (Sudachi) characters, cut after a sentence end or at a space
  when there is one in the second half of the piece (:func:`split_for_analysis`). Only a word longer than half a
  piece can be split in two.

Spec strings understood by :func:`get_tokenizer`:

=======================================  ===============================================================
``mecab``                                MeCab (fugashi + unidic-lite), lemmas, particles/auxiliaries dropped
``mecab-surface`` / ``-base`` / ``-lemma``  surface forms / orthographic base forms / lemmas
``…+func``, e.g. ``mecab-surface+func``   keep particles and auxiliary verbs (助詞, 助動詞)
``sudachi``, ``sudachi-a`` / ``-b`` / ``-c``  Sudachi (sudachidict-core), split mode (C by default)
``sudachi-b-surface`` / ``-normalized``   surface or normalised forms (default normalised); ``+func`` as above
``char2``, ``char3``, ``char1-2``         character n-grams of one size or a range of sizes
=======================================  ===============================================================
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from jp_rerank._pickling import FreshOnCopy
from jp_rerank.extras import require
from jp_rerank.text import chunk_text
from jp_rerank.text import normalize_text as _normalize

if TYPE_CHECKING:
    import fugashi

__all__ = [
    "FUNCTION_WORD_POS",
    "MECAB_MAX_CHARS",
    "CharNgramTokenizer",
    "MeCabTokenizer",
    "SudachiTokenizer",
    "Tokenizer",
    "get_tokenizer",
    "prepare_text",
    "split_for_analysis",
]

MeCabForm = Literal["surface", "base", "lemma"]
SudachiForm = Literal["surface", "normalized"]
SudachiMode = Literal["A", "B", "C"]

FUNCTION_WORD_POS: frozenset[str] = frozenset({"助詞", "助動詞"})
"""Parts of speech dropped as stopwords when ``drop_function_words=True``: particles and auxiliary verbs."""

# 補助記号 covers punctuation, brackets and emoji; 記号 is kept because UniDic files letters such as α there.
_NON_WORD_POS = frozenset({"補助記号", "空白"})
_UNSAFE_RE = re.compile(r"[\ud800-\udfff\u0000-\u001f\u007f-\u009f]")
# Sudachi refuses inputs over 49,149 UTF-8 bytes; 12,000 characters stay below it even at 4 bytes each.
_SUDACHI_MAX_CHARS = 12_000
MECAB_MAX_CHARS = 10_000
"""Longest text handed to MeCab in one call. MeCab (fugashi 1.x, unidic-lite) segfaults from about 200,000
characters of some texts (``"a" * 200_000``) and about 1.1M of ordinary Japanese; 60,000 survive every pattern tried,
and 10,000 leave a wide margin at no measurable cost."""
_BREAKS = ("。", "！", "？", "!", "?", "．", "\n")
_SPACES = (" ", "\u3000", "\t")


def split_for_analysis(text: str, max_chars: int = MECAB_MAX_CHARS) -> list[str]:
    """Cut ``text`` into consecutive pieces of at most ``max_chars`` characters for an analyser with a length limit.

    Each cut falls after the last sentence end (``。！？!?．`` or a newline) of the piece's second half, else after its
    last space, else at ``max_chars``. No character is lost: ``"".join(pieces) == text``.

    Raises:
        ValueError: If ``max_chars < 2``.

    Example:
        >>> split_for_analysis("一文目。二文目。三文目。", max_chars=8)
        ['一文目。二文目。', '三文目。']
        >>> "".join(split_for_analysis("あ" * 25, max_chars=10)) == "あ" * 25
        True
    """
    if max_chars < 2:
        raise ValueError(f"max_chars must be at least 2, got {max_chars}")
    pieces: list[str] = []
    start = 0
    while len(text) - start > max_chars:
        end = start + max_chars
        low = start + max_chars // 2
        cut = max(text.rfind(mark, low, end) for mark in _BREAKS)
        if cut < low:
            cut = max(text.rfind(space, low, end) for space in _SPACES)
        cut = cut + 1 if cut >= low else end
        pieces.append(text[start:cut])
        start = cut
    if start < len(text):
        pieces.append(text[start:])
    return pieces


@runtime_checkable
class Tokenizer(Protocol):
    """What :class:`~jp_rerank.lexical.BM25Index` needs from a tokenizer.

    ``name`` identifies the tokenization in saved indexes: two tokenizers with the same name must produce the
    same tokens. Any callable object with a ``name`` attribute fits.

    Example:
        >>> class Whitespace:
        ...     name = "whitespace"
        ...
        ...     def __call__(self, text: str) -> list[str]:
        ...         return text.split()
        >>> isinstance(Whitespace(), Tokenizer)
        True
    """

    @property
    def name(self) -> str:
        """Stable identifier of this tokenization (stored with saved indexes)."""
        ...

    def __call__(self, text: str) -> list[str]:
        """Split ``text`` into tokens."""
        ...


def prepare_text(text: str, *, normalize_text: bool = True) -> str:
    r"""Return ``text`` as the built-in tokenizers see it.

    Args:
        text: Input text.
        normalize_text: Apply :func:`jp_rerank.text.normalize_text` (NFKC, control characters removed,
            whitespace folded) and lower-case the result.

    Returns:
        The text with control characters and lone surrogates replaced by spaces (always), normalised when asked.

    Raises:
        TypeError: If ``text`` is not a ``str``.

    Example:
        >>> prepare_text("ﾃｽﾄ　ＡＢＣ")
        'テスト abc'
        >>> prepare_text("a\x00b", normalize_text=False)
        'a b'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if normalize_text:
        text = _normalize(text).lower()
    return _UNSAFE_RE.sub(" ", text)


def _is_word_char(char: str) -> bool:
    # Letters, marks and numbers; punctuation (P*), symbols and emoji (S*), separators (Z*) and others (C*) split.
    return unicodedata.category(char)[0] in "LMN"


def _word_runs(text: str) -> Iterator[str]:
    start = -1
    for i, char in enumerate(text):
        if _is_word_char(char):
            if start < 0:
                start = i
        elif start >= 0:
            yield text[start:i]
            start = -1
    if start >= 0:
        yield text[start:]


class CharNgramTokenizer:
    """Character n-grams, taken inside runs of letters/digits (punctuation, symbols and spaces split runs).

    A run shorter than the smallest ``n`` becomes one token, so one-character words are not lost with ``n=2``.

    Args:
        n: Size of the n-grams (ignored when ``ngram_range`` is given).
        ngram_range: ``(low, high)``: every size from ``low`` to ``high`` inclusive, e.g. ``(1, 2)``.
        normalize_text: NFKC-normalise and lower-case first (see :func:`prepare_text`).

    Raises:
        ValueError: If a size is below 1 or ``low > high``.

    Example:
        >>> CharNgramTokenizer(2)("東京都、ＡＢ")
        ['東京', '京都', 'ab']
        >>> CharNgramTokenizer(ngram_range=(1, 2)).name
        'char1-2'
    """

    def __init__(
        self,
        n: int = 2,
        *,
        ngram_range: tuple[int, int] | None = None,
        normalize_text: bool = True,
    ) -> None:
        low, high = ngram_range if ngram_range is not None else (n, n)
        for size in (low, high):
            if isinstance(size, bool) or not isinstance(size, int):
                raise TypeError(f"n-gram sizes must be ints, got {type(size).__name__}")
        if low < 1 or high < low:
            raise ValueError(f"n-gram sizes must satisfy 1 <= low <= high, got ({low}, {high})")
        self.ngram_range = (low, high)
        self.normalize_text = normalize_text

    @property
    def name(self) -> str:
        """``char{n}`` or ``char{low}-{high}``."""
        low, high = self.ngram_range
        return f"char{low}" if low == high else f"char{low}-{high}"

    def __call__(self, text: str) -> list[str]:
        """Return the n-grams of ``text`` in order (all sizes for one position before the next run)."""
        low, high = self.ngram_range
        tokens: list[str] = []
        for run in _word_runs(prepare_text(text, normalize_text=self.normalize_text)):
            if len(run) < low:
                tokens.append(run)
                continue
            for size in range(low, min(high, len(run)) + 1):
                tokens.extend(run[i : i + size] for i in range(len(run) - size + 1))
        return tokens

    def __repr__(self) -> str:
        return f"CharNgramTokenizer(ngram_range={self.ngram_range}, normalize_text={self.normalize_text})"


class _DictionaryTokenizer(FreshOnCopy):
    """Shared by the dictionary-based tokenizers: the word filter, and one analyser per thread (not pickled)."""

    _fresh_on_copy: ClassVar[dict[str, Callable[[], Any]]] = {"_local": threading.local}

    def __init__(self, *, drop_function_words: bool, normalize_text: bool) -> None:
        self.drop_function_words = drop_function_words
        self.normalize_text = normalize_text
        self._local = threading.local()

    def _drops(self, pos: str) -> bool:
        """Whether a word with main part of speech ``pos`` is left out of the tokens."""
        return pos in _NON_WORD_POS or (self.drop_function_words and pos in FUNCTION_WORD_POS)


class MeCabTokenizer(_DictionaryTokenizer):
    """Morphological tokenizer: MeCab through fugashi with the bundled unidic-lite dictionary.

    Symbols, punctuation, emoji (tagged 補助記号 by UniDic) and whitespace are dropped; particles and auxiliary
    verbs too unless ``drop_function_words=False``. Words the dictionary does not know keep their surface form.

    Args:
        form: ``"lemma"`` (UniDic 語彙素: merges spelling variants such as 子供/子ども and conjugations),
            ``"base"`` (orthographic base form, e.g. 住ん → 住む) or ``"surface"`` (text as written).
        drop_function_words: Drop the parts of speech in :data:`FUNCTION_WORD_POS`.
        normalize_text: NFKC-normalise and lower-case first (see :func:`prepare_text`).

    Example:
        >>> MeCabTokenizer()("東京都に住んでいます")
        ['トウキョウ', '都', '住む', '居る']
        >>> MeCabTokenizer(form="surface", drop_function_words=False)("東京都に住んでいます")
        ['東京', '都', 'に', '住ん', 'で', 'い', 'ます']
    """

    def __init__(
        self,
        *,
        form: MeCabForm = "lemma",
        drop_function_words: bool = True,
        normalize_text: bool = True,
    ) -> None:
        if form not in ("surface", "base", "lemma"):
            raise ValueError(f"form must be 'surface', 'base' or 'lemma', got {form!r}")
        self.form: MeCabForm = form
        super().__init__(drop_function_words=drop_function_words, normalize_text=normalize_text)

    @property
    def name(self) -> str:
        """``mecab`` for the defaults, else ``mecab-{form}`` plus ``+func`` when function words are kept."""
        if self.form == "lemma" and self.drop_function_words:
            return "mecab"
        return f"mecab-{self.form}" + ("" if self.drop_function_words else "+func")

    def _tagger(self) -> fugashi.Tagger:
        tagger: fugashi.Tagger | None = getattr(self._local, "tagger", None)
        if tagger is None:
            import fugashi
            import unidic_lite

            dicdir = unidic_lite.DICDIR
            tagger = fugashi.Tagger(f'-d "{dicdir}" -r "{dicdir}/mecabrc"')
            self._local.tagger = tagger
        return tagger

    def __call__(self, text: str) -> list[str]:
        """Return the words of ``text`` in order, in the configured form."""
        prepared = prepare_text(text, normalize_text=self.normalize_text)
        if not prepared.strip():
            return []
        tagger = self._tagger()
        tokens: list[str] = []
        for piece in split_for_analysis(prepared, MECAB_MAX_CHARS):  # one piece unless the text is long
            for word in tagger(piece):
                surface: str = word.surface
                if not surface.strip():
                    continue
                feature = word.feature
                pos = feature.pos1
                if self._drops(pos):
                    continue
                if self.form == "surface":
                    tokens.append(surface)
                else:
                    base = feature.lemma if self.form == "lemma" else feature.orthBase
                    tokens.append(base or surface)
        return tokens

    def __repr__(self) -> str:
        return (
            f"MeCabTokenizer(form={self.form!r}, drop_function_words={self.drop_function_words}, "
            f"normalize_text={self.normalize_text})"
        )


class SudachiTokenizer(_DictionaryTokenizer):
    """Morphological tokenizer: SudachiPy with the sudachidict-core dictionary (``jp-rerank[sudachi]``).

    Symbols, punctuation, emoji and whitespace are dropped; particles and auxiliary verbs too unless
    ``drop_function_words=False``. Texts longer than Sudachi's input limit are analysed in sentence-aligned
    pieces.

    Args:
        mode: Split mode: ``"A"`` (short units), ``"B"`` (middle) or ``"C"`` (named entities kept whole).
        form: ``"normalized"`` (Sudachi's normalised form: spelling variants merged, e.g. ｳｨﾙｽ → ウイルス) or
            ``"surface"``.
        drop_function_words: Drop the parts of speech in :data:`FUNCTION_WORD_POS`.
        normalize_text: NFKC-normalise and lower-case first (see :func:`prepare_text`).

    Raises:
        ImportError: When tokenising, if ``sudachipy``/``sudachidict_core`` are missing
            (``pip install "jp-rerank[sudachi]"``).

    Example:
        >>> SudachiTokenizer()("東京都に住んでいます")  # doctest: +SKIP
        ['東京都', '住む', '居る']
    """

    def __init__(
        self,
        mode: SudachiMode = "C",
        *,
        form: SudachiForm = "normalized",
        drop_function_words: bool = True,
        normalize_text: bool = True,
    ) -> None:
        if mode not in ("A", "B", "C"):
            raise ValueError(f"mode must be 'A', 'B' or 'C', got {mode!r}")
        if form not in ("surface", "normalized"):
            raise ValueError(f"form must be 'surface' or 'normalized', got {form!r}")
        self.mode: SudachiMode = mode
        self.form: SudachiForm = form
        super().__init__(drop_function_words=drop_function_words, normalize_text=normalize_text)

    @property
    def name(self) -> str:
        """``sudachi-{mode}``, plus ``-surface`` and ``+func`` when those options are set."""
        return (
            f"sudachi-{self.mode.lower()}"
            + ("-surface" if self.form == "surface" else "")
            + ("" if self.drop_function_words else "+func")
        )

    def _tokenizer(self) -> Any:
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            sudachipy = require("sudachipy", "sudachi")
            require("sudachidict_core", "sudachi")
            dictionary = sudachipy.Dictionary(dict="core")
            tokenizer = dictionary.tokenizer(getattr(sudachipy.SplitMode, self.mode))
            self._local.tokenizer = tokenizer
        return tokenizer

    def __call__(self, text: str) -> list[str]:
        """Return the words of ``text`` in order, in the configured form."""
        prepared = prepare_text(text, normalize_text=self.normalize_text)
        if not prepared.strip():
            return []
        tokenizer = self._tokenizer()
        tokens: list[str] = []
        for piece in chunk_text(prepared, size=_SUDACHI_MAX_CHARS, overlap=0):
            for morpheme in tokenizer.tokenize(piece):
                surface: str = morpheme.surface()
                if not surface.strip():
                    continue
                pos = morpheme.part_of_speech()[0]
                if self._drops(pos):
                    continue
                tokens.append(surface if self.form == "surface" else morpheme.normalized_form() or surface)
        return tokens

    def __repr__(self) -> str:
        return (
            f"SudachiTokenizer(mode={self.mode!r}, form={self.form!r}, "
            f"drop_function_words={self.drop_function_words}, normalize_text={self.normalize_text})"
        )


_MECAB_SPEC = re.compile(r"^mecab(?:-(surface|base|lemma))?(\+func)?$")
_SUDACHI_SPEC = re.compile(r"^sudachi(?:-([abc]))?(?:-(surface|normalized))?(\+func)?$")
_CHAR_SPEC = re.compile(r"^char([1-9][0-9]*)(?:-([1-9][0-9]*))?$")


def get_tokenizer(spec: str | Tokenizer, *, normalize_text: bool = True) -> Tokenizer:
    """Build a tokenizer from a spec string (see the module docs), or return a tokenizer object unchanged.

    Args:
        spec: A spec such as ``"mecab"``, ``"mecab-surface+func"``, ``"sudachi-b"``, ``"char2"``, ``"char1-2"``
            (case-insensitive), or an object following :class:`Tokenizer`.
        normalize_text: Passed to the built tokenizer (ignored for tokenizer objects).

    Returns:
        The tokenizer; for a spec, ``get_tokenizer(t.name)`` builds an equivalent one.

    Raises:
        ValueError: If the spec is not recognised.
        TypeError: If ``spec`` is neither a string nor a tokenizer object.

    Example:
        >>> get_tokenizer("char1-2")("日本")
        ['日', '本', '日本']
        >>> get_tokenizer("mecab-surface+func").name
        'mecab-surface+func'
    """
    if not isinstance(spec, str):
        if isinstance(spec, Tokenizer) and isinstance(spec.name, str):
            return spec
        raise TypeError(f"tokenizer must be a spec string or a callable with a 'name', got {type(spec).__name__}")
    key = spec.strip().lower()
    if match := _MECAB_SPEC.match(key):
        form = match.group(1) or "lemma"
        return MeCabTokenizer(
            form=form,  # type: ignore[arg-type]
            drop_function_words=match.group(2) is None,
            normalize_text=normalize_text,
        )
    if match := _SUDACHI_SPEC.match(key):
        return SudachiTokenizer(
            (match.group(1) or "c").upper(),  # type: ignore[arg-type]
            form=match.group(2) or "normalized",  # type: ignore[arg-type]
            drop_function_words=match.group(3) is None,
            normalize_text=normalize_text,
        )
    if match := _CHAR_SPEC.match(key):
        low = int(match.group(1))
        high = int(match.group(2) or low)
        return CharNgramTokenizer(ngram_range=(low, high), normalize_text=normalize_text)
    raise ValueError(
        f"unknown tokenizer spec {spec!r}; use 'mecab[-surface|-base|-lemma][+func]', "
        "'sudachi[-a|-b|-c][-surface|-normalized][+func]', 'char<n>' or 'char<low>-<high>'"
    )
