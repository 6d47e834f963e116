"""The preset registry: the models the issue names, with their prefixes, tokenizers and activations."""

from __future__ import annotations

import pytest

from jp_rerank.presets import (
    DEFAULT_EMBEDDER,
    DEFAULT_RERANKER,
    DEFAULT_SPARSE,
    PRESETS,
    find_preset,
    get_preset,
    list_presets,
)


def test_aliases_and_ids_are_unique() -> None:
    names = [p.alias for p in PRESETS] + [p.model_id for p in PRESETS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("alias", "arch", "needs_mecab"),
    [
        ("xsmall", "xlm-roberta", False),
        ("small", "xlm-roberta", False),
        ("base", "bert", True),
        ("large", "bert", True),
    ],
)
def test_hotchpotch_rerankers(alias: str, arch: str, needs_mecab: bool) -> None:
    p = get_preset(alias)
    assert p.model_id == f"hotchpotch/japanese-reranker-cross-encoder-{alias}-v1"
    assert p.kind == "cross-encoder"
    assert p.architecture == arch
    assert p.activation == "sigmoid"
    assert ("fugashi" in p.requires and "unidic_lite" in p.requires) is needs_mecab


def test_other_rerankers_are_known() -> None:
    for model_id in (
        "hotchpotch/japanese-bge-reranker-v2-m3-v1",
        "BAAI/bge-reranker-v2-m3",
        "cl-nagoya/ruri-reranker-small",
        "cl-nagoya/ruri-reranker-base",
        "cl-nagoya/ruri-reranker-large",
        "Dongjin-kr/ko-reranker",
    ):
        assert get_preset(model_id).kind == "cross-encoder"
    assert "ko" in get_preset("Dongjin-kr/ko-reranker").languages


def test_embedder_prefixes_and_dims() -> None:
    for size in ("small", "base", "large"):
        p = get_preset(f"intfloat/multilingual-e5-{size}")
        assert (p.query_prefix, p.document_prefix) == ("query: ", "passage: ")
    for size in ("30m", "70m", "130m", "310m"):
        p = get_preset(f"cl-nagoya/ruri-v3-{size}")
        assert (p.query_prefix, p.document_prefix) == ("検索クエリ: ", "検索文書: ")
    static = get_preset("hotchpotch/static-embedding-japanese")
    assert static.kind == "static"
    assert static.dims == 1024
    assert min(static.matryoshka_dims) == 32
    assert max(static.matryoshka_dims) == 1024
    assert get_preset("BAAI/bge-m3").dims == 1024


def test_defaults_resolve_to_the_right_kinds() -> None:
    assert get_preset(DEFAULT_RERANKER).kind == "cross-encoder"
    assert get_preset(DEFAULT_EMBEDDER).kind in {"dense", "static"}
    assert get_preset(DEFAULT_SPARSE).kind == "sparse"


def test_lookup() -> None:
    assert find_preset("HOTCHPOTCH/japanese-reranker-cross-encoder-small-v1") is get_preset("small")
    assert find_preset("/tmp/my-model") is None
    with pytest.raises(KeyError, match="known aliases: xsmall"):
        get_preset("no-such-model")
    assert {p.kind for p in list_presets("dense")} == {"dense"}
