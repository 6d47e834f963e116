"""Tokenizers for the tiny models, trained in code on the bundled Japanese text (nothing is downloaded).

* :func:`train_unigram_tokenizer`: an XLM-R-style SentencePiece Unigram tokenizer (``▁`` metaspace,
  ``<s> <pad> </s> <unk> <mask>`` at ids 0-4, pair template ``<s> A </s></s> B </s>``), as used by
  hotchpotch/japanese-reranker-cross-encoder-xsmall/small-v1, bge-reranker-v2-m3 and multilingual-e5. Its
  normaliser is SentencePiece's compiled ``nmt_nfkc`` map, like XLM-R's.
* :func:`build_mecab_tokenizer`: a MeCab (unidic-lite) + WordPiece ``BertJapaneseTokenizer``, configured like
  cl-tohoku/bert-base-japanese-v3 and hotchpotch/japanese-reranker-cross-encoder-base/large-v1.
* :func:`train_modernbert_tokenizer`: a ModernBERT-Ja-style SentencePiece tokenizer kept as a ``tokenizer.json``
  (``<unk> <s> </s> <pad> <sep> <mask> <cls>`` at ids 0-6, ``<s> A </s>`` / ``<s> A </s> <s> B </s>``, no token type
  ids), as used by hotchpotch/japanese-reranker-*-v2, cl-nagoya/ruri-v3-* and sbintuitions/modernbert-ja-*.
"""

from __future__ import annotations

import io
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from jp_rerank.testing.shapes import (
    BERT_SPECIAL_TOKENS,
    MECAB_KWARGS,
    MODEL_MAX_LENGTH,
    MODERNBERT_MAX_LENGTH,
    MODERNBERT_SPECIAL_TOKENS,
    XLMR_SPECIAL_TOKENS,
)

if TYPE_CHECKING:
    from transformers import BertJapaneseTokenizer, TokenizersBackend, XLMRobertaTokenizer

__all__ = [
    "DEFAULT_UNIGRAM_VOCAB",
    "build_mecab_tokenizer",
    "build_mecab_wordpiece_vocab",
    "resolve_texts",
    "train_modernbert_tokenizer",
    "train_unigram_tokenizer",
]

DEFAULT_UNIGRAM_VOCAB = 4000
"""Requested Unigram vocabulary size; the bundled corpus supports fewer pieces, so the result is smaller."""

_KANA_AND_ASCII = (
    "".join(chr(c) for c in range(0x3041, 0x3097))  # hiragana
    + "".join(chr(c) for c in range(0x30A1, 0x30FB))  # katakana
    + "ー・「」『』、。！？（）"
    + "".join(chr(c) for c in range(0x21, 0x7F))  # printable ASCII
)


