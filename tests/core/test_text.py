"""Japanese text normalisation, sentence splitting and chunking."""

from __future__ import annotations

import pytest

from jp_rerank.text import chunk_text, iter_windows, normalize_text, split_sentences


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ﾃｽﾄ", "テスト"),
        ("ＡＢＣ１２３", "ABC123"),
        ("  東京\u3000 都\t\n", "東京 都"),
        ("a\u200bb\x00c", "a b c"),
        ("", ""),
        ("😀 絵文字", "😀 絵文字"),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_normalize_text_can_skip_nfkc_and_rejects_non_str() -> None:
    assert normalize_text("ﾃｽﾄ", nfkc=False) == "ﾃｽﾄ"
    with pytest.raises(TypeError, match="expected str"):
        normalize_text(None)  # type: ignore[arg-type]


def test_split_sentences_keeps_every_character() -> None:
    text = "今日は晴れ。明日は雨！本当？\nはい"
    parts = split_sentences(text)
    assert parts == ["今日は晴れ。", "明日は雨！", "本当？", "\n", "はい"]
    assert "".join(parts) == text


def test_chunk_text_packs_sentences_and_windows_long_ones() -> None:
    assert chunk_text("一文目。二文目。三文目。", size=8, overlap=0) == ["一文目。二文目。", "三文目。"]
    long = "あ" * 25
    chunks = chunk_text(long, size=10, overlap=2)
    assert all(len(c) <= 10 for c in chunks)
    assert chunks[0] + "".join(c[2:] for c in chunks[1:]) == long
    assert chunk_text("") == []
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", size=5, overlap=5)


def test_iter_windows() -> None:
    assert list(iter_windows(3, 5, 2)) == [(0, 3)]
    assert list(iter_windows(9, 4, 4)) == [(0, 4), (4, 8), (8, 9)]
    with pytest.raises(ValueError, match="positive"):
        list(iter_windows(5, 0, 1))
