"""Very long inputs: nothing crashes the process, and the work stays bounded (issue 12, items 5 and 9).

MeCab (fugashi) segfaults on inputs from about 200,000 characters, which used to kill the whole process from a
long BM25 query, ``jp-rerank index`` with one huge passage, or a MeCab cross-encoder on a long document. Each of
those runs here in a subprocess, so a crash fails the test instead of killing pytest. NFKC can make one character
into 18, so ``max_chars`` must hold after normalisation; a ``window_overlap`` larger than half a window is capped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jp_rerank import Embedder, Reranker
from jp_rerank.lexical.tokenizers import MECAB_MAX_CHARS, MeCabTokenizer, prepare_text, split_for_analysis
from jp_rerank.rerank.pairs import PairEncoder, PairTemplate

pytestmark = pytest.mark.timeout(300)

RUN, TAIL = 210_000, " 東京の天気"
LONG = "a" * RUN + TAIL
"""A 210,000-character run that MeCab cannot take whole (unpatched, it segfaults from about 200,000), then words."""


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, env=env, timeout=240
    )


def assert_survived(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode} (-11 is a segfault):\n{proc.stderr[-3000:]}"
    return proc.stdout


# ------------------------------------------------------------------------------------------------ item 5


def test_mecab_entry_points_take_any_length(tmp_path: Path) -> None:
    """The tokenizer, a BM25 query and ``jp-rerank index`` with one huge passage, in one child process."""
    src = tmp_path / "big.txt"
    src.write_text(LONG + "\n大阪の食べ物\n", encoding="utf-8")
    out = assert_survived(
        run_python(
            """
            import sys
            from jp_rerank.cli import main
            from jp_rerank.lexical import BM25Index
            from jp_rerank.lexical.tokenizers import MeCabTokenizer
            long = "a" * int(sys.argv[1]) + sys.argv[2]
            tokens = MeCabTokenizer(form="surface")(long)
            print("tokenizer", tokens[-2:])
            print("spaced", len(MeCabTokenizer(form="surface")("a " * 100_000)))
            index = BM25Index("mecab").index(["東京の天気は晴れ", "大阪の食べ物"], ids=["tokyo", "osaka"])
            print("bm25", [h.id for h in index.search(long, k=2)])
            print("cli", main(["index", sys.argv[3], "-o", sys.argv[4], "--bm25", "mecab"]))
            """,
            str(RUN),
            TAIL,
            str(src),
            str(tmp_path / "idx"),
        )
    )
    lines = out.splitlines()
    assert lines[0] == "tokenizer ['東京', '天気']"
    assert lines[1] == "spaced 100000"  # every word kept: the cuts fall on spaces
    assert lines[2] == "bm25 ['tokyo']"
    assert lines[3:] == ["indexed 2 passages into " + str(tmp_path / "idx") + " (bm25)", "cli 0"]


def test_pieces_give_the_same_tokens_as_one_call_on_ordinary_text() -> None:
    import fugashi
    import unidic_lite

    text = "".join(f"東京都{i}番地に住んでいます。明日は晴れるでしょう！" for i in range(1500))  # ~43,000 characters
    assert len(text) > 3 * MECAB_MAX_CHARS
    pieces = split_for_analysis(prepare_text(text), MECAB_MAX_CHARS)
    assert len(pieces) > 3
    assert all(len(p) <= MECAB_MAX_CHARS and p.endswith(("。", "!")) for p in pieces[:-1])
    tagger = fugashi.Tagger(f'-d "{unidic_lite.DICDIR}" -r "{unidic_lite.DICDIR}/mecabrc"')
    whole = [w.surface for w in tagger(prepare_text(text))]  # safe at this length
    tok = MeCabTokenizer(form="surface", drop_function_words=False)
    assert tok(text) == [t for t in whole if t.strip() and t not in "。!"]


@pytest.mark.slow
def test_mecab_cross_encoder_on_a_long_query_and_a_long_document(bert_ja_ce_path: Path) -> None:
    out = assert_survived(
        run_python(
            """
            import sys, torch
            torch.set_num_threads(1)
            from jp_rerank import Reranker
            long = "a" * int(sys.argv[2]) + sys.argv[3]
            reranker = Reranker(
                sys.argv[1], device="cpu", overflow="window", max_length=64, batch_size=256, window_overlap=0
            )
            try:
                reranker.score(long, ["大阪の食べ物"])
            except ValueError as exc:
                print(exc)
            print(reranker.score("東京の天気", [long, "大阪の食べ物"]).tolist())
            """,
            str(bert_ja_ce_path),
            str(RUN),
            TAIL,
        )
    )
    error, scores = out.strip().splitlines()
    assert "queries are never truncated" in error  # the query was tokenized (in pieces) and measured
    assert len(json.loads(scores)) == 2  # the document was scored in window mode
    assert all(np.isfinite(json.loads(scores)))


# ------------------------------------------------------------------------------------------------ item 9

EXPANDS = "\ufdfa"
"""One character that NFKC turns into 18."""


def test_max_chars_holds_after_nfkc_before_any_model_work(xlmr_ce_path: Path) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", max_chars=10_000)
    with pytest.raises(ValueError, match=r"documents\[1\] has 1000 characters but 18000 after NFKC normalisation"):
        reranker.score("質問", ["短い", EXPANDS * 1000])
    with pytest.raises(ValueError, match=r"query has 600 characters but 10800 after NFKC"):
        reranker.score(EXPANDS * 600, ["短い"])
    assert reranker._loaded is None  # refused before the model was even loaded
    default = Reranker(xlmr_ce_path, device="cpu")  # the default cap of 1,000,000 characters
    with pytest.raises(ValueError, match="after NFKC normalisation, over the cap max_chars=1000000"):
        default.score("質問", [EXPANDS * 60_000])  # 60,000 characters, 1,080,000 after NFKC
    raw = Reranker(xlmr_ce_path, device="cpu", max_chars=10_000, normalize_text=False)  # no NFKC, no expansion
    assert raw.score("質問", [EXPANDS * 1000]).shape == (1,)


def test_embedder_max_chars_holds_after_nfkc(dense_path: Path) -> None:
    embedder = Embedder(dense_path, device="cpu", max_chars=10_000)
    with pytest.raises(ValueError, match=r"texts\[0\] has 1000 characters but 18000 after NFKC normalisation"):
        embedder.embed_documents([EXPANDS * 1000])
    assert embedder.embed_documents(["ﾃｽﾄ" * 3000]).shape[0] == 1  # 9,000 characters, as many after NFKC: fine


def test_window_overlap_is_capped_at_half_a_window(bert_ja_ce_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bert_ja_ce_path)
    encoder = PairEncoder(tok, PairTemplate.from_tokenizer(tok, segment_types=True), 64)
    doc = "東京の天気は晴れです。" * 400
    doc_ids = encoder.tokenize([doc])[0]
    budget = 64 - len(encoder.tokenize(["天気"])[0]) - encoder.template.n_special

    def windows(overlap: int) -> list[tuple[int, ...]]:
        request = encoder.encode_request(["天気"], [[doc]], overflow="window", overlap=overlap)
        return [item.input_ids for item in request.items]

    huge = windows(10**6)
    assert len(huge) <= 2 * len(doc_ids) // budget + 2  # was len(doc_ids) - budget + 1 (one window per token)
    assert all(len(ids) <= 64 for ids in huge)
    assert huge == windows(budget // 2)
    assert len(windows(0)) < len(huge)  # no overlap: fewer windows


def test_huge_window_overlap_scores_like_half_a_window(bert_ja_ce_path: Path) -> None:
    doc = "東京の天気は晴れです。" * 60
    huge = Reranker(bert_ja_ce_path, device="cpu", max_length=48, overflow="window", window_overlap=10**6)
    q_ids = huge.tokenizer("天気", add_special_tokens=False)["input_ids"]
    budget = 48 - len(q_ids) - 3  # [CLS] q [SEP] d [SEP]
    half = Reranker(bert_ja_ce_path, device="cpu", max_length=48, overflow="window", window_overlap=budget // 2)
    np.testing.assert_allclose(huge.score("天気", [doc]), half.score("天気", [doc]), atol=1e-6)
