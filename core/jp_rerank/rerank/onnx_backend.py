"""ONNX Runtime backend: export a cross-encoder once, optionally quantise it to int8, cache it beside the model.

The export is made from the loaded transformers model with ``torch.onnx.export`` (eager attention, so ONNX
Runtime's transformer optimiser can fuse attention, GELU and layer norms), then ``onnxruntime.quantization``
quantises the matrix products to int8 weights with dynamic activation scales. Nothing is downloaded.

Where exports go: ``<model folder>/onnx/`` for a writable local folder, else
``$JP_RERANK_CACHE/onnx/<model>`` (default ``~/.cache/jp-rerank``). A ``manifest.json`` records the model's
fingerprint (config and weight files); a changed model makes the export stale and it is not used.

Example:
    >>> from jp_rerank import Reranker
    >>> sorted(Reranker("xsmall").export().files)
    ['fp32', 'int8']
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from jp_rerank._deprecation import moved
from jp_rerank._version import __version__
from jp_rerank.extras import require
from jp_rerank.loading import ModelSource
from jp_rerank.rerank.backends import pad_batch
from jp_rerank.rerank.pairs import EncodedPair

__all__ = [
    "CACHE_ENV",
    "MANIFEST",
    "OnnxBackend",
    "OnnxExport",
    "export_dir",
    "export_model",
    "find_export",
    "fingerprint",
]

logger = logging.getLogger(__name__)

__getattr__ = moved(__name__, {"export_reranker": "jp_rerank.rerank.cross_encoder:export_reranker"})

CACHE_ENV = "JP_RERANK_CACHE"
"""Environment variable naming jp-rerank's cache folder (default ``~/.cache/jp-rerank``)."""

MANIFEST = "manifest.json"
"""Name of the file describing an export."""

OnnxPrecision = Literal["fp32", "int8"]

_FORMAT = 1
_OPSET = 17
_FILES: dict[str, str] = {"fp32": "model.onnx", "int8": "model_int8.onnx"}


@dataclass(frozen=True)
class OnnxExport:
    """An ONNX export on disk.

    Attributes:
        directory: Folder holding the files and ``manifest.json``.
        files: Precision → file name inside ``directory`` (``"fp32"`` always, ``"int8"`` when quantised).
        inputs: Model input names, e.g. ``("input_ids", "attention_mask")``.
        fingerprint: Fingerprint of the model it was made from.
        fused: Whether ONNX Runtime's transformer optimiser fused attention/GELU/layer norms.
    """

    directory: Path
    files: dict[str, str] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    fingerprint: str = ""
    fused: bool = False

    def path(self, precision: OnnxPrecision) -> Path:
        """Path of the file of one precision.

        Raises:
            FileNotFoundError: If this export has no file of that precision.
        """
        name = self.files.get(precision)
        if name is None or not (self.directory / name).is_file():
            raise FileNotFoundError(f"the ONNX export in {self.directory} has no {precision} model")
        return self.directory / name


class OnnxBackend:
    """Scores padded batches with an ONNX Runtime session (CPU).

    Args:
        path: The ``.onnx`` file.
        pad_id: The tokenizer's padding id.
        threads: Intra-op threads (default: torch's thread count when torch is loaded, else the usable cores).
    """

    name = "onnx"

    def __init__(self, path: str | os.PathLike[str], pad_id: int, *, threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or _default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = frozenset(i.name for i in self.session.get_inputs())
        self.pad_id = pad_id

    def logits(self, batch: Sequence[EncodedPair]) -> np.ndarray:
        """Return float32 logits for one batch."""
        arrays = pad_batch(batch, self.pad_id)
        feed = {k: v for k, v in arrays.items() if k in self.input_names}
        out = self.session.run(None, feed)[0]
        return np.asarray(out, dtype=np.float32)


def _default_threads() -> int:
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "jp-rerank").expanduser()


def _slug(text: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip("/"))
    return safe[-80:] or "model"


def export_dir(source: ModelSource) -> Path:
    """Folder where exports of ``source`` are kept: ``<folder>/onnx`` if writable, else the jp-rerank cache.

    Example:
        >>> from jp_rerank.loading import resolve_model
        >>> export_dir(resolve_model("xsmall")).name
        'hotchpotch--japanese-reranker-cross-encoder-xsmall-v1'
    """
    if source.is_local:
        folder = Path(source.location)
        if os.access(folder, os.W_OK):
            return folder / "onnx"
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
        return _cache_root() / "onnx" / f"{_slug(folder.name)}-{digest}"
    return _cache_root() / "onnx" / source.model_id.replace("/", "--")


