"""ONNX Runtime backend: a cross-encoder exported once (fp32, plus int8), cached by :mod:`jp_rerank.rerank.exports`.

The export is made from the loaded transformers model with ``torch.onnx.export`` (eager attention, so ONNX
Runtime's transformer optimiser can fuse attention, GELU and layer norms), then ``onnxruntime.quantization``
quantises the matrix products to int8 weights with dynamic activation scales. On CPUs without VNNI the weights keep
to 7 bits (``reduce_range``, see :func:`jp_rerank.rerank.plans.int8_kernel`) with a scale per output channel, in
a file of their own (``model_int8_avx2.onnx``): on ja-ce-mini (AVX2, 8 JSQuAD questions x 50 candidates) that kept
Spearman 0.987 against torch fp32 where 7-bit per-tensor weights fell to 0.90 and 8-bit per-tensor ones gave 0.980
(``benchmarks/results/cpu_plans-avx2.md``). Nothing is downloaded. Where exports live and when they are stale:
:mod:`jp_rerank.rerank.exports`.

Example:
    >>> from jp_rerank import Reranker
    >>> sorted(Reranker("xsmall").export().files)  # doctest: +SKIP
    ['fp32', 'int8-avx2']
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank.extras import require
from jp_rerank.rerank.plans import Int8Kernel, default_threads, int8_file_key

__all__ = ["OnnxBackend", "write_onnx_export"]

logger = logging.getLogger(__name__)

_OPSET = 17
EXPORT_RECIPE = "onnx-2: fused graph, opset 17; dynamic int8, 7-bit per-channel weights without VNNI"
"""How :func:`write_onnx_export` makes exports; change it whenever that changes, so older exports are made again."""
_INT8_FILES: dict[str, str] = {"vnni": "model_int8.onnx", "avx2": "model_int8_avx2.onnx"}


class OnnxBackend:
    """Scores padded batches with an ONNX Runtime session (CPU).

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads (default: torch's thread count when torch is loaded, else the usable cores).
    """

    name = "onnx"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = frozenset(i.name for i in self.session.get_inputs())

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Return float32 logits for one padded batch."""
        feed = {k: v for k, v in inputs.items() if k in self.input_names}
        out = self.session.run(None, feed)[0]
        return np.asarray(out, dtype=np.float32)


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


def _quantize(src: Path, dst: Path, *, avx2: bool) -> None:
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
            reduce_range=avx2,
            per_channel=avx2,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)


def write_onnx_export(
    model: Any, folder: Path, *, token_types: bool, int8: bool, kernel: Int8Kernel
) -> tuple[dict[str, str], tuple[str, ...], dict[str, Any]]:
    """Export ``model`` into ``folder`` (``model.onnx``) and, with ``int8``, quantise it for ``kernel``.

    Args:
        model: The transformers sequence-classification model.
        folder: An empty folder to write into.
        token_types: Whether the model takes ``token_type_ids``.
        int8: Also write the int8 model (dynamic activation scales, int8 weights).
        kernel: The CPU's int8 kernel (:func:`jp_rerank.rerank.plans.int8_kernel`): ``"avx2"`` keeps weights
            to 7 bits.

    Returns:
        ``(files, input names, manifest extras)`` for :func:`jp_rerank.rerank.exports.build_export`.

    Raises:
        ImportError: If ``onnx`` / ``onnxruntime`` are not installed.
    """
    require("onnx", "onnx")
    ort = require("onnxruntime", "onnx")
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    _export_fp32(model, folder / "plain.onnx", input_names)
    fused = _fuse(folder / "plain.onnx", folder / "model.onnx", model.config)
    if fused:
        (folder / "plain.onnx").unlink()
    else:
        (folder / "plain.onnx").replace(folder / "model.onnx")
    files = {"fp32": "model.onnx"}
    meta: dict[str, Any] = {
        "fused": fused,
        "opset": _OPSET,
        "torch": str(sys.modules["torch"].__version__),
        "onnxruntime": str(ort.__version__),
    }
    if int8:
        avx2 = kernel == "avx2"
        _quantize(folder / "model.onnx", folder / _INT8_FILES[kernel], avx2=avx2)
        files[int8_file_key(kernel)] = _INT8_FILES[kernel]
        meta["int8"] = {"kernel": kernel, "reduce_range": avx2, "per_channel": avx2, "quantization": "dynamic int8"}
    return files, tuple(input_names), meta
