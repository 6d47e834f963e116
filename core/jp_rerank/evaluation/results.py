"""The record of one evaluation run (:class:`EvalResult`) and its JSON file format.

A result file is one JSON object::

    {"schema": "jp-rerank/eval-result", "schema_version": 1, "name": ..., "setting": "rerank",
     "models": {...}, "settings": {...}, "dataset": {...}, "metrics": {...}, "timing": {...},
     "hardware": {...}, "version": "0.1.0", "timestamp": "2025-01-01T00:00:00+00:00"}

The run itself and per-query scores stay in memory (:attr:`EvalResult.run`, :attr:`EvalResult.per_query`)
and are not written: they are large and easy to recompute.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

from jp_rerank.hardware import MachineInfo

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "DatasetStats",
    "EvalResult",
    "Setting",
    "Timing",
    "load_result",
    "load_results",
    "save_result",
    "utc_timestamp",
]

SCHEMA = "jp-rerank/eval-result"
SCHEMA_VERSION = 1

Setting = Literal["retrieval", "rerank"]
"""``retrieval``: every query searched against the whole corpus; ``rerank``: fixed candidates per query."""


def _build(cls: type[Any], data: object, what: str) -> Any:
    """Build a numeric record dataclass from a JSON object, checking required fields and number types."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {type(data).__name__}")
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    missing = required - data.keys()
    if missing:
        raise ValueError(f"{what} lacks {sorted(missing)}")
    values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
    for key, value in values.items():
        if key != "name" and value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{what} field {key!r} must be a number, got {value!r}")
    return cls(**values)


@dataclass(frozen=True)
class DatasetStats:
    """Size of what was evaluated.

    Attributes:
        name: Dataset name.
        n_queries: Queries run (those with judgements count in the metrics).
        n_passages: Corpus size (retrieval) or distinct candidate passages (rerank).
        mean_passage_chars: Mean characters per passage: as fed to the model (rerank), or of the passage text
            without title (retrieval).
        mean_query_chars: Mean characters per query.
        mean_candidates: Mean candidates per query (rerank only).

    Example:
        >>> DatasetStats("jqara", 2, 10, 120.5, 20.0, 5.0).n_passages
        10
    """

    name: str
    n_queries: int
    n_passages: int
    mean_passage_chars: float
    mean_query_chars: float
    mean_candidates: float | None = None


