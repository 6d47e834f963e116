from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from jp_rerank import testing
from jp_rerank.data import demo_texts

# ------------------------------------------------------------------------------------- bundled data


def test_demo_corpus_is_valid(demo_corpus: list[dict[str, str]]) -> None:
    assert len(demo_corpus) >= 40
    ids = [doc["id"] for doc in demo_corpus]
    assert len(set(ids)) == len(ids)
    for doc in demo_corpus:
        assert set(doc) == {"id", "title", "text", "source"}
        assert doc["id"].startswith("doc-")
        assert doc["title"].strip()
        assert 80 <= len(doc["text"]) <= 400, doc["id"]
        assert doc["source"] == "jp-rerank demo corpus"


def test_demo_corpus_has_mixed_scripts(demo_corpus: list[dict[str, str]]) -> None:
    texts = "".join(doc["text"] for doc in demo_corpus)
    assert any("\uff66" <= ch <= "\uff9f" for ch in texts)  # half-width katakana
    assert any("\uff21" <= ch <= "\uff5a" for ch in texts)  # full-width Latin letters
    assert any(word in texts for word in ("retriever", "reranker", "LLM"))


def test_demo_queries_point_at_existing_passages(
    demo_corpus: list[dict[str, str]], demo_queries: list[dict[str, object]]
) -> None:
    doc_ids = {doc["id"] for doc in demo_corpus}
    assert len(demo_queries) >= 10
    assert len({q["id"] for q in demo_queries}) == len(demo_queries)
    for query in demo_queries:
        relevant = query["relevant"]
        assert isinstance(relevant, list)
        assert relevant
        assert set(relevant) <= doc_ids, query["id"]
        assert isinstance(query["text"], str)
        assert query["text"].strip()


def test_demo_loaders_return_fresh_lists(demo_corpus: list[dict[str, str]]) -> None:
    demo_corpus[0]["text"] = "changed"
    from jp_rerank.data import load_demo_corpus

    assert load_demo_corpus()[0]["text"] != "changed"


# ------------------------------------------------------------------------------------- tokenizers


