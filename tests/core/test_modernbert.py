"""ModernBERT end to end (issue 14): japanese-reranker-*-v2, ruri-v3-reranker, Ruri v3 embedders.

Every model is a tiny random-weight ModernBERT built in code (:mod:`jp_rerank.testing`) like the hub folders: a
``tokenizer.json`` only, ModernBERT-Ja's special tokens, a ``tokenizer_config.json`` that names the wrong class,
no token type ids, and a local attention window (16) shorter than most test inputs, so the sliding-window layers
really mask. Scores are compared with a plain transformers forward pass (the reference), never with themselves.

Backend tolerances for ModernBERT (raw logits against torch fp32, on the ``initializer_range=0.3`` tiny model whose
scores spread out, std about 0.35-0.55; the tiny tokenizer is trained by SentencePiece, so the model is the same on
every run). int8 bounds are in units of the fp32 scores' spread, because quantisation error is relative to the
activations' range (one int8 step is range/255 per tensor): they are the quantisation method's, not one CPU's.
Measured, seeds 0 and 1, on a 2-core AVX-512 machine (VNNI kernel: 8-bit weights) and on an AVX2-only one (7-bit
weights: ``reduce_range`` / NNCF ``overflow_fix``):

==============  =====================  ==========================  ==========================================
backend          Spearman vs fp32       largest |logit difference|   measured
==============  =====================  ==========================  ==========================================
torch-bf16       >= 0.99                <= 0.15 x std(fp32)          0.9996-1.0, 0.05 x std
torch-fp16       >= 0.99                <= 0.15 x std(fp32)          1.0, 0.006 x std
onnx-fp32        >= 0.9999              <= 1e-5 (absolute)           1.0, 1.8e-6
onnx-int8        >= 0.97                <= 0.4 x std(fp32)           0.983-0.995, 0.15-0.28 x std
openvino-fp32    >= 0.9999              <= 1e-5 (absolute)           1.0, 1.3e-6 (AVX2)
openvino-int8    >= 0.97                <= 0.6 x std(fp32)           0.983-0.990, 0.25-0.41 x std (AVX2)
==============  =====================  ==========================  ==========================================

OpenVINO bf16 is refused for ModernBERT (``jp_rerank.rerank.plans.UNSUPPORTED``): its export uses eager attention
(the sdpa export scored NaN for a short pair batched with a long one, see
``test_a_short_pair_batched_with_a_long_one_scores_as_if_alone_on_every_backend``), whose mask minimum is -inf in
bf16.

int8 rank agreement on 28 random-weight pairs is coarse (one swapped neighbour costs about 0.003), hence the
margin below the measured range; on a trained model see ``benchmarks/`` for the agreement next to each speed.

A backend added later is picked up from ``InferenceBackend``: it must either agree within a tolerance written
here, or refuse ModernBERT with an error naming itself and the architecture.
"""

from __future__ import annotations

import io
import logging
import random
import shutil
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch

from jp_rerank import DEFAULT_RERANKER, Embedder, Reranker, testing
from jp_rerank.data import demo_texts, load_demo_corpus
from jp_rerank.evaluation.timing import spearman
from jp_rerank.rerank.backends import TorchBackend, run_batches
from jp_rerank.rerank.pairs import EncodedPair
from jp_rerank.rerank.plans import CPU_TOKEN_BUDGET, InferenceBackend, PrecisionOption, int8_file_key, int8_kernel
from jp_rerank.text import normalize_text

QUERY = "富士山の高さは何メートルですか？"

MODERNBERT_TOLERANCE: dict[str, tuple[float, float, str]] = {
    # label: (least Spearman, largest |difference|, "std" (times the fp32 scores' std) or "abs")
    "torch-bf16": (0.99, 0.15, "std"),
    "torch-fp16": (0.99, 0.15, "std"),
    "onnx-fp32": (0.9999, 1e-5, "abs"),
    "onnx-int8": (0.97, 0.4, "std"),
    "openvino-fp32": (0.9999, 1e-5, "abs"),
    "openvino-int8": (0.97, 0.6, "std"),
}
"""Documented agreement of each backend with torch fp32 on ModernBERT (see the module notes)."""


