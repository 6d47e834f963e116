"""Token type ids are restored only for BERT tokenizers, never invented for models trained without them.

ja-ce-mini (the project's real trained cross-encoder) is a ``BertForSequenceClassification`` with two token types
but an XLM-R SentencePiece tokenizer, trained without token type ids: giving its passages type 1 moved its scores
(0.905 vs 0.922 on a gold pair). This builds that shape class in code and checks parity with sentence-transformers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jp_rerank import Reranker
from jp_rerank.testing import train_unigram_tokenizer

QUERY = "富士山の高さは何メートルですか？"
DOCS = ["富士山の標高は3776メートルです。", "京都には多くの寺があります。", "北岳は日本で二番目に高い山です。"]


@pytest.fixture(scope="module")
def bert_with_xlmr_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = train_unigram_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = BertForSequenceClassification(config)
        with torch.no_grad():  # make the two token types differ a lot, so using the wrong one shows
            model.bert.embeddings.token_type_embeddings.weight[1].normal_(0.0, 1.0)
    path = tmp_path_factory.mktemp("bert-xlmr-tok")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_bert_model_with_a_sentencepiece_tokenizer_scores_like_sentence_transformers(
    bert_with_xlmr_tokenizer: Path,
) -> None:
    from sentence_transformers import CrossEncoder

    expected = CrossEncoder(str(bert_with_xlmr_tokenizer), device="cpu").predict([(QUERY, d) for d in DOCS])
    reranker = Reranker(bert_with_xlmr_tokenizer, device="cpu", precision="fp32")
    np.testing.assert_allclose(reranker.score(QUERY, DOCS), expected, atol=1e-5)
    assert not reranker._load().template.uses_token_types


def test_bert_japanese_tokenizer_models_still_get_the_passage_as_segment_1(bert_ja_ce_path: Path) -> None:
    template = Reranker(bert_ja_ce_path, device="cpu", precision="fp32")._load().template
    assert (template.uses_token_types, template.type_a, template.type_b) == (True, 0, 1)