@dataclass(frozen=True)
class Timing:
    """Time spent inside the model callables (search or scoring), excluding data loading and metrics.

    Attributes:
        seconds: Total wall-clock seconds in the callables.
        queries: Queries processed.
        pairs: Query–passage pairs scored (rerank); ``None`` for retrieval.
        median_query_ms: Median milliseconds per query (per call in rerank; batch time ÷ batch size in
            retrieval).

    Example:
        >>> Timing(seconds=2.0, queries=10, pairs=1000).pairs_per_second
        500.0
    """

    seconds: float
    queries: int
    pairs: int | None = None
    median_query_ms: float | None = None

    @property
    def queries_per_second(self) -> float:
        """Queries per second (``inf`` when no time was measured)."""
        return self.queries / self.seconds if self.seconds > 0 else math.inf

    @property
    def pairs_per_second(self) -> float | None:
        """Pairs per second, or ``None`` when pairs are not counted (retrieval)."""
        if self.pairs is None:
            return None
        return self.pairs / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (throughputs included for readers; ignored when loading)."""
        out = asdict(self)
        out["queries_per_second"] = _finite_or_none(self.queries_per_second)
        out["pairs_per_second"] = _finite_or_none(self.pairs_per_second)
        return out


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def utc_timestamp() -> str:
    """Return the current UTC time as ISO 8601 with seconds, e.g. ``2025-01-01T12:00:00+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class EvalResult:
    """One evaluation run: what was run, on what, how well and how fast.

    Attributes:
        name: Label used in tables and plots.
        setting: ``"retrieval"`` or ``"rerank"``.
        models: Role → model id, e.g. ``{"retriever": "bm25-mecab", "reranker": "ruri-reranker-small"}``.
        settings: Run parameters (k, candidate depth, batch size, ...); JSON values only.
        dataset: What was evaluated.
        metrics: Metric name → mean score (see :func:`jp_rerank.evaluation.metrics.evaluate`).
        timing: Time in the model callables.
        hardware: Machine facts.
        version: jp-rerank version.
        timestamp: When the run finished (UTC, ISO 8601).
        run: The ranked results (query id → {passage id → score}); in memory only, not saved.
        per_query: Query id → {metric → score}; in memory only, not saved.

    Example:
        >>> from jp_rerank.hardware import MachineInfo
        >>> result = EvalResult(
        ...     name="bm25", setting="retrieval", models={"retriever": "bm25"}, settings={"k": 100},
        ...     dataset=DatasetStats("tiny", 1, 3, 10.0, 5.0), metrics={"ndcg@10": 1.0},
        ...     timing=Timing(0.5, 1), hardware=MachineInfo("cpu", 2, 2), version="0.1.0",
        ...     timestamp="2025-01-01T00:00:00+00:00",
        ... )
        >>> EvalResult.from_dict(result.to_dict()) == result
        True
    """

    name: str
    setting: Setting
    models: dict[str, str]
    settings: dict[str, Any]
    dataset: DatasetStats
    metrics: dict[str, float]
    timing: Timing
    hardware: MachineInfo
    version: str
    timestamp: str
    run: dict[str, dict[str, float]] | None = field(default=None, compare=False, repr=False)
    per_query: dict[str, dict[str, float]] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready record (without :attr:`run` and :attr:`per_query`)."""
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "setting": self.setting,
            "models": dict(self.models),
            "settings": dict(self.settings),
            "dataset": asdict(self.dataset),
            "metrics": dict(self.metrics),
            "timing": self.timing.to_dict(),
            "hardware": self.hardware.to_dict(),
            "version": self.version,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        """Rebuild a result from :meth:`to_dict` output.

        Raises:
            ValueError: If ``data`` is not a result record, comes from a newer schema, or lacks a field.
        """
        if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"not a jp-rerank evaluation result (schema {found!r}, expected {SCHEMA!r})")
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(
                f"result schema_version {version!r} is not supported (this version reads <= {SCHEMA_VERSION})"
            )
        required = ("name", "setting", "models", "settings", "dataset", "metrics", "timing", "hardware")
        missing = [key for key in (*required, "version", "timestamp") if key not in data]
        if missing:
            raise ValueError(f"result lacks {missing}")
        if data["setting"] not in get_args(Setting):
            raise ValueError(f"result setting {data['setting']!r} is not one of {get_args(Setting)}")
        timing = data["timing"]
        if not isinstance(timing, Mapping):
            raise ValueError("result timing must be a JSON object")
        hardware = data["hardware"]
        if not isinstance(hardware, Mapping):
            raise ValueError("result hardware must be a JSON object")
        metrics = data["metrics"]
        if not isinstance(metrics, Mapping) or not all(isinstance(v, int | float) for v in metrics.values()):
            raise ValueError("result metrics must map metric names to numbers")
        return cls(
            name=str(data["name"]),
            setting=data["setting"],
            models={str(k): str(v) for k, v in dict(data["models"]).items()},
            settings=dict(data["settings"]),
            dataset=_build(DatasetStats, data["dataset"], "result dataset"),
            metrics={str(k): float(v) for k, v in metrics.items()},
            timing=_build(Timing, timing, "result timing"),
            hardware=MachineInfo.from_dict(dict(hardware)),
            version=str(data["version"]),
            timestamp=str(data["timestamp"]),
        )


def save_result(result: EvalResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as a JSON file (UTF-8, indented), atomically (temporary file + rename).

    Args:
        result: The result to write.
        path: Target file; parent folders are created.

    Returns:
        The file path.

    Raises:
        ValueError: If ``result.settings`` holds values JSON cannot represent.

    Example:
        >>> save_result(result, "results/bm25.json")  # doctest: +SKIP
    """
    target = Path(path)
    try:
        text = json.dumps(result.to_dict(), ensure_ascii=False, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"result {result.name!r} cannot be written as JSON: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_result(path: str | os.PathLike[str]) -> EvalResult:
    """Read one result file written by :func:`save_result`.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not valid JSON or not a result record (the message names the file).
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"evaluation result file not found: {source}")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: not a UTF-8 text file") from exc
    try:
        return EvalResult.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{source}: {exc}") from exc


def load_results(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[EvalResult]:
    """Read result files; a folder stands for every ``*.json`` in it (sorted by name).

    Args:
        paths: One path or several; files and folders may be mixed.

    Returns:
        The results, in the order given.

    Raises:
        FileNotFoundError: If a path does not exist.
        ValueError: If a file is not a result, or nothing was found.

    Example:
        >>> results = load_results(["results/"])  # doctest: +SKIP
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.json"))
            if not found:
                raise ValueError(f"no *.json result files in {p}")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"evaluation result file not found: {p}")
    if not files:
        raise ValueError("no result files given")
    return [load_result(f) for f in files]