@pytest.fixture(scope="module")
def mb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny ModernBERT cross-encoder (default weights), shared by the module: read only."""
    return testing.build_modernbert_cross_encoder(tmp_path_factory.mktemp("mb") / "japanese-reranker-tiny-model")


@pytest.fixture(scope="module")
def mb_spread_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny ModernBERT whose random scores spread out (rank agreement means something); writable (exports)."""
    return testing.build_modernbert_cross_encoder(tmp_path_factory.mktemp("mb-spread") / "m", initializer_range=0.3)


@pytest.fixture(scope="module")
def mb_embedder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny Ruri-v3-like ModernBERT sentence-transformers embedder with 検索クエリ/検索文書 prompts."""
    return testing.build_dense_embedder(
        tmp_path_factory.mktemp("mb-emb") / "m", arch="modernbert", prompts=testing.RURI_PROMPTS
    )


@pytest.fixture(scope="module")
def docs() -> list[str]:
    texts = [d["text"] for d in load_demo_corpus()][:24]
    return [*texts, "", "短い。", "ｶﾀｶﾅ と　全角スペース", "長い文書です。" * 40]


def _long_text(tokenizer: object, n_tokens: int) -> str:
    """A passage of at least ``n_tokens`` tokens made of the bundled texts."""
    text = "".join(demo_texts())
    while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < n_tokens:  # type: ignore[operator]
        text += text
    return text


def _reference_logits(path: Path, query: str, docs: list[str], max_length: int) -> np.ndarray:
    """Plain transformers: tokenizer pair encoding, one pair per forward pass, no jp-rerank code."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    out = []
    with torch.inference_mode():
        for doc in docs:
            enc = tok(query, doc, truncation="only_second", max_length=max_length, return_tensors="pt")
            out.append(float(model(**enc).logits[0, -1]))
    return np.asarray(out, dtype=np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------------------------- loading


def test_reranker_loads_a_modernbert_folder_with_no_extra_argument(mb_path: Path) -> None:
    reranker = Reranker(mb_path)
    assert type(reranker.model).__name__ == "ModernBertForSequenceClassification"
    assert reranker.max_length == 8192  # the model's own positions; RoPE has no offset to subtract
    loaded = reranker._load()
    assert not loaded.template.uses_token_types
    assert (loaded.template.prefix, loaded.template.middle, loaded.template.suffix) == ((1,), (2, 1), (2,))
    assert loaded.activation == "sigmoid"  # one logit
    scores = reranker.score(QUERY, ["富士山は3776メートルです。", "京都の寺"])
    assert scores.dtype == np.float32
    assert np.all((scores > 0) & (scores < 1))


def test_limit_comes_from_positions_when_the_tokenizer_has_none(mb_path: Path, tmp_path: Path) -> None:
    import json

    folder = tmp_path / "no-limit"
    shutil.copytree(mb_path, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    del config["model_max_length"]  # transformers then reports a huge sentinel, as for many hub uploads
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert Reranker(folder).max_length == 8192
    assert Reranker(folder, max_length=300).max_length == 300


@pytest.mark.usefixtures("tiny_hub")
def test_default_reranker_is_the_v2_modernbert_and_xsmall_keeps_meaning_v1() -> None:
    assert DEFAULT_RERANKER == "xsmall-v2"
    default = Reranker()
    assert default.model_id == "hotchpotch/japanese-reranker-xsmall-v2"
    assert type(default.model).__name__ == "ModernBertForSequenceClassification"  # the tiny hub stand-in
    assert default.max_length == 8192
    assert default.rerank("富士山の高さは？", ["富士山は3776mです。", "京都の寺。"], top_n=1)[0].index in (0, 1)
    v1 = Reranker("xsmall")
    assert v1.model_id == "hotchpotch/japanese-reranker-cross-encoder-xsmall-v1"
    assert type(v1.model).__name__ == "XLMRobertaForSequenceClassification"
    assert v1.max_length == 512


# ---------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8, 32])
def test_scores_equal_a_plain_transformers_forward(mb_path: Path, docs: list[str], batch_size: int) -> None:
    reranker = Reranker(mb_path, precision="fp32", batch_size=batch_size)
    norm_docs = [normalize_text(d) for d in docs]
    expected = _sigmoid(_reference_logits(mb_path, normalize_text(QUERY), norm_docs, reranker.max_length))
    lengths = [len(x) for x in reranker.tokenizer(norm_docs, add_special_tokens=False)["input_ids"]]
    assert max(lengths) > 2 * testing.TINY_LOCAL_ATTENTION  # the sliding-window layers mask something
    assert min(lengths) < testing.TINY_LOCAL_ATTENTION
    orders = [
        list(range(len(docs))),
        list(range(len(docs)))[::-1],
        random.Random(batch_size).sample(range(len(docs)), len(docs)),
    ]
    for order in orders:
        got = reranker.score(QUERY, [docs[i] for i in order])
        np.testing.assert_allclose(got, expected[order], atol=1e-5, rtol=0)
    assert spearman(expected, reranker.score(QUERY, docs)) > 0.999  # and the scores are not all equal
    assert float(np.std(expected)) > 0


def test_truncate_mode_equals_the_tokenizers_own_truncation(mb_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reranker = Reranker(mb_path, precision="fp32", max_length=64, normalize_text=False)
    long_doc = _long_text(reranker.tokenizer, 400)
    docs = [long_doc, "富士山は日本一高い山です。"]
    with caplog.at_level(logging.WARNING, logger="jp_rerank.rerank.cross_encoder"):
        got = reranker.score(QUERY, docs)
    assert "1 of 2 passages exceed max_length=64" in caplog.text
    np.testing.assert_allclose(got, _sigmoid(_reference_logits(mb_path, QUERY, docs, 64)), atol=1e-5, rtol=0)


def test_window_mode_scores_the_best_of_the_tokenizers_own_windows(mb_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reranker = Reranker(mb_path, precision="fp32", max_length=64, overflow="window", window_overlap=16)
    reranker_norm_off = Reranker(
        mb_path, precision="fp32", max_length=64, overflow="window", window_overlap=16, normalize_text=False
    )
    long_doc = _long_text(reranker.tokenizer, 300)
    tok = AutoTokenizer.from_pretrained(str(mb_path))
    model = AutoModelForSequenceClassification.from_pretrained(str(mb_path)).eval()
    windows = tok(
        [QUERY], [long_doc], truncation="only_second", max_length=64, stride=16, return_overflowing_tokens=True
    )
    assert len(windows["input_ids"]) >= 4
    with torch.inference_mode():
        best = max(float(model(input_ids=torch.tensor([ids])).logits[0, -1]) for ids in windows["input_ids"])
    got = reranker_norm_off.score(QUERY, [long_doc, "短い。"])
    np.testing.assert_allclose(got[0], _sigmoid(np.array(best)), atol=1e-5, rtol=0)
    assert reranker.score(QUERY, [long_doc]).shape == (1,)


# ---------------------------------------------------------------------------------------------- long inputs


class _Shapes:
    """A backend that keeps the padded shape of each batch and each row's true length."""

    name = "shapes"

    def __init__(self) -> None:
        self.batches: list[tuple[tuple[int, int], list[int]]] = []

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        mask = inputs["attention_mask"]
        self.batches.append((mask.shape, mask.sum(axis=1).tolist()))
        return np.zeros((len(mask), 1), dtype=np.float32)


def test_a_pair_longer_than_the_cpu_budget_forms_its_own_batch() -> None:
    items = [EncodedPair(0, (5,) * 200, None), EncodedPair(1, (5,) * 8192, None), EncodedPair(2, (5,) * 150, None)]
    shapes = _Shapes()
    run_batches(shapes, items, pad_id=0, batch_size=32, token_budget=CPU_TOKEN_BUDGET)
    assert shapes.batches == [((1, 8192), [8192]), ((2, 200), [200, 150])]


def test_a_long_pair_is_scored_alone_and_right(mb_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reranker = Reranker(mb_path, precision="fp32", normalize_text=False, device="cpu")
    long_doc = _long_text(reranker.tokenizer, CPU_TOKEN_BUDGET + 400)
    docs = ["短い文書です。", long_doc, "富士山は日本一高い山です。"]
    seen: list[list[int]] = []
    original = TorchBackend.logits

    def spy(self: TorchBackend, inputs: dict[str, np.ndarray]) -> np.ndarray:
        seen.append(inputs["attention_mask"].sum(axis=1).tolist())
        return original(self, inputs)

    monkeypatch.setattr(TorchBackend, "logits", spy)
    got = reranker.score(QUERY, docs)
    long_batches = [b for b in seen if max(b) > CPU_TOKEN_BUDGET]
    assert len(long_batches) == 1
    assert len(long_batches[0]) == 1  # alone, padded to nothing but itself
    expected = _sigmoid(_reference_logits(mb_path, QUERY, docs, reranker.max_length))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------- backends


def _cpu_labels() -> list[tuple[str, str]]:
    """Every (backend, precision) the engine offers on CPU: the combinations ``Reranker`` accepts."""
    labels = []
    for backend in get_args(InferenceBackend):
        for precision in get_args(PrecisionOption):
            if precision == "auto":
                continue
            try:
                Reranker("xsmall", device="cpu", backend=backend, precision=precision)  # validates, loads nothing
            except ValueError:
                continue
            labels.append((backend, precision))
    return labels


@pytest.mark.parametrize(("backend", "precision"), _cpu_labels())
def test_every_backend_runs_modernbert_within_its_tolerance_or_refuses_by_name(
    mb_spread_path: Path, docs: list[str], backend: str, precision: str
) -> None:
    reference = Reranker(mb_spread_path, precision="fp32", backend="torch", activation="none").score(QUERY, docs)
    assert float(np.std(reference)) > 0.1  # spread-out scores: agreement is a real check
    label = f"{backend}-{precision}"
    try:
        reranker = Reranker(mb_spread_path, backend=backend, precision=precision, activation="none")  # type: ignore[arg-type]
        got = reranker.score(QUERY, docs)
    except ImportError as exc:
        pytest.skip(f"{backend} is not installed here: {exc}")
    except (ValueError, NotImplementedError, RuntimeError) as exc:  # a refusal must say what and why
        message = str(exc).lower()
        assert backend in message
        assert "modernbert" in message
        return
    if label == "torch-fp32":
        np.testing.assert_array_equal(got, reference)
        return
    assert reranker.scoring_plan.label == label
    assert label in MODERNBERT_TOLERANCE, f"{label} runs ModernBERT: document its tolerance in this module"
    least_rho, largest, unit = MODERNBERT_TOLERANCE[label]
    bound = largest * float(np.std(reference)) if unit == "std" else largest
    assert got.dtype == np.float32
    assert np.isfinite(got).all()
    assert spearman(got, reference) >= least_rho
    assert float(np.abs(got - reference).max()) <= bound
    shuffled = reranker.score(QUERY, docs[::-1])  # input order does not change a pair's score
    assert float(np.abs(shuffled[::-1] - got).max()) <= bound


@pytest.mark.parametrize(("backend", "precision"), _cpu_labels())
def test_a_short_pair_batched_with_a_long_one_scores_as_if_alone_on_every_backend(
    mb_spread_path: Path, docs: list[str], backend: str, precision: str
) -> None:
    """The batch real reranking makes: a 5-token passage padded by hundreds of tokens beside a long passage.

    The padding rows of the short pair lie far more than half a local-attention window past its last real token
    (the window of the tiny model is 16): the case that made OpenVINO score NaN.
    """
    reference = Reranker(mb_spread_path, backend="torch", precision="fp32", activation="none", max_length=512)
    tokenizer = reference.tokenizer
    short, long = "短い。", _long_text(tokenizer, 300)
    lengths = [len(tokenizer(QUERY, d)["input_ids"]) for d in (short, long)]
    assert min(lengths[1], 512) - lengths[0] >= 65
    alone = np.array([reference.score(QUERY, [d])[0] for d in (short, long)])
    try:
        reranker = Reranker(
            mb_spread_path,
            backend=backend,
            precision=precision,
            activation="none",
            max_length=512,  # type: ignore[arg-type]
        )
        got = reranker.score(QUERY, [short, long])
    except ImportError as exc:
        pytest.skip(f"{backend} is not installed here: {exc}")
    except (ValueError, NotImplementedError, RuntimeError) as exc:  # a refusal must say what and why
        message = str(exc).lower()
        assert backend in message
        assert "modernbert" in message
        return
    assert np.isfinite(got).all(), got
    label = f"{backend}-{precision}"
    if label == "torch-fp32":
        np.testing.assert_allclose(got, alone, atol=1e-5)
        return
    _least_rho, largest, unit = MODERNBERT_TOLERANCE[label]
    scale = float(np.std(reference.score(QUERY, docs))) if unit == "std" else 1.0
    assert float(np.abs(got - alone).max()) <= largest * scale


def test_onnx_export_of_modernbert_takes_no_token_types(mb_spread_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    export = Reranker(mb_spread_path, backend="torch", precision="fp32").export()
    assert export.inputs == ("input_ids", "attention_mask")
    assert set(export.files) == {"fp32", int8_file_key(int8_kernel())}


# ---------------------------------------------------------------------------------------------- embedder


def test_embedder_equals_sentence_transformers_encode_query_and_document(mb_embedder_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [*list(demo_texts())[:6], "ｶﾀｶﾅ", "長い文書です。" * 30]
    st = SentenceTransformer(str(mb_embedder_path), device="cpu")
    embedder = Embedder(mb_embedder_path, device="cpu", precision="fp32")
    assert embedder.prefix("query") == "検索クエリ: "
    assert embedder.prefix("document") == "検索文書: "
    norm = [normalize_text(t) for t in texts]
    np.testing.assert_allclose(embedder.embed_documents(texts), st.encode_document(norm), atol=1e-5, rtol=0)
    np.testing.assert_allclose(embedder.embed_queries(texts), st.encode_query(norm), atol=1e-5, rtol=0)
    assert not np.allclose(embedder.embed_queries(texts[:1]), embedder.embed_documents(texts[:1]), atol=1e-4)


def test_ruri_v3_preset_stand_in_gets_its_prefixes(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    cache = tmp_path / "hub"
    installed = testing.install_tiny_hub(cache, ["ruri-v3-30m"], work_dir=tmp_path / "work")
    snapshot = installed["cl-nagoya/ruri-v3-30m"]
    st = SentenceTransformer(str(snapshot), device="cpu")
    assert type(st[0].model).__name__ == "ModernBertModel"
    assert not any(st.prompts.values())  # saved without prompts: the preset must supply them
    embedder = Embedder("ruri-v3-30m", cache_folder=str(cache), device="cpu", precision="fp32")
    np.testing.assert_allclose(embedder.embed_query("東京の天気"), st.encode(["検索クエリ: 東京の天気"])[0], atol=1e-5)


# ---------------------------------------------------------------------------------------------- adapters


def test_langchain_adapters_run_on_modernbert(mb_path: Path, mb_embedder_path: Path) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from langchain_jp_rerank import JapaneseEmbeddings, JapaneseReranker

    reranker = Reranker(mb_path, precision="fp32")
    docs = [Document("京都には寺が多い。"), Document("富士山は3776メートルです。"), Document("")]
    out = JapaneseReranker(reranker=reranker, top_n=2).compress_documents(docs, QUERY)
    expected = reranker.rerank(QUERY, [d.page_content for d in docs], top_n=2)
    assert [d.page_content for d in out] == [docs[r.index].page_content for r in expected]
    assert [d.metadata["relevance_score"] for d in out] == [r.score for r in expected]
    embedder = Embedder(mb_embedder_path, precision="fp32")
    vector = JapaneseEmbeddings(embedder=embedder).embed_query("東京の天気")
    np.testing.assert_allclose(vector, embedder.embed_query("東京の天気"), atol=1e-6)


def test_llamaindex_adapters_run_on_modernbert(mb_path: Path, mb_embedder_path: Path) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode

    from llamaindex_jp_rerank import JapaneseEmbedding, JapaneseRerank

    reranker = Reranker(mb_path, precision="fp32")
    texts = ["京都には寺が多い。", "富士山は3776メートルです。", "北海道の冬は寒い。"]
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in texts]
    out = JapaneseRerank(reranker=reranker, top_n=2).postprocess_nodes(nodes, query_str=QUERY)
    expected = reranker.rerank(QUERY, texts, top_n=2)
    assert [n.node.get_content() for n in out] == [texts[r.index] for r in expected]
    assert [n.score for n in out] == pytest.approx([r.score for r in expected], abs=1e-6)
    embedder = Embedder(mb_embedder_path, precision="fp32")
    vector = JapaneseEmbedding(embedder=embedder).get_query_embedding("東京の天気")
    np.testing.assert_allclose(vector, embedder.embed_query("東京の天気"), atol=1e-6)


# ---------------------------------------------------------------------------------------------- newcomer path


def test_demo_banner_for_a_v2_reranker_that_is_not_downloaded() -> None:
    from jp_rerank.demo import run_demo

    out = io.StringIO()
    report = run_demo(reranker="base-v2", embedder="none", out=out)
    text = out.getvalue()
    assert "!! reranker skipped: 'base-v2' could not be loaded" in text
    assert "hotchpotch/japanese-reranker-base-v2" in text
    assert "--reranker" in text
    assert "rerank" in report.skipped
    assert report.stages == ("bm25",)


@pytest.mark.usefixtures("tiny_hub")
def test_demo_runs_the_default_v2_reranker_offline() -> None:
    from jp_rerank.demo import run_demo

    out = io.StringIO()
    report = run_demo(reranker="xsmall-v2", embedder="none", out=out)
    assert report.stages == ("bm25", "rerank")
    assert "reranker: Reranker(model='xsmall-v2'" in out.getvalue()
    assert not report.skipped


# ---------------------------------------------------------------------------------------------- speed benchmark


def test_bench_accepts_the_v2_shapes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from jp_rerank.cli import main
    from jp_rerank.evaluation import bench

    assert {"tiny-v2", "xsmall-v2", "small-v2", "base-v2", "ruri-v3-reranker-310m"} <= set(bench.RERANK_SHAPES)
    seen: dict[str, object] = {}

    def fake_run_bench(**kwargs: object) -> bench.BenchReport:
        seen.update(kwargs)
        return bench.BenchReport()

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    assert main(["bench", "--data", str(tmp_path), "--shapes", "xsmall,tiny-v2,xsmall-v2,small-v2"]) == 0
    assert seen["shapes"] == ["xsmall", "tiny-v2", "xsmall-v2", "small-v2"]


def test_same_shape_v2_model_is_a_modernbert_of_the_real_shape(xlmr_ce_path: Path, tmp_path: Path) -> None:
    import json

    from transformers import AutoTokenizer

    from jp_rerank.evaluation.bench_models import same_shape_cross_encoder

    path, note = same_shape_cross_encoder("tiny-v2", tmp_path, tokenizer_json=xlmr_ce_path / "tokenizer.json")
    config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "modernbert"
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (3, 256, 4)
    assert (config["intermediate_size"], config["local_attention"], config["vocab_size"]) == (1024, 128, 102400)
    assert "hotchpotch/japanese-reranker-tiny-v2" in note
    assert "the given real tokenizer" in note
    tok = AutoTokenizer.from_pretrained(path)  # the given tokenizer's own pair template, for real pair lengths
    assert (
        tok("富士山", "東京")["input_ids"]
        == AutoTokenizer.from_pretrained(str(xlmr_ce_path))("富士山", "東京")["input_ids"]
    )
    assert Reranker(path, precision="fp32").score(QUERY, ["富士山は3776メートル。"]).shape == (1,)
    again, _ = same_shape_cross_encoder("tiny-v2", tmp_path, tokenizer_json=xlmr_ce_path / "tokenizer.json")
    assert again == path  # built once, reused
