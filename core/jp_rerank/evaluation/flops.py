"""How close a method comes to the machine's limit: FLOPs per pair from the model config, and peak matmul rates.

:func:`encoder_flops` counts the floating-point operations (a multiply-add is 2) of one forward pass of a
transformer encoder over ``n`` tokens, from its config: the attention projections (``8 n h²``), the attention
scores and their weighted sum (``4 n m h``, where ``m`` is the number of tokens each token attends to: ``n``, or the
local window of ModernBERT's local layers), and the feed-forward block (``4 n h i``, ``6 n h i`` for a gated one).
Embeddings, layer norms, softmax and the head are left out (a few percent). Counted over the *real* (unpadded)
token counts, it is the useful work; divided by the wall time, the achieved rate.

:func:`peak_rates` measures what this machine's matrix units reach on large square products in the same process:
fp32 and bf16 through torch (oneDNN), int8 through OpenVINO (a statically quantised matmul), so a method's
achieved GFLOP/s can be read against them.

Example:
    >>> from types import SimpleNamespace
    >>> config = SimpleNamespace(model_type="bert", hidden_size=384, num_hidden_layers=6, intermediate_size=1536)
    >>> round(encoder_flops(config, 128) / 1e9, 2)
    2.87
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["encoder_flops", "peak_rates", "total_flops"]

logger = logging.getLogger(__name__)


def _layer_window(config: Any, layer: int, n: int) -> int:
    """How many tokens each token attends to in ``layer`` (ModernBERT's local layers see a window)."""
    if getattr(config, "model_type", "") != "modernbert":
        return n
    every = int(getattr(config, "global_attn_every_n_layers", 1) or 1)
    if layer % every == 0:
        return n
    window = int(getattr(config, "local_attention", n) or n)
    return min(n, window + 1)


def encoder_flops(config: Any, n_tokens: int) -> float:
    """FLOPs of one encoder forward pass over ``n_tokens`` tokens (see the module notes).

    Args:
        config: A transformers config (``hidden_size``, ``num_hidden_layers``, ``intermediate_size``).
        n_tokens: Tokens in the input (a pair's full length, special tokens included).

    Returns:
        The count, as a float.
    """
    h = int(config.hidden_size)
    i = int(config.intermediate_size)
    layers = int(config.num_hidden_layers)
    n = int(n_tokens)
    gated = getattr(config, "model_type", "") == "modernbert"  # GeGLU: the input projection makes 2 i features
    ffn = (6 if gated else 4) * n * h * i
    total = 0.0
    for layer in range(layers):
        m = _layer_window(config, layer, n)
        total += 8 * n * h * h + 4 * n * m * h + ffn
    return float(total)


def total_flops(config: Any, lengths: Iterable[int]) -> float:
    """FLOPs of scoring inputs of the given token lengths (each one forward pass, unpadded)."""
    return float(sum(encoder_flops(config, n) for n in lengths))


def _best_rate(run: Callable[[], object], flops: float, repeats: int) -> float:
    run()  # warm up (kernel selection, caches)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return flops / best / 1e9


def _torch_rate(dtype_name: str, size: int, repeats: int) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    with torch.inference_mode():
        return _best_rate(lambda: a @ b, 2.0 * size**3, repeats)


def _openvino_int8_rate(size: int, repeats: int, threads: int | None) -> float:
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([size, size], np.float32, name="x")
    lo, hi = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
    quantized_x = ops.fake_quantize(x, lo, hi, lo, hi, 256)
    rng = np.random.default_rng(0)
    weights = ops.constant(rng.integers(-127, 127, (size, size), dtype=np.int8))
    dequantized = ops.multiply(ops.convert(weights, np.float32), ops.constant(np.float32(0.01)))
    model = ov.Model([ops.matmul(quantized_x, dequantized, False, True)], [x])
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    data = rng.standard_normal((size, size), dtype=np.float32)
    return _best_rate(lambda: request.infer({0: data}), 2.0 * size**3, repeats)


def peak_rates(
    *, size: int = 2048, repeats: int = 5, with_bf16: bool = True, with_int8: bool = True, threads: int | None = None
) -> dict[str, float]:
    """Best GFLOP/s (GOP/s for int8) of large square matrix products on this machine, per precision.

    Args:
        size: Side of the square matrices.
        repeats: Timed products per precision (the best one counts).
        with_bf16: Also measure bf16 (emulated, hence slow, on CPUs without native bf16).
        with_int8: Also measure int8 (needs OpenVINO; left out when it is not installed).
        threads: Threads for OpenVINO (torch uses its own setting).

    Returns:
        ``{"fp32": ..., "bf16": ..., "int8": ...}`` for what could be measured.
    """
    rates = {"fp32": round(_torch_rate("float32", size, repeats), 1)}
    if with_bf16:
        rates["bf16"] = round(_torch_rate("bfloat16", size, repeats), 1)
    if with_int8:
        try:
            rates["int8"] = round(_openvino_int8_rate(size, repeats, threads), 1)
        except ImportError:
            logger.info("OpenVINO is not installed: no int8 peak")
    return rates
