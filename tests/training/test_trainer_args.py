"""``trainer_args``: fields of CrossEncoderTrainingArguments passed through, checked, and set from the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from jp_rerank.commands.train import parse_trainer_arg
from jp_rerank.training import TrainConfig, train


def test_an_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown key 'max_grad_nrom'.*did you mean 'max_grad_norm'"):
        TrainConfig(trainer_args={"max_grad_nrom": 0.5})
    with pytest.raises(ValueError, match="unknown key 'no_such_field'"):
        train(tmp_path / "unused.jsonl", tmp_path / "out", trainer_args={"no_such_field": 1})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("key", "setting"),
    [
        ("learning_rate", r"learning_rate \(--lr\)"),
        ("warmup_ratio", r"warmup_ratio \(--warmup-ratio\)"),
        ("per_device_train_batch_size", r"batch_size \(--batch-size\)"),
        ("output_dir", "the output folder"),
        ("eval_strategy", r"eval_queries / eval_data \(jp-rerank scores the held-out split itself\)"),
    ],
)
def test_a_key_jp_rerank_sets_names_the_setting_to_use(key: str, setting: str) -> None:
    with pytest.raises(ValueError, match=rf"'{key}' is set by jp-rerank; use {setting}"):
        TrainConfig(trainer_args={key: 1})


def test_values_must_be_json_and_the_config_round_trips() -> None:
    with pytest.raises(ValueError, match="the value of 'max_grad_norm' must be JSON"):
        TrainConfig(trainer_args={"max_grad_norm": object()})
    cfg = TrainConfig(trainer_args={"max_grad_norm": 0.5, "report_to": ["none"]})
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.as_dict()))) == cfg


def test_passed_keys_reach_the_training_arguments(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    from jp_rerank.training.fit import trainer_arguments

    cfg = TrainConfig(
        learning_rate=1e-4,
        trainer_args={"max_grad_norm": 0.5, "gradient_accumulation_steps": 3, "lr_scheduler_type": "cosine"},
    )
    args = trainer_arguments(cfg, tmp_path / "checkpoints", per_step=8, bf16=False, device="cpu")
    assert args.max_grad_norm == 0.5
    assert args.gradient_accumulation_steps == 3
    assert args.lr_scheduler_type == "cosine"
    assert args.learning_rate == 1e-4  # jp-rerank's own settings are kept
    assert args.per_device_train_batch_size == 8
    assert args.report_to in ("none", [], ["none"])  # jp-rerank's default when trainer_args leaves it unset
    overridden = trainer_arguments(
        TrainConfig(trainer_args={"logging_first_step": False}), tmp_path, per_step=8, bf16=False, device="cpu"
    )
    assert overridden.logging_first_step is False


def test_cli_value_parsing() -> None:
    assert parse_trainer_arg("warmup_steps=10") == ("warmup_steps", 10)
    assert parse_trainer_arg("max_grad_norm=0.5") == ("max_grad_norm", 0.5)
    assert parse_trainer_arg("lr_scheduler_type=cosine") == ("lr_scheduler_type", "cosine")
    assert parse_trainer_arg("torch_compile=true") == ("torch_compile", True)
    assert parse_trainer_arg('report_to=["tensorboard"]') == ("report_to", ["tensorboard"])
    assert parse_trainer_arg("run_name=a=b") == ("run_name", "a=b")
    assert parse_trainer_arg("run_name=") == ("run_name", "")
    for bad in ("max_grad_norm", "=1"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected KEY=VALUE"):
            parse_trainer_arg(bad)


def test_cli_repeats_the_option_into_one_dict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jp_rerank.cli import EXIT_USAGE, build_parser, main
    from jp_rerank.commands.train import _options

    argv = ["train", "d.jsonl", "-o", "out", "--trainer-arg", "max_grad_norm=0.5"]
    argv += ["--trainer-arg", "lr_scheduler_type=cosine", "--trainer-arg", "max_grad_norm=1"]
    options = _options(build_parser().parse_args(argv))
    assert options["trainer_args"] == {"max_grad_norm": 1, "lr_scheduler_type": "cosine"}
    assert "trainer_args" not in _options(build_parser().parse_args(["train", "d.jsonl", "-o", "out"]))
    out = tmp_path / "out"
    data = tmp_path / "d.jsonl"
    data.write_text('{"query": "質問", "positive": "文書"}\n', encoding="utf-8")
    assert main(["train", str(data), "-o", str(out), "--trainer-arg", "learning_rate=0.1"]) == EXIT_USAGE
    assert "'learning_rate' is set by jp-rerank; use learning_rate (--lr) instead" in capsys.readouterr().err
    assert not out.exists()
