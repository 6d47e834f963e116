"""OpenVINO Runtime backend: a cross-encoder converted once from PyTorch, fp32 and int8, cached beside the model.

The conversion runs ``openvino.convert_model`` on the loaded transformers model (no ONNX step), so the graph is
the model's own. The int8 file is quantised by NNCF *statically*: activations and weights of the matrix products
in int8, with ranges calibrated on Japanese (question, passage) pairs built from the bundled demo corpus and encoded
exactly as the reranker encodes its inputs; ``model_type=TRANSFORMER`` keeps layer norms, softmax and GELU in float.
Static int8 needs no runtime range estimation and uses the CPU's integer units (AVX-512 VNNI / AVX-VNNI /
AMX-INT8 when present, AVX2 otherwise).

At run time OpenVINO is told the precision of the non-quantised parts explicitly (``INFERENCE_PRECISION_HINT``):
by default it would run them in bf16 on CPUs with native bf16, which is fast but not what ``"fp32"`` promises.

Example:
    >>> from jp_rerank import Reranker
    >>> Reranker("xsmall", backend="openvino", precision="fp32").scoring_plan.label  # doctest: +SKIP
    'openvino-fp32'
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from jp_rerank.extras import require
from jp_rerank.rerank.plans import Int8Kernel, default_threads, int8_file_key

__all__ = ["OpenVINOBackend", "OpenVINOPrecision", "write_openvino_export"]

logger = logging.getLogger(__name__)

OpenVINOPrecision = Literal["fp32", "bf16", "int8"]
"""Precisions the OpenVINO backend runs: fp32 and bf16 from the same converted model, int8 from its own file."""

_FILES = {"fp32": "model.xml"}
_EAGER_ATTENTION = frozenset({"modernbert"})
EXPORT_RECIPE = "openvino-2: eager attention for ModernBERT; NNCF static int8, overflow fix without VNNI"
"""How :func:`write_openvino_export` makes exports; change it whenever that changes, so older exports are made
again."""
"""Architectures converted with eager attention. ModernBERT's sdpa path gets a boolean sliding-window mask with the
padding on the key side only: a padding *query* row more than half a window past its pair's last real token may
attend to no key, which PyTorch turns into zeros but OpenVINO's SDPA into NaN (0/0) that then spreads through
``0 x NaN``. Eager attention adds the mask's float32 minimum instead: such a row is uniform, finite in fp32."""
_INT8_FILES: dict[str, str] = {"vnni": "model_int8.xml", "avx2": "model_int8_avx2.xml"}


class OpenVINOBackend:
    """Scores padded batches with an OpenVINO compiled model on the CPU.

    Args:
        path: The ``.xml`` file (its ``.bin`` beside it).
        precision: ``"fp32"`` (everything float32), ``"bf16"`` (float parts in bf16; CPUs with native bf16) or
            ``"int8"`` (the quantised file; its float parts in float32).
        threads: Inference threads (default: torch's thread count when torch is loaded, else the usable cores).
    """

    name = "openvino"

    def __init__(
        self, path: str | os.PathLike[str], *, precision: OpenVINOPrecision, threads: int | None = None
    ) -> None:
        ov = require("openvino", "openvino")
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": threads or default_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.input_names = frozenset(name for port in self.compiled.inputs for name in port.get_names())
        self.precision: OpenVINOPrecision = precision

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Return float32 logits for one padded batch."""
        feed = {k: v for k, v in inputs.items() if k in self.input_names}
        out = self.compiled(feed)[0]
        return np.asarray(out, dtype=np.float32)


def _example_inputs(input_names: list[str]) -> dict[str, Any]:
    import torch

    example = {name: torch.ones(2, 16, dtype=torch.long) for name in input_names}
    if "token_type_ids" in example:
        example["token_type_ids"] = torch.zeros(2, 16, dtype=torch.long)
    return example


def write_openvino_export(
    model: Any,
    folder: Path,
    *,
    token_types: bool,
    int8: bool,
    kernel: Int8Kernel,
    calibration: Sequence[dict[str, np.ndarray]] = (),
) -> tuple[dict[str, str], tuple[str, ...], dict[str, Any]]:
    """Convert ``model`` into ``folder`` (``model.xml``) and, with ``int8``, quantise it (``model_int8*.xml``).

    Args:
        model: The transformers sequence-classification model.
        folder: An empty folder to write into.
        token_types: Whether the model takes ``token_type_ids``.
        int8: Also write the statically quantised int8 model.
        kernel: The CPU's int8 kernel (:func:`jp_rerank.rerank.plans.int8_kernel`): ``"avx2"`` applies NNCF's
            overflow fix to every layer (7-bit weights), ``"vnni"`` only to the first (NNCF's default).
        calibration: Padded batches (``input_ids``, ``attention_mask`` [, ``token_type_ids``]) as the reranker
            feeds them, for the int8 ranges.

    Returns:
        ``(files, input names, manifest extras)`` for :func:`jp_rerank.rerank.exports.build_export`.

    Raises:
        ImportError: If ``openvino`` (or, for int8, ``nncf``) is not installed.
        ValueError: If int8 is asked for without calibration batches.
    """
    ov = require("openvino", "openvino")
    import torch

    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    eager = copy.deepcopy(model).to("cpu").float().eval()
    if getattr(model.config, "model_type", "") in _EAGER_ATTENTION:
        eager.set_attn_implementation("eager")
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        converted = ov.convert_model(eager, example_input=_example_inputs(input_names))
    for port, name in zip(converted.inputs, input_names, strict=True):
        port.get_tensor().set_names({name})
    ov.save_model(converted, str(folder / _FILES["fp32"]), compress_to_fp16=False)
    files = {"fp32": _FILES["fp32"]}
    meta: dict[str, Any] = {"openvino": str(ov.__version__), "torch": str(torch.__version__)}
    if int8:
        nncf = require("nncf", "openvino")
        if not calibration:
            raise ValueError("int8 quantisation needs calibration batches")
        batches = [{k: v for k, v in b.items() if k in input_names} for b in calibration]
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # NNCF reports progress through the root logger and rich bars
        try:
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

            overflow = OverflowFix.ENABLE if kernel == "avx2" else OverflowFix.FIRST_LAYER
            quantized = nncf.quantize(
                converted,
                nncf.Dataset(batches),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(batches),
                advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow),
            )
        finally:
            root.setLevel(level)
        ov.save_model(quantized, str(folder / _INT8_FILES[kernel]), compress_to_fp16=False)
        files[int8_file_key(kernel)] = _INT8_FILES[kernel]
        meta.update(
            nncf=str(nncf.__version__),
            calibration_batches=len(batches),
            int8={"kernel": kernel, "overflow_fix": overflow.value, "quantization": "static int8"},
        )
    return files, tuple(input_names), meta