def resolve_texts(texts: Sequence[str] | None) -> tuple[str, ...]:
    """Return ``texts`` as a tuple, or the bundled demo texts when ``None``."""
    if texts is None:
        from jp_rerank.data import demo_texts

        return tuple(demo_texts())
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    resolved = tuple(texts)
    if not resolved:
        raise ValueError("texts must contain at least one string to train a tokenizer on")
    for text in resolved:
        if not isinstance(text, str):
            raise TypeError(f"texts must contain only strings, got {type(text).__name__}")
    return resolved


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _proto_fields(buf: bytes) -> Iterator[tuple[int, bytes | int]]:
    """Yield ``(field number, value)`` of a serialized protobuf message (enough to read one bytes field)."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        value: bytes | int
        if wire_type == 0:
            value, pos = _read_varint(buf, pos)
        elif wire_type == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire_type == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield number, value


@cache
def _nfkc_charsmap() -> bytes:
    """Return SentencePiece's compiled ``nmt_nfkc`` normalisation map (what XLM-R's tokenizer uses).

    transformers' XLM-R tokenizer keeps only a ``Precompiled`` normaliser when it reloads a folder, so the
    map is taken from a throwaway SentencePiece model rather than a plain NFKC normaliser that would be lost.
    """
    import sentencepiece

    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["charsmap"]),
        model_writer=buf,
        model_type="char",
        vocab_size=8,
        hard_vocab_limit=False,
        normalization_rule_name="nmt_nfkc",
        minloglevel=2,
        num_threads=1,
    )
    normalizer_spec = next(v for n, v in _proto_fields(buf.getvalue()) if n == 3)  # ModelProto.normalizer_spec
    assert isinstance(normalizer_spec, bytes)
    charsmap = next(v for n, v in _proto_fields(normalizer_spec) if n == 2)  # NormalizerSpec.precompiled_charsmap
    assert isinstance(charsmap, bytes)
    return charsmap


@lru_cache(maxsize=8)
def _train_unigram_json(texts: tuple[str, ...], vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer

    tokenizer = Tokenizer(Unigram())
    tokenizer.normalizer = normalizers.Precompiled(_nfkc_charsmap())
    # The same pre-tokenizer transformers' XLMRobertaTokenizer rebuilds at load time.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=list(XLMR_SPECIAL_TOKENS),
        unk_token="<unk>",
        initial_alphabet=sorted(set(unicodedata.normalize("NFKC", _KANA_AND_ASCII))),
        max_piece_length=8,
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return str(tokenizer.to_str())


@lru_cache(maxsize=8)
def _train_modernbert_json(texts: tuple[str, ...], vocab_size: int) -> str:
    """Train the pieces with SentencePiece itself and keep them in a ``tokenizers`` Unigram ``tokenizer.json``.

    SentencePiece (one thread) gives the same pieces, scores and ids on every run; the ``tokenizers`` Unigram
    trainer does not (its pieces come out in a different order each time, so the same seed gave a different model).
    """
    import sentencepiece
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    normalised = [unicodedata.normalize("NFKC", t) for t in texts]
    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(normalised),
        model_writer=buf,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        normalization_rule_name="identity",  # NFKC is the tokenizer's normaliser below
        add_dummy_prefix=False,  # SentencePiece without a dummy prefix: Japanese text is not space-separated
        max_sentencepiece_length=8,
        character_coverage=1.0,
        required_chars="".join(sorted(set(unicodedata.normalize("NFKC", _KANA_AND_ASCII)))),
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    sp = sentencepiece.SentencePieceProcessor(model_proto=buf.getvalue())
    specials = list(MODERNBERT_SPECIAL_TOKENS)
    pieces = [(sp.id_to_piece(i), float(sp.get_score(i))) for i in range(sp.get_piece_size()) if not sp.is_unknown(i)]
    vocab = [(t, 0.0) for t in specials] + [(p, s) for p, s in pieces if p not in specials]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=0, byte_fallback=False))
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tokenizer.normalizer = normalizers.NFKC()
    # a space becomes "▁" and starts a new piece, as SentencePiece's whitespace split does
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
    bos, eos = MODERNBERT_SPECIAL_TOKENS[1], MODERNBERT_SPECIAL_TOKENS[2]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {bos}:1 $B:1 {eos}:1",
        special_tokens=[(bos, 1), (eos, 2)],
    )
    return str(tokenizer.to_str())


@lru_cache(maxsize=8)
def _mecab_vocab(texts: tuple[str, ...]) -> tuple[str, ...]:
    from transformers.models.bert_japanese.tokenization_bert_japanese import MecabTokenizer

    word_tokenizer = MecabTokenizer(do_lower_case=False, normalize_text=True, **MECAB_KWARGS)
    counts: Counter[str] = Counter()
    chars = set(unicodedata.normalize("NFKC", _KANA_AND_ASCII))
    for text in texts:
        normalized = unicodedata.normalize("NFKC", text)
        chars.update(ch for ch in normalized if not ch.isspace())
        counts.update(word_tokenizer.tokenize(normalized))
    single = sorted(chars)
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    vocab = [*BERT_SPECIAL_TOKENS, *single, *(f"##{ch}" for ch in single), *words]
    return tuple(dict.fromkeys(vocab))


# ------------------------------------------------------------------------------------------ tokenizers


def train_unigram_tokenizer(
    texts: Sequence[str] | None = None, *, vocab_size: int = DEFAULT_UNIGRAM_VOCAB
) -> XLMRobertaTokenizer:
    """Train an XLM-R-style SentencePiece Unigram tokenizer with the ``tokenizers`` library.

    Args:
        texts: Training texts; ``None`` uses the bundled demo corpus and questions. Kana and printable ASCII
            are always in the alphabet, so text outside the corpus is not all ``<unk>``.
        vocab_size: Requested vocabulary size (an upper bound: a small corpus yields fewer pieces).

    Returns:
        A transformers ``XLMRobertaTokenizer`` (``model_max_length`` 512) wrapping the trained tokenizer.

    Raises:
        ValueError: If ``texts`` is empty or ``vocab_size`` is too small for the special tokens.
        TypeError: If ``texts`` is a single string or holds non-strings.

    Example:
        >>> tok = train_unigram_tokenizer()
        >>> tok.convert_ids_to_tokens(tok("東京", "京都")["input_ids"])[:1]
        ['<s>']
    """
    if vocab_size <= len(XLMR_SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be larger than {len(XLMR_SPECIAL_TOKENS)}, got {vocab_size}")
    from tokenizers import Tokenizer
    from transformers import XLMRobertaTokenizer

    backend = Tokenizer.from_str(_train_unigram_json(resolve_texts(texts), vocab_size))
    return XLMRobertaTokenizer(tokenizer_object=backend, model_max_length=MODEL_MAX_LENGTH)


def train_modernbert_tokenizer(
    texts: Sequence[str] | None = None, *, vocab_size: int = DEFAULT_UNIGRAM_VOCAB
) -> TokenizersBackend:
    """Train a ModernBERT-Ja-style SentencePiece (Unigram) tokenizer with the ``tokenizers`` library.

    Like the real one it lives in a ``tokenizer.json`` alone (no vocab file, no token type ids), with ModernBERT-Ja's
    special tokens at the same ids (:data:`~jp_rerank.testing.MODERNBERT_SPECIAL_TOKENS`) and a pair template that
    wraps each segment in ``<s> ... </s>``. Text is NFKC-normalised; spaces become ``▁``.

    Args:
        texts: Training texts; ``None`` uses the bundled demo corpus and questions. Kana and printable ASCII
            are always in the alphabet, so text outside the corpus is not all ``<unk>``.
        vocab_size: Requested vocabulary size (an upper bound: a small corpus yields fewer pieces).

    Returns:
        A transformers ``TokenizersBackend`` (``model_max_length`` 8192, inputs ``input_ids`` and
        ``attention_mask`` only). Save it with :func:`jp_rerank.testing.build_modernbert_cross_encoder` or
        ``save_pretrained`` next to a ModernBERT ``config.json``.

    Raises:
        ValueError: If ``texts`` is empty or ``vocab_size`` is too small for the special tokens.
        TypeError: If ``texts`` is a single string or holds non-strings.

    Example:
        >>> tok = train_modernbert_tokenizer()
        >>> ids = tok("東京", "京都")["input_ids"]
        >>> tok.convert_ids_to_tokens([ids[0], ids[-1]]), "token_type_ids" in tok("東京")
        (['<s>', '</s>'], False)
    """
    if vocab_size <= len(MODERNBERT_SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be larger than {len(MODERNBERT_SPECIAL_TOKENS)}, got {vocab_size}")
    from tokenizers import Tokenizer
    from transformers import TokenizersBackend

    unk, bos, eos, pad, sep, mask, cls = MODERNBERT_SPECIAL_TOKENS
    backend = Tokenizer.from_str(_train_modernbert_json(resolve_texts(texts), vocab_size))
    return TokenizersBackend(
        tokenizer_object=backend,
        unk_token=unk,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        sep_token=sep,
        mask_token=mask,
        cls_token=cls,
        model_max_length=MODERNBERT_MAX_LENGTH,
        model_input_names=["input_ids", "attention_mask"],
    )


def build_mecab_wordpiece_vocab(texts: Sequence[str] | None = None) -> list[str]:
    """Build a WordPiece vocabulary for a MeCab (unidic-lite) ``BertJapaneseTokenizer``.

    The vocabulary is ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0..4), every single character of the
    NFKC-normalised texts plus kana and ASCII, the same characters with a ``##`` prefix, then the
    multi-character MeCab words of the texts, most frequent first.

    Args:
        texts: Texts to collect words from; ``None`` uses the bundled demo corpus and questions.

    Returns:
        The vocabulary, one token per id.

    Example:
        >>> vocab = build_mecab_wordpiece_vocab()
        >>> vocab[:5], "富士" in vocab
        (['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'], True)
    """
    return list(_mecab_vocab(resolve_texts(texts)))


def build_mecab_tokenizer(texts: Sequence[str] | None = None) -> BertJapaneseTokenizer:
    """Build a MeCab (unidic-lite) + WordPiece ``BertJapaneseTokenizer`` over the demo-text vocabulary.

    Args:
        texts: Texts to build the vocabulary from; ``None`` uses the bundled demo texts.

    Returns:
        The tokenizer (``model_max_length`` 512), configured like cl-tohoku/bert-base-japanese-v3.

    Example:
        >>> build_mecab_tokenizer().tokenize("富士山の高さ")
        ['富士', '山', 'の', '高', 'さ']
    """
    from transformers import BertJapaneseTokenizer

    vocab = build_mecab_wordpiece_vocab(texts)
    with tempfile.TemporaryDirectory(prefix="jp-rerank-vocab-") as tmp:
        vocab_file = Path(tmp) / "vocab.txt"
        vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        return BertJapaneseTokenizer(
            vocab_file=str(vocab_file),
            do_lower_case=False,
            word_tokenizer_type="mecab",
            subword_tokenizer_type="wordpiece",
            mecab_kwargs=dict(MECAB_KWARGS),
            model_max_length=MODEL_MAX_LENGTH,
        )
