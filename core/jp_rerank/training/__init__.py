"""Fine-tune a Japanese cross-encoder reranker on your own (question, passage) data.

:func:`train` turns JSONL, a BEIR folder or CSV into a standard sentence-transformers ``CrossEncoder`` folder,
with hard negatives mined by our own first stage (Japanese BM25, dense, or hybrid), a held-out split scored
before and after training, resumable checkpoints, a wall-clock budget and a model card. The command line
equivalent is ``jp-rerank train``. Importing this package does not import torch.

Example:
    >>> from jp_rerank.training import TrainingSet, split_heldout
    >>> ts = TrainingSet.from_pairs([(f"質問{i}", f"文書{i}") for i in range(10)])
    >>> [len(part.queries) for part in split_heldout(ts, 2)]
    [8, 2]
    >>> from jp_rerank.training import train
    >>> result = train("pairs.jsonl", "my-reranker", base="xsmall", time_budget=1800)  # doctest: +SKIP
"""

from __future__ import annotations

from jp_rerank.errors import TrainingDataError
from jp_rerank.training.config import TrainConfig, TrainResult
from jp_rerank.training.heldout import HeldOut, split_heldout
from jp_rerank.training.mining import CorpusSearcher, MiningStats, mine_hard_negatives
from jp_rerank.training.model import BaseInfo
from jp_rerank.training.readers import load_corpus, load_training_data
from jp_rerank.training.trainer import train
from jp_rerank.training.trainingset import TrainingSet, TrainQuery, save_jsonl

__all__ = [
    "BaseInfo",
    "CorpusSearcher",
    "HeldOut",
    "MiningStats",
    "TrainConfig",
    "TrainQuery",
    "TrainResult",
    "TrainingDataError",
    "TrainingSet",
    "load_corpus",
    "load_training_data",
    "mine_hard_negatives",
    "save_jsonl",
    "split_heldout",
    "train",
]