def fingerprint(source: ModelSource, model: Any) -> str:
    """Identify the weights an export was made from (config, plus weight file sizes/times or the hub commit)."""
    digest = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    digest.update(str(getattr(model.config, "_commit_hash", "") or "").encode())
    if source.is_local:
        folder = Path(source.location)
        for path in sorted(folder.glob("*")):
            if path.suffix in {".safetensors", ".bin", ".pt"} and path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def _read_manifest(directory: Path) -> OnnxExport | None:
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return None
    return OnnxExport(
        directory=directory,
        files={str(k): str(v) for k, v in dict(data.get("files", {})).items()},
        inputs=tuple(data.get("inputs", ())),
        fingerprint=str(data.get("fingerprint", "")),
        fused=bool(data.get("fused", False)),
    )


def find_export(source: ModelSource, model: Any, precision: OnnxPrecision = "int8") -> OnnxExport | None:
    """Return the cached export of this model with a file of ``precision``, or ``None`` (missing or stale)."""
    found = _read_manifest(export_dir(source))
    if found is None or precision not in found.files or not (found.directory / found.files[precision]).is_file():
        return None
    if found.fingerprint != fingerprint(source, model):
        logger.warning("the ONNX export in %s was made from other weights; it is ignored", found.directory)
        return None
    return found


def _export_fp32(model: Any, path: Path, input_names: list[str]) -> None:
    import torch

    eager = copy.deepcopy(model).to("cpu").float().eval()
    eager.set_attn_implementation("eager")  # eager attention traces to patterns ONNX Runtime can fuse
    example = {name: torch.ones(2, 16, dtype=torch.long) for name in input_names}
    if "token_type_ids" in example:
        example["token_type_ids"] = torch.zeros(2, 16, dtype=torch.long)
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            eager,
            (),
            str(path),
            kwargs=example,
            input_names=input_names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=_OPSET,
            dynamo=False,
        )


def _fuse(src: Path, dst: Path, config: Any) -> bool:
    """Run ONNX Runtime's transformer optimiser (attention/GELU/layer-norm fusion); ``False`` if it cannot."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimized = optimize_model(
                str(src),
                model_type="bert",
                num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size),
            )
            optimized.save_model_to_file(str(dst))
    except Exception as exc:  # the optimiser's pattern matching is best effort; the plain graph is correct
        logger.info("ONNX Runtime's transformer optimiser did not apply (%s); keeping the plain export", exc)
        return False
    return True


def _quantize(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a pre-processing hint through the root logger
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)


def _write_export(model: Any, work: Path, input_names: list[str], *, int8: bool) -> tuple[dict[str, str], bool]:
    _export_fp32(model, work / "plain.onnx", input_names)
    fused = _fuse(work / "plain.onnx", work / _FILES["fp32"], model.config)
    if fused:
        (work / "plain.onnx").unlink()
    else:
        (work / "plain.onnx").replace(work / _FILES["fp32"])
    files = {"fp32": _FILES["fp32"]}
    if int8:
        _quantize(work / _FILES["fp32"], work / _FILES["int8"])
        files["int8"] = _FILES["int8"]
    return files, fused


def export_model(
    source: ModelSource,
    model: Any,
    *,
    token_types: bool,
    int8: bool = True,
    force: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
) -> OnnxExport:
    """Export a loaded sequence-classification model (see :func:`export_reranker`).

    Args:
        source: Where the model came from (decides the cache folder and the fingerprint).
        model: The transformers model.
        token_types: Whether the model takes ``token_type_ids``.
        int8: Also write the int8 dynamically quantised model.
        force: Export again even if an up-to-date export exists.
        out_dir: Folder to write instead of :func:`export_dir`.

    Returns:
        The export.
    """
    require("onnx", "onnx")
    ort = require("onnxruntime", "onnx")
    target = Path(out_dir) if out_dir is not None else export_dir(source)
    model_fp = fingerprint(source, model)
    existing = _read_manifest(target)
    wanted = {"fp32", "int8"} if int8 else {"fp32"}
    if (
        not force
        and existing is not None
        and existing.fingerprint == model_fp
        and wanted <= set(existing.files)
        and all((target / existing.files[p]).is_file() for p in wanted)
    ):
        logger.info("reusing the ONNX export in %s", target)
        return existing
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".onnx-export-", dir=target.parent))
    try:
        logger.info("exporting %s to ONNX in %s", source.model_id, target)
        files, fused = _write_export(model, work, input_names, int8=int8)
        manifest = {
            "format": _FORMAT,
            "model_id": source.model_id,
            "fingerprint": model_fp,
            "files": files,
            "inputs": input_names,
            "fused": fused,
            "opset": _OPSET,
            "jp_rerank": __version__,
            "torch": str(sys.modules["torch"].__version__),
            "onnxruntime": str(ort.__version__),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    found = _read_manifest(target)
    if found is None:  # pragma: no cover - just written
        raise OSError(f"could not read back the ONNX export in {target}")
    return found
