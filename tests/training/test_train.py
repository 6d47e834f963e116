"""``jp_rerank.training.train`` end to end on tiny models: losses, the saved folder, resume, budget, the CLI."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jp_rerank import Reranker
from jp_rerank.data import load_demo_corpus
from jp_rerank.training import TrainingDataError, train

pytest.importorskip("accelerate")
pytest.importorskip("datasets")

pytestmark = pytest.mark.train


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Any:
    """Tiny models train fastest on one thread, and two threads crawl when the CPU is shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _noise(rng: random.Random) -> str:
    """ASCII noise like the given negatives of ``pairs_file``."""
    return " ".join("".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(10))


@pytest.fixture(scope="module")
def trained(
    pairs_file: Path, fast: dict[str, Any], xlmr_ce_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    out = tmp_path_factory.mktemp("runs") / "bce"
    mined = out.parent / "mined.jsonl"
    return train(
        pairs_file,
        out,
        base=xlmr_ce_path,
        max_steps=80,
        num_negatives=3,
        random_negatives=0,
        save_mined=str(mined),
        **fast,
    )


def test_bce_loss_goes_down_and_the_held_out_split_is_scored(trained: Any) -> None:
    losses = [loss for _, loss in trained.losses]
    assert len(losses) >= 10
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    assert trained.stopped_by == "max_steps"
    assert trained.global_step == 80
    assert trained.eval_queries == 9
    for metrics in (trained.metrics_first_stage, trained.metrics_before, trained.metrics_after):
        assert set(metrics) == {"ndcg@10", "mrr@10", "recall@1", "recall@10"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert trained.mining["hard_negatives"] > 0  # the two given negatives were topped up with a mined one
    assert trained.data["loss_settings"]["loss"] == "BinaryCrossEntropyLoss"


def test_saved_folder_scores_through_reranker_and_learned_the_signal(trained: Any) -> None:
    out = trained.output_dir
    assert not (out / "checkpoints").exists()  # removed after a finished run
    reranker = Reranker(out, device="cpu", precision="fp32")
    doc = load_demo_corpus()[3]
    scores = reranker.score(f"{doc['title']}について教えて", [doc["text"], _noise(random.Random(5))])
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()
    assert scores[0] > scores[1]
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(out))
    assert ce.num_labels == 1
    assert ce.predict([("質問", "文書")]).shape == (1,)


def test_saved_folder_works_in_langchain_and_llamaindex(trained: Any) -> None:
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from langchain_jp_rerank import JapaneseReranker
    from llamaindex_jp_rerank import JapaneseRerank

    engine = Reranker(trained.output_dir, device="cpu")
    doc = load_demo_corpus()[7]
    texts = [_noise(random.Random(1)), doc["text"], _noise(random.Random(2))]
    query = f"{doc['title']}について教えて"
    # LangChain loads the folder by path itself; LlamaIndex is handed an engine built on it
    lc_reranker = JapaneseReranker(model=str(trained.output_dir), device="cpu", top_n=1)
    lc = lc_reranker.compress_documents([Document(page_content=t) for t in texts], query)
    assert [d.page_content for d in lc] == [doc["text"]]
    assert 0.0 <= lc[0].metadata["relevance_score"] <= 1.0
    li = JapaneseRerank(reranker=engine, top_n=1).postprocess_nodes(
        [NodeWithScore(node=TextNode(text=t), score=0.0) for t in texts], query_str=query
    )
    assert [n.node.get_content() for n in li] == [doc["text"]]


def _demo_beir(beir: Path, n: int = 12) -> Path:
    """A BEIR folder (test split) of the first ``n`` demo passages, one question each."""
    (beir / "qrels").mkdir(parents=True)
    docs = load_demo_corpus()[:n]
    with (beir / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps({"_id": d["id"], "title": d["title"], "text": d["text"]}, ensure_ascii=False) + "\n")
    with (beir / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for i, d in enumerate(docs):
            fh.write(json.dumps({"_id": f"q{i}", "text": f"{d['title']}について教えて"}, ensure_ascii=False) + "\n")
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\t{d['id']}\t1\n" for i, d in enumerate(docs)),
        encoding="utf-8",
    )
    return beir


def test_saved_folder_runs_in_jp_rerank_eval(trained: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jp_rerank.cli import main

    beir = _demo_beir(tmp_path / "beir")
    result_file = tmp_path / "eval.json"
    argv = ["eval", str(beir), "--setting", "rerank", "-m", str(trained.output_dir), "--bm25", "char2"]
    assert main([*argv, "--first-k", "5", "--device", "cpu", "-o", str(result_file)]) == 0
    assert "ndcg@10" in capsys.readouterr().out.lower()
    saved = json.loads(result_file.read_text(encoding="utf-8"))
    assert str(trained.output_dir) in json.dumps(saved, ensure_ascii=False)  # the trained folder was the reranker


def test_model_card_and_result_file(trained: Any, fast: dict[str, Any], xlmr_ce_path: Path) -> None:
    card = (trained.output_dir / "README.md").read_text(encoding="utf-8")
    assert f"fine-tuned from `{xlmr_ce_path}`" in card
    assert "library_name: sentence-transformers" in card
    assert f"trained on {trained.train_queries} questions, {trained.train_pairs} pairs" in card
    assert "BinaryCrossEntropyLoss, pos_weight" in card
    assert f"| before: {xlmr_ce_path} |" in card
    assert "| after: bce |" in card
    assert "| first stage alone (bm25) |" in card
    for metrics in (trained.metrics_before, trained.metrics_after):
        assert f"{metrics['ndcg@10']:.4f}" in card
    assert f"{trained.eval_queries} held-out questions" in card
    assert "48 questions read, 0 bad rows skipped" in card
    assert "steps: 80 (stopped by max steps), batch 8, learning rate 0.003" in card
    assert "seed 42" in card
    assert "${" not in card  # every placeholder of the template was filled
    saved = json.loads((trained.output_dir / "training_result.json").read_text(encoding="utf-8"))
    assert saved["global_step"] == 80
    assert saved["metrics_after"] == trained.metrics_after
    assert saved["config"]["learning_rate"] == fast["learning_rate"]


def test_mined_set_is_saved_and_reused_without_mining(
    trained: Any, fast: dict[str, Any], xlmr_ce_path: Path, tmp_path: Path
) -> None:
    mined = trained.output_dir.parent / "mined.jsonl"
    rows = [json.loads(line) for line in mined.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 48
    assert all(len(r["negatives"]) == 3 for r in rows)
    assert all(r["negatives"][0].isascii() and not r["negatives"][2].isascii() for r in rows)  # given, then mined
    again = train(
        mined, tmp_path / "again", base=xlmr_ce_path, max_steps=2, num_negatives=3, random_negatives=0, **fast
    )
    assert again.mining["queries_mined"] == 0
    assert again.train_pairs == trained.train_pairs
    assert again.eval_queries == trained.eval_queries  # same seed, same questions: the same held-out split


def test_separate_eval_data_is_the_held_out_set(
    pairs_file: Path, fast: dict[str, Any], xlmr_ce_path: Path, tmp_path: Path
) -> None:
    beir = _demo_beir(tmp_path / "eval-beir", n=10)
    settings = {**fast, "eval_queries": 9, "num_negatives": 0, "random_negatives": 0}
    result = train(pairs_file, tmp_path / "sep", base=xlmr_ce_path, max_steps=2, eval_data=str(beir), **settings)
    assert result.eval_queries == 10  # every question of the eval folder, none split off the training data
    assert result.train_queries == 48
    assert result.metrics_after
    assert result.metrics_first_stage["recall@10"] == 1.0  # 10 passages in its pool: all are candidates
    assert "(a separate file)" in (result.output_dir / "README.md").read_text(encoding="utf-8")


def test_mean_pooled_embedder_gets_a_head_and_the_cls_mean_layer(
    pairs_file: Path, fast: dict[str, Any], dense_path: Path, tmp_path: Path
) -> None:
    base_layers = json.loads((dense_path / "config.json").read_text())["num_hidden_layers"]
    result = train(pairs_file, tmp_path / "from-dense", base=dense_path, max_steps=4, **_no_eval(fast))
    assert result.base.kind == "sentence-transformer"
    assert result.base.pooling == "mean"
    assert result.base.cls_mean_layer
    config = json.loads((result.output_dir / "config.json").read_text())
    assert config["num_hidden_layers"] == base_layers + 1
    assert config["architectures"][0].endswith("ForSequenceClassification")
    assert Reranker(result.output_dir, device="cpu").score("質問", ["文書", "別の文書"]).shape == (2,)
    assert "hand [CLS] the mean of all tokens" in (result.output_dir / "README.md").read_text(encoding="utf-8")
    off = train(pairs_file, tmp_path / "off", base=dense_path, max_steps=1, cls_mean_layer="off", **_no_eval(fast))
    assert not off.base.cls_mean_layer


def _no_eval(fast: dict[str, Any]) -> dict[str, Any]:
    return {**fast, "eval_queries": 0, "num_negatives": 0, "random_negatives": 0}


def test_cls_mean_layer_hands_cls_the_mean_of_the_tokens(dense_path: Path) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    from jp_rerank.training.model import add_cls_mean_layer, cls_spread_ratio

    ce = CrossEncoder(str(dense_path), num_labels=1)
    model = ce.model.eval()
    enc = ce.tokenizer(
        ["富士山の高さ", "琵琶湖"], ["富士山は高い山です。", "湖です"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        before = model.base_model(**enc).last_hidden_state
    ratio_before = cls_spread_ratio(model, ce.tokenizer, [("富士山の高さ", "山"), ("琵琶湖", "湖"), ("寺", "京都の寺")])
    last_ln = model.base_model.encoder.layer[-1].output.LayerNorm
    add_cls_mean_layer(model)
    with torch.no_grad():
        after = model.base_model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    mean = (before * mask).sum(1) / mask.sum(1)
    x = mean + before[:, 0]
    normed = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + last_ln.eps)
    expected = normed * last_ln.weight + last_ln.bias
    torch.testing.assert_close(after[:, 0], expected, atol=1e-4, rtol=1e-4)
    assert model.config.num_hidden_layers == len(model.base_model.encoder.layer)
    assert ratio_before < 1.0


def test_listwise_loss_on_a_mecab_bert_base(
    pairs_file: Path, fast: dict[str, Any], bert_ja_ce_path: Path, tmp_path: Path
) -> None:
    hf = {"lr_scheduler_type": "cosine", "max_grad_norm": 0.5}  # passed through to CrossEncoderTrainingArguments
    result = train(
        pairs_file,
        tmp_path / "listwise",
        base=bert_ja_ce_path,
        loss="listwise",
        max_steps=6,
        trainer_args=hf,
        **_no_eval(fast),
    )
    assert result.data["loss_settings"]["loss"].startswith("LambdaLoss")
    assert result.config.trainer_args == hf
    card = (result.output_dir / "README.md").read_text(encoding="utf-8")
    assert "cosine schedule" in card
    assert "other trainer arguments: `lr_scheduler_type='cosine'`, `max_grad_norm=0.5`" in card
    assert all(np.isfinite(loss) for _, loss in result.losses)
    assert Reranker(result.output_dir, device="cpu").score("富士山", ["富士山は高い", "湖"]).shape == (2,)


def test_modernbert_base_the_shape_of_the_v2_rerankers(pairs_file: Path, fast: dict[str, Any], tmp_path: Path) -> None:
    from jp_rerank.testing import build_modernbert_cross_encoder

    base = build_modernbert_cross_encoder(tmp_path / "modernbert-ce")
    result = train(pairs_file, tmp_path / "from-v2", base=base, max_steps=3, **_no_eval(fast))
    assert result.base.kind == "cross-encoder"
    assert result.base.model_type == "modernbert"
    assert not result.base.modified  # a cross-encoder trains as is: no new head, no extra layer
    config = json.loads((result.output_dir / "config.json").read_text())
    assert config["model_type"] == "modernbert"
    assert config["num_hidden_layers"] == json.loads((base / "config.json").read_text())["num_hidden_layers"]
    assert Reranker(result.output_dir, device="cpu").score("富士山", ["富士山は高い", "湖"]).shape == (2,)
    with pytest.raises(ValueError, match="keep_layers supports BERT-style encoders"):
        train(pairs_file, tmp_path / "cut", base=base, max_steps=1, keep_layers=1, **_no_eval(fast))
    assert not (tmp_path / "cut").exists()  # failed before training: nothing left that would ask for --resume


def test_distillation_targets_the_teachers_logits(
    pairs_file: Path, fast: dict[str, Any], xlmr_ce_path: Path, bert_ja_ce_path: Path, tmp_path: Path
) -> None:
    result = train(
        pairs_file,
        tmp_path / "distill",
        base=bert_ja_ce_path,
        loss="distill",
        teacher=str(xlmr_ce_path),
        max_steps=4,
        **_no_eval(fast),
    )
    assert result.data["loss_settings"]["loss"] == f"MSELoss to the logits of {xlmr_ce_path}"
    assert all(np.isfinite(loss) for _, loss in result.losses)
    with pytest.raises(ValueError, match="needs a teacher"):
        train(pairs_file, tmp_path / "no-teacher", base=bert_ja_ce_path, loss="distill")


def test_time_budget_stops_cleanly_then_saves_and_evaluates(
    pairs_file: Path, fast: dict[str, Any], xlmr_ce_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="jp_rerank.training")
    result = train(
        pairs_file,
        tmp_path / "budget",
        base=xlmr_ce_path,
        max_steps=100_000,
        time_budget=8.0,  # the whole run: reading, mining, held-out scoring, training, saving
        keep_checkpoints=True,
        **fast,
    )
    assert result.stopped_by == "time_budget"
    assert 0 < result.global_step < 100_000
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert progress, caplog.text  # the log says how far it is: steps, loss, pairs/s, time left in the budget
    assert all(" pairs/s " in line and "budget left " in line for line in progress)
    assert result.metrics_after
    assert Reranker(result.output_dir, device="cpu").score("質問", ["文書"]).shape == (1,)
    # the stop wrote a checkpoint, so the kept run can be resumed for more steps
    assert (tmp_path / "budget" / "checkpoints" / f"checkpoint-{result.global_step}").is_dir()
    more = train(pairs_file, tmp_path / "budget", resume=True, max_steps=result.global_step + 3, time_budget=None)
    assert more.resumed_from_step == result.global_step
    assert more.global_step == result.global_step + 3


class _Interrupt:
    """A TrainerCallback raising KeyboardInterrupt (as Ctrl-C would) after ``step``."""

    def __new__(cls, step: int) -> Any:
        from transformers import TrainerCallback

        class Interrupt(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.global_step >= step:
                    raise KeyboardInterrupt(f"interrupted after step {state.global_step}")

        return Interrupt()


def test_interrupted_run_resumes_from_its_last_checkpoint(
    pairs_file: Path, fast: dict[str, Any], xlmr_ce_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "interrupted"
    settings = {**fast, "save_steps": 4, "logging_steps": 1, "eval_queries": 0, "num_negatives": 0}
    with pytest.raises(KeyboardInterrupt):
        train(pairs_file, out, base=xlmr_ce_path, max_steps=20, callbacks=[_Interrupt(6)], **settings)
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    assert not (out / "config.json").exists()  # nothing final was saved
    with pytest.raises(FileExistsError, match="unfinished training run; pass resume=True"):
        train(pairs_file, out, base=xlmr_ce_path, max_steps=20, **settings)
    with pytest.raises(ValueError, match="cannot change learning_rate when resuming"):
        train(pairs_file, out, resume=True, learning_rate=0.1)
    result = train(pairs_file, out, resume=True, max_steps=10)
    assert result.resumed_from_step == 4
    assert result.global_step == 10
    steps = [step for step, _ in result.losses]
    assert steps[-6:] == [5, 6, 7, 8, 9, 10]  # steps 5-6 of the interrupted run were redone from the checkpoint
    assert result.config.learning_rate == fast["learning_rate"]  # settings came from the run
    assert Reranker(out, device="cpu").score("質問", ["文書"]).shape == (1,)


class _Meanwhile:
    """A TrainerCallback that runs ``action`` once, after ``step``, while the run is live."""

    def __new__(cls, step: int, action: Any) -> Any:
        from transformers import TrainerCallback

        class Meanwhile(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.global_step == step:
                    action()

        return Meanwhile()


def test_a_second_run_into_a_live_runs_folder_is_refused(
    pairs_file: Path, fast: dict[str, Any], xlmr_ce_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "live"
    settings = {**fast, "logging_steps": 1, "save_steps": 2, "eval_queries": 0, "num_negatives": 0}
    refused: list[str] = []

    def overlap() -> None:  # a --resume and a fresh run into the folder of the run that is training now
        for kwargs in ({"resume": True, "max_steps": 3}, {"base": xlmr_ce_path, "max_steps": 3, **settings}):
            with pytest.raises(FileExistsError) as caught:
                train(pairs_file, out, **kwargs)
            refused.append(str(caught.value))

    result = train(pairs_file, out, base=xlmr_ce_path, max_steps=6, callbacks=[_Meanwhile(4, overlap)], **settings)
    assert len(refused) == 2
    assert all(f"another training run is writing to {out}" in message for message in refused)
    assert result.global_step == 6  # the live run was not disturbed
    assert json.loads((out / "training_result.json").read_text(encoding="utf-8"))["global_step"] == 6


def test_a_run_killed_while_preparing_its_data_is_started_again(
    pairs_file: Path, fast: dict[str, Any], xlmr_ce_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed-while-mining"
    (out / "checkpoints").mkdir(parents=True)  # what SIGKILL during mining leaves: a half-written set, no run.json
    (out / "checkpoints" / "train.jsonl").write_text('{"query": "富士山の', encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="stopped while preparing its data: run again without resume"):
        train(pairs_file, out, resume=True)
    settings = {**fast, "eval_queries": 0, "num_negatives": 0}
    assert train(pairs_file, out, base=xlmr_ce_path, max_steps=2, **settings).global_step == 2


@pytest.mark.slow
def test_killed_process_resumes(pairs_file: Path, fast: dict[str, Any], xlmr_ce_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    settings = {**fast, "save_steps": 3, "eval_queries": 0, "num_negatives": 0}
    settings["trainer_args"] = {"gradient_accumulation_steps": 4}
    code = (
        "import sys, json\n"
        "from jp_rerank.training import train\n"
        f"train({str(pairs_file)!r}, {str(out)!r}, base={str(xlmr_ce_path)!r}, max_steps=100000, "
        f"**json.loads({json.dumps(settings)!r}))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 240
        while not list((out / "checkpoints").glob("checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, "the training process ended early"
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    written = sorted(
        int(p.parent.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*/trainer_state.json")
    )
    result = train(pairs_file, out, resume=True, max_steps=written[-1] + 2)
    assert result.resumed_from_step in written
    assert result.global_step == written[-1] + 2


def test_bad_data_fails_before_any_model_work_and_leaves_nothing(xlmr_ce_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "質問", "positive": "文書"}\n{"query": "質問2"}\n', encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"bad\.jsonl:2: missing field 'positive' or 'positives'"):
        train(bad, tmp_path / "out", base=xlmr_ce_path)
    assert not (tmp_path / "out").exists()
    with pytest.raises(TypeError, match="unknown training option"):
        train(bad, tmp_path / "out", base=xlmr_ce_path, learning_rat=1e-4)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        train(bad, tmp_path / "out", base=xlmr_ce_path, batch_size=0)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(bad, tmp_path / "out", resume=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        train(bad, tmp_path / "full", base=xlmr_ce_path)


def test_no_negatives_at_all_is_a_clear_error(xlmr_ce_path: Path, tmp_path: Path) -> None:
    data = tmp_path / "pos-only.jsonl"
    data.write_text(
        "".join(json.dumps({"query": f"質問{i}", "positive": f"文書{i}"}, ensure_ascii=False) + "\n" for i in range(5)),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="no negatives to train with"):
        train(data, tmp_path / "out", base=xlmr_ce_path, num_negatives=0, random_negatives=0)


def test_length_grouped_batches_keep_the_label_mix() -> None:
    from datasets import Dataset

    from jp_rerank.training._hf import LengthGroupedBatchSampler

    n = 400
    labels = [1.0 if i % 5 == 0 else 0.0 for i in range(n)]
    # positives are long and negatives short: sorting by length alone would separate them
    passages = [("長" * (200 + i % 37)) if y else ("短" * (20 + i % 11)) for i, y in enumerate(labels)]
    ds = Dataset.from_dict({"query": ["q"] * n, "passage": passages, "label": labels})
    sampler = LengthGroupedBatchSampler(ds, batch_size=10, drop_last=False, valid_label_columns=["label"], seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert all(1 <= sum(labels[i] for i in b) <= 3 for b in batches)
    assert all(9 <= len(b) <= 11 for b in batches)
    spread = [
        max(len(passages[i]) for i in b if labels[i]) - min(len(passages[i]) for i in b if labels[i]) for b in batches
    ]
    assert np.mean(spread) < 12  # similar lengths within a batch (random batches would spread over ~36)
    assert list(sampler) == batches  # same epoch, same order (what resuming relies on)
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_cli_trains_and_prints_the_table(
    pairs_file: Path, xlmr_ce_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jp_rerank.cli import EXIT_USAGE, main
    from jp_rerank.commands.train import parse_duration

    data = tmp_path / "with-bad-rows.jsonl"
    lines = pairs_file.read_text(encoding="utf-8").splitlines()
    data.write_text("\n".join([*lines[:3], "{not json", *lines[3:], '{"query": "x"}']) + "\n", encoding="utf-8")
    out = tmp_path / "cli"
    argv = ["train", str(data), "-o", str(out), "-m", str(xlmr_ce_path), "--max-steps", "3", "--negatives", "0"]
    argv += ["--eval-queries", "9", "--eval-depth", "5", "--device", "cpu", "--quiet", "--lr", "1e-3"]
    argv += ["--time-budget", "10m", "--trainer-arg", "max_grad_norm=0.5", "--trainer-arg", "adam_epsilon=1e-7"]
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"jp-rerank train: error: {data}:4: invalid JSON" in err
    assert not out.exists()
    assert main([*argv, "--skip-bad-rows"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "first stage" in printed
    assert "after" in printed
    assert f"skipped 2 bad rows of {data}" in printed
    assert f"saved {out} (3 steps, stopped by max steps" in printed
    saved = json.loads((out / "training_result.json").read_text(encoding="utf-8"))
    assert saved["data"]["skipped_rows"] == 2
    assert saved["data"]["questions"] == 48
    assert saved["config"]["time_budget"] == 600.0
    assert saved["config"]["learning_rate"] == 1e-3
    assert saved["config"]["num_negatives"] == 0
    assert saved["config"]["batch_size"] == 16  # unset options keep the defaults
    assert saved["config"]["trainer_args"] == {"max_grad_norm": 0.5, "adam_epsilon": 1e-7}
    assert "2 bad rows skipped" in (out / "README.md").read_text(encoding="utf-8")
    assert Reranker(out, device="cpu").score("質問", ["文書"]).shape == (1,)
    assert parse_duration("1h30m") == 5400.0
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("soon")


def test_resume_passes_over_a_checkpoint_cut_short_by_a_kill(tmp_path: Path) -> None:
    """A SIGKILL while transformers saves leaves the newest checkpoint without (or with half of) its state file."""
    from jp_rerank.training.checkpoints import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path) is None
    for step, state in ((4, "{}"), (8, None), (12, '{"global_st'), (10, '{"global_step": 10}')):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state, encoding="utf-8")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")  # 12 is cut short, 8 has no state
