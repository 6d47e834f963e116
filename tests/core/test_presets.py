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


# ---------------------------------------------------------------------------------------------- ModernBERT (issue 14)


@pytest.mark.parametrize(
    ("alias", "model_id", "params"),
    [
        ("tiny-v2", "hotchpotch/japanese-reranker-tiny-v2", 29.4),
        ("xsmall-v2", "hotchpotch/japanese-reranker-xsmall-v2", 36.8),
        ("small-v2", "hotchpotch/japanese-reranker-small-v2", 70.2),
        ("base-v2", "hotchpotch/japanese-reranker-base-v2", 132),
        ("ruri-v3-reranker-310m", "cl-nagoya/ruri-v3-reranker-310m", 315),
    ],
)
def test_modernbert_rerankers(alias: str, model_id: str, params: float) -> None:
    p = get_preset(alias)
    assert get_preset(model_id) is p
    assert p.model_id == model_id
    assert (p.kind, p.architecture, p.activation) == ("cross-encoder", "modernbert", "sigmoid")
    assert p.max_length == 8192  # max_position_embeddings of ModernBERT-Ja; RoPE needs no offset
    assert p.languages == ("ja",)
    assert p.params_millions == params
    assert p.requires == ()  # tokenizer.json only: no MeCab, no sentencepiece
    assert not p.query_prefix
    assert not p.document_prefix


def test_default_reranker_is_xsmall_v2_and_v1_aliases_keep_their_meaning() -> None:
    assert DEFAULT_RERANKER == "xsmall-v2"
    assert get_preset(DEFAULT_RERANKER).model_id == "hotchpotch/japanese-reranker-xsmall-v2"
    for alias in ("xsmall", "small", "base", "large"):
        assert get_preset(alias).model_id == f"hotchpotch/japanese-reranker-cross-encoder-{alias}-v1"


def test_models_command_lists_the_modernbert_generation(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from jp_rerank.cli import main

    assert main(["models", "--kind", "cross-encoder"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip() and not line.startswith("*")}
    assert "xsmall-v2*" in rows  # the default is starred
    for alias in ("tiny-v2", "small-v2", "base-v2", "ruri-v3-reranker-310m", "xsmall"):
        assert alias in rows
    assert "modernbert" in rows["xsmall-v2*"]
    assert "8192" in rows["xsmall-v2*"]
    assert main(["models", "--kind", "cross-encoder", "--json"]) == 0
    by_alias = {r["alias"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert by_alias["xsmall-v2"]["default"] is True
    assert by_alias["xsmall"]["default"] is False
    assert by_alias["base-v2"]["architecture"] == "modernbert"


def test_local_v2_folders_are_recognised_by_name() -> None:
    from jp_rerank.presets import recognize_preset

    found = recognize_preset("/models/japanese-reranker-xsmall-v2")
    assert found is not None
    assert found.alias == "xsmall-v2"
    found = recognize_preset("/models/ruri-v3-reranker-310m")
    assert found is not None
    assert found.alias == "ruri-v3-reranker-310m"


def test_a_mistyped_alias_says_did_you_mean_and_lists_the_aliases() -> None:
    from jp_rerank import Embedder, ModelLoadError, Reranker

    with pytest.raises(ModelLoadError, match=r"unknown model preset 'xsmal' \(did you mean 'xsmall' or ") as e:
        Reranker("xsmal")
    message = str(e.value)
    assert message.count("; known aliases: ") == 1
    assert all(f" {p.alias}," in message or f" {p.alias};" in message for p in PRESETS)
    assert "hf download" not in message  # not a hub id to download
    assert "or give a hub id (org/name) or the path of a local model folder" in message
    with pytest.raises(ModelLoadError, match=r"did you mean 'me5-small'"):
        Embedder("me5-smal")
    with pytest.raises(ModelLoadError, match=r"unknown model preset 'no-such-model'; known aliases"):
        Reranker("no-such-model")  # nothing close: no suggestion, the whole list