def test_unigram_tokenizer_specials_and_template(xlmr_ce_path: Path) -> None:
    from transformers import AutoTokenizer, XLMRobertaTokenizer

    tok = AutoTokenizer.from_pretrained(str(xlmr_ce_path))
    assert isinstance(tok, XLMRobertaTokenizer)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == list(testing.XLMR_SPECIAL_TOKENS)
    assert (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.model_max_length == 512

    a = tok("富士山", add_special_tokens=False)["input_ids"]
    b = tok("東京", add_special_tokens=False)["input_ids"]
    assert tok("富士山", "東京")["input_ids"] == [0, *a, 2, 2, *b, 2]
    assert tok("富士山")["input_ids"] == [0, *a, 2]


def test_unigram_tokenizer_covers_corpus_and_normalizes(xlmr_ce_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(xlmr_ce_path))
    for text in demo_texts():
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids
        assert tok.unk_token_id not in ids, text
    # NFKC-like normalisation survives the save/load round trip (half-width kana, full-width ASCII).
    assert tok("ｶﾀｶﾅ")["input_ids"] == tok("カタカナ")["input_ids"]
    # Like XLM-R's SentencePiece nmt_nfkc map, a half-width voiced mark stays a separate combining mark.
    assert tok("ﾃﾞｰﾀ")["input_ids"] == tok("テ\u3099ータ")["input_ids"]
    assert tok("ＰｙＴｏｒｃｈ")["input_ids"] == tok("PyTorch")["input_ids"]
    # Text outside the corpus still tokenizes: kana and ASCII are always in the alphabet.
    ids = tok("ぬるぽ xyz", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids


def test_unigram_tokenizer_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="single string"):
        testing.train_unigram_tokenizer("富士山")
    with pytest.raises(ValueError, match="at least one string"):
        testing.train_unigram_tokenizer([])
    with pytest.raises(ValueError, match="vocab_size"):
        testing.train_unigram_tokenizer(["富士山"], vocab_size=3)


def _fugashi_words(text: str) -> list[str]:
    import fugashi
    import unidic_lite

    dicdir = unidic_lite.DICDIR
    tagger = fugashi.GenericTagger(f'-d "{dicdir}" -r "{os.path.join(dicdir, "mecabrc")}"')
    return [word.surface for word in tagger(unicodedata.normalize("NFKC", text))]


def test_mecab_tokenizer_splits_like_unidic_lite(bert_ja_ce_path: Path) -> None:
    from transformers import AutoTokenizer, BertJapaneseTokenizer

    tok = AutoTokenizer.from_pretrained(str(bert_ja_ce_path))
    assert isinstance(tok, BertJapaneseTokenizer)
    config = json.loads((bert_ja_ce_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["word_tokenizer_type"] == "mecab"
    assert config["subword_tokenizer_type"] == "wordpiece"
    assert config["mecab_kwargs"] == {"mecab_dic": "unidic_lite"}

    sentence = "東海道新幹線は1964年10月、東京オリンピックの開幕直前に開業しました。"
    assert tok.tokenize(sentence) == _fugashi_words(sentence)
    # A word missing from the vocabulary falls back to WordPiece characters, not [UNK].
    assert tok.tokenize("ワンダフル") == ["ワ", "##ン", "##ダ", "##フ", "##ル"]


def test_mecab_vocab_layout() -> None:
    vocab = testing.build_mecab_wordpiece_vocab(["富士山の高さは3776メートルです。"])
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == len(set(vocab))
    assert {"富", "##富", "あ", "##あ", "A", "メートル"} <= set(vocab)


def test_bert_pair_template(bert_ja_ce_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bert_ja_ce_path))
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    enc = tok("富士山", "東京", return_token_type_ids=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "富士", "山", "[SEP]", "東京", "[SEP]"]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 1, 1]


# ------------------------------------------------------------------------------------- models


@pytest.mark.parametrize(
    ("fixture", "model_class", "tokenizer_class"),
    [
        ("xlmr_ce_path", "XLMRobertaForSequenceClassification", "XLMRobertaTokenizer"),
        ("bert_ja_ce_path", "BertForSequenceClassification", "BertJapaneseTokenizer"),
    ],
)
def test_cross_encoders_load_through_public_paths(
    request: pytest.FixtureRequest, fixture: str, model_class: str, tokenizer_class: str
) -> None:
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification

    path: Path = request.getfixturevalue(fixture)
    hf_model = AutoModelForSequenceClassification.from_pretrained(str(path))
    assert type(hf_model).__name__ == model_class
    assert hf_model.config.num_labels == 1
    assert hf_model.config.hidden_size == testing.SHAPES["tiny"].hidden_size
    assert hf_model.config.num_hidden_layers == 2

    ce = CrossEncoder(str(path), device="cpu")
    assert type(ce.model).__name__ == model_class
    assert type(ce.tokenizer).__name__ == tokenizer_class
    assert hf_model.config.vocab_size == len(ce.tokenizer)
    scores = ce.predict([("富士山の高さは？", "富士山の標高は3776メートルです。"), ("東京", "京都")])
    assert scores.shape == (2,)
    assert np.all((scores > 0) & (scores < 1))


def test_dense_embedder_saves_prompts(dense_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    saved = json.loads((dense_path / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert saved["prompts"]["query"] == "query: "
    assert saved["prompts"]["document"] == "passage: "

    model = SentenceTransformer(str(dense_path), device="cpu")
    modules = list(model)
    assert [type(m) for m in modules] == [Transformer, Pooling, Normalize]
    assert type(modules[0].model).__name__ == "XLMRobertaModel"
    assert modules[1].pooling_mode == "mean"
    texts = ["富士山の高さは？"]
    query = model.encode_query(texts)
    assert query.shape == (1, 32)
    np.testing.assert_allclose(np.linalg.norm(query, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(query, model.encode(texts, prompt="query: "), atol=1e-6)
    np.testing.assert_allclose(model.encode_document(texts), model.encode(texts, prompt="passage: "), atol=1e-6)
    assert not np.allclose(query, model.encode(texts), atol=1e-4)


def test_dense_embedder_without_prompts(dense_noprompt_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(dense_noprompt_path), device="cpu")
    assert not any(model.prompts.values())
    texts = ["北海道の道庁所在地"]
    np.testing.assert_allclose(model.encode_query(texts), model.encode(texts), atol=1e-6)


def test_dense_embedder_bert_arch(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    path = testing.build_dense_embedder(tmp_path / "ruri-like", arch="bert", prompts={"query": "クエリ: "})
    model = SentenceTransformer(str(path), device="cpu")
    assert type(model[0].model).__name__ == "BertModel"
    assert type(model.tokenizer).__name__ == "BertJapaneseTokenizer"
    assert model.prompts["query"] == "クエリ: "
    assert model.encode_query(["東京"]).shape == (1, 32)


def test_dense_embedder_rejects_unknown_arch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown arch 'gpt2'; expected 'xlm-roberta', 'bert' or 'modernbert'"):
        testing.build_dense_embedder(tmp_path, arch="gpt2")  # type: ignore[arg-type]


def test_static_embedder_loads(static_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    model = SentenceTransformer(str(static_path), device="cpu")
    assert isinstance(model[0], StaticEmbedding)
    emb = model.encode(["富士山の高さ", "ﾃﾞｰﾀﾍﾞｰｽ"])
    assert emb.shape == (2, 64)
    assert np.all(np.isfinite(emb))
    assert not np.allclose(emb[0], emb[1])


def test_splade_encoder_loads(splade_path: Path) -> None:
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    model = SparseEncoder(str(splade_path), device="cpu")
    assert type(model[0].model).__name__ == "BertForMaskedLM"
    assert type(model.tokenizer).__name__ == "BertJapaneseTokenizer"
    assert isinstance(model[1], SpladePooling)
    emb = model.encode(["富士山の高さは？"], convert_to_tensor=True).to_dense()
    assert emb.shape == (1, len(model.tokenizer))
    assert bool((emb >= 0).all())
    assert int((emb > 0).sum()) > 0


# ------------------------------------------------------------------------------------- determinism and shapes


def _weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


def test_same_seed_same_model_other_seed_differs(tmp_path: Path) -> None:
    a = _weights(testing.build_xlmr_cross_encoder(tmp_path / "a", seed=7))
    b = _weights(testing.build_xlmr_cross_encoder(tmp_path / "b", seed=7))
    c = _weights(testing.build_xlmr_cross_encoder(tmp_path / "c", seed=8))
    assert a.keys() == b.keys() == c.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_build_leaves_caller_rng_alone(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    testing.build_bert_ja_cross_encoder(tmp_path / "m", seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_mecab_vocab_is_deterministic() -> None:
    texts = ["今日は良い天気です。", "明日は雨が降るでしょう。"]
    assert testing.build_mecab_wordpiece_vocab(texts) == testing.build_mecab_wordpiece_vocab(list(texts))


def test_shape_table() -> None:
    shapes = testing.SHAPES
    assert {"tiny", "xsmall", "small", "base", "large", "e5-small", "xsmall-v2"} <= set(shapes)
    assert shapes["tiny"].vocab_size is None
    assert (shapes["xsmall"].num_layers, shapes["xsmall"].hidden_size, shapes["xsmall"].vocab_size) == (
        6,
        384,
        250002,
    )
    assert (shapes["large"].num_layers, shapes["large"].hidden_size, shapes["large"].num_heads) == (
        24,
        1024,
        16,
    )
    for shape in shapes.values():
        assert shape.hidden_size % shape.num_heads == 0


def test_unknown_shape_and_bad_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown shape 'huge'"):
        testing.build_xlmr_cross_encoder(tmp_path / "x", shape="huge")  # type: ignore[arg-type]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        testing.build_bert_ja_cross_encoder(a_file)
    with pytest.raises(ValueError, match="dim must be positive"):
        testing.build_static_embedder(tmp_path / "s", dim=0)


# ------------------------------------------------------------------------------------- ModernBERT (issue 14)


@pytest.fixture(scope="module")
def modernbert_ce(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testing.build_modernbert_cross_encoder(tmp_path_factory.mktemp("modernbert-ce"))


def test_modernbert_folder_has_the_hub_layout(modernbert_ce: Path) -> None:
    names = {p.name for p in modernbert_ce.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not names & {"vocab.txt", "sentencepiece.bpe.model", "tokenizer.model", "vocab.json"}  # tokenizer.json only
    config = json.loads((modernbert_ce / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "modernbert"
    assert config["architectures"] == ["ModernBertForSequenceClassification"]
    assert config["max_position_embeddings"] == 8192
    assert config["local_attention"] == testing.TINY_LOCAL_ATTENTION == 16
    assert set(config["layer_types"]) == {"full_attention", "sliding_attention"}  # both attention kinds run
    assert config["classifier_pooling"] == "cls"
    assert "type_vocab_size" not in config
    ids = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "cls_token_id")}
    assert ids == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3, "sep_token_id": 4, "cls_token_id": 6}
    # The awkward part of the real uploads: the declared class is not the one that reads tokenizer.json.
    tok_config = json.loads((modernbert_ce / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tok_config["tokenizer_class"] == "LlamaTokenizer"
    assert tok_config["add_bos_token"] is True
    assert tok_config["add_eos_token"] is True


def test_modernbert_tokenizer_loads_as_the_hub_one_does(modernbert_ce: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(modernbert_ce))
    assert type(tok).__name__ == "TokenizersBackend"  # not LlamaTokenizer: transformers 5 overrides modernbert
    assert tok.convert_ids_to_tokens(list(range(7))) == list(testing.MODERNBERT_SPECIAL_TOKENS)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (1, 2, 3, 0)
    assert tok.model_max_length == 8192
    a = tok("富士山", add_special_tokens=False)["input_ids"]
    b = tok("東京", add_special_tokens=False)["input_ids"]
    enc = tok("富士山", "東京")
    assert enc["input_ids"] == [1, *a, 2, 1, *b, 2]
    assert "token_type_ids" not in enc
    assert tok("富士山")["input_ids"] == [1, *a, 2]
    assert tok("ｶﾀｶﾅ")["input_ids"] == tok("カタカナ")["input_ids"]  # NFKC
    for text in demo_texts():
        assert tok.unk_token_id not in tok(text, add_special_tokens=False)["input_ids"], text


def test_modernbert_cross_encoder_loads_through_public_paths(modernbert_ce: Path) -> None:
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification

    hf_model = AutoModelForSequenceClassification.from_pretrained(str(modernbert_ce))
    assert type(hf_model).__name__ == "ModernBertForSequenceClassification"
    assert hf_model.config.num_labels == 1
    ce = CrossEncoder(str(modernbert_ce), device="cpu")  # as the model cards load it: no max_length
    assert type(ce.model).__name__ == "ModernBertForSequenceClassification"
    assert ce.max_seq_length == 8192
    assert hf_model.config.vocab_size == len(ce.tokenizer)
    scores = ce.predict([("富士山の高さは？", "富士山の標高は3776メートルです。"), ("東京", "京都")])
    assert scores.shape == (2,)
    assert np.all((scores > 0) & (scores < 1))


def test_modernbert_embedder_saves_ruri_prompts(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    path = testing.build_dense_embedder(tmp_path / "ruri-v3-like", arch="modernbert", prompts=testing.RURI_PROMPTS)
    model = SentenceTransformer(str(path), device="cpu")
    assert type(model[0].model).__name__ == "ModernBertModel"
    assert type(model.tokenizer).__name__ == "TokenizersBackend"
    assert model.max_seq_length == 8192
    assert (model.prompts["query"], model.prompts["document"]) == ("検索クエリ: ", "検索文書: ")
    texts = ["富士山の高さは？"]
    np.testing.assert_allclose(model.encode_query(texts), model.encode(texts, prompt="検索クエリ: "), atol=1e-6)
    assert not np.allclose(model.encode_query(texts), model.encode_document(texts), atol=1e-4)
    tok_config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tok_config["tokenizer_class"] == "LlamaTokenizer"


def test_modernbert_builder_options_and_errors(tmp_path: Path) -> None:
    path = testing.build_modernbert_cross_encoder(tmp_path / "w", local_attention=8, initializer_range=0.3)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert (config["local_attention"], config["initializer_range"]) == (8, 0.3)
    for bad in (7, 0, True, "16"):
        with pytest.raises(ValueError, match="local_attention must be an even int"):
            testing.build_modernbert_cross_encoder(tmp_path / "bad", local_attention=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'xsmall' is a xlm-roberta shape, not a ModernBERT one"):
        testing.build_modernbert_cross_encoder(tmp_path / "x", shape="xsmall")
    with pytest.raises(ValueError, match="vocab_size must be larger than 7"):
        testing.train_modernbert_tokenizer(vocab_size=7)


def test_modernbert_builder_keeps_a_given_tokenizer_json(
    modernbert_ce: Path, xlmr_ce_path: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    # An XLM-R tokenizer.json (as the speed benchmark passes for real pair lengths): its own template and ids.
    path = testing.build_modernbert_cross_encoder(tmp_path / "m", tokenizer_json=xlmr_ce_path / "tokenizer.json")
    tok = AutoTokenizer.from_pretrained(str(path))
    xlmr = AutoTokenizer.from_pretrained(str(xlmr_ce_path))
    assert tok("富士山", "東京")["input_ids"] == xlmr("富士山", "東京")["input_ids"]
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (1, 0, 2)
    no_pad = tmp_path / "no-pad.json"
    data = json.loads((modernbert_ce / "tokenizer.json").read_text(encoding="utf-8"))
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<pad>"]
    data["model"]["vocab"] = [[p, s] if p != "<pad>" else ["<pad-gone>", s] for p, s in data["model"]["vocab"]]
    no_pad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="has no token for pad_token"):
        testing.build_modernbert_cross_encoder(tmp_path / "p", tokenizer_json=no_pad)


def test_modernbert_shapes_match_the_published_models() -> None:
    shapes = testing.SHAPES
    expected = {  # (layers, hidden) from the model cards; parameter counts from the hub listing
        "tiny-v2": (3, 256, 29.4e6),
        "xsmall-v2": (10, 256, 36.8e6),
        "small-v2": (13, 384, 70.2e6),
        "base-v2": (19, 512, 132e6),
        "ruri-v3-reranker-310m": (25, 768, 315e6),
    }
    for name, (layers, hidden, params) in expected.items():
        shape = shapes[name]
        assert (shape.arch, shape.num_layers, shape.hidden_size) == ("modernbert", layers, hidden)
        assert (shape.vocab_size, shape.local_attention) == (102400, 128)
        # ModernBERT: embeddings + per layer (Wqkv, Wo) + GeGLU MLP (Wi: hidden -> 2 x inner, Wo: inner -> hidden).
        h, inner = shape.hidden_size, shape.intermediate_size
        estimate = shape.vocab_size * h + layers * (4 * h * h + 3 * h * inner)
        assert abs(estimate - params) / params < 0.03, name
