"""Making the backend of a scoring plan: the torch model itself, or an ONNX / OpenVINO export made once and cached.

One factory for every backend (:func:`make_backend`) and one way to make an export (:func:`export_model`), used
on first load and by :meth:`jp_rerank.Reranker.export` / ``jp-rerank export``. The exports' cache, lock and
crash-safe write are :mod:`jp_rerank.rerank.exports`'; how each backend writes its files is its own module's
(:mod:`~jp_rerank.rerank.onnx_backend`, :mod:`~jp_rerank.rerank.openvino_backend`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jp_rerank.loading import ModelSource
from jp_rerank.rerank.backends import ScoringBackend, TorchBackend
from jp_rerank.rerank.calibration import calibration_batches
from jp_rerank.rerank.pairs import PairEncoder
from jp_rerank.rerank.plans import Precision, ScoringPlan, int8_file_key, int8_kernel

if TYPE_CHECKING:
    from jp_rerank.rerank.exports import Export

__all__ = ["ExportKind", "ExportTarget", "export_model", "make_backend"]

logger = logging.getLogger(__name__)

ExportKind = Literal["onnx", "openvino"]
"""The backends that run an export of the model."""


@dataclass(frozen=True)
class ExportTarget:
    """Whose model an export is of: where it came from (the cache key), its local folder, and the threads to use.

    Attributes:
        source: The resolved model source.
        folder: Its local folder (the model's own or its Hugging Face snapshot), if it has one.
        num_threads: CPU threads of the export's runtime (``None``: its default).
    """

    source: ModelSource
    folder: Path | None
    num_threads: int | None


def make_backend(
    plan: ScoringPlan,
    model: Any,
    encoder: PairEncoder,
    target: ExportTarget,
    *,
    token_budget: int,
    explicit: bool,
) -> tuple[ScoringBackend, ScoringPlan]:
    """Build the backend of ``plan``; returns it with the plan that actually serves.

    An export that cannot be made or loaded (no writable folder for it, a backend error) is reported in one warning
    and torch fp32 serves instead when the plan was chosen by ``auto``; an ``explicit`` choice raises.
    """
    if plan.backend != "torch":
        try:
            return _export_backend(plan, model, encoder, target, token_budget), plan
        except (OSError, RuntimeError) as exc:
            if explicit:
                raise
            plan = ScoringPlan("torch", "fp32", f"the {plan.label} export could not be used ({exc}): torch fp32")
            logger.warning("%s: %s", target.source.model_id, plan.reason)
    precision: Precision = "fp32" if plan.precision == "int8" else plan.precision
    return TorchBackend(model, precision=precision), plan


def _export_backend(
    plan: ScoringPlan, model: Any, encoder: PairEncoder, target: ExportTarget, token_budget: int
) -> ScoringBackend:
    key = int8_file_key(int8_kernel()) if plan.precision == "int8" else "fp32"
    if plan.backend == "onnx":
        # ONNX's int8 file is a cheap by-product of its fp32 one: made together
        export = export_model("onnx", model, encoder, target, token_budget=token_budget, int8=True)
        from jp_rerank.rerank.onnx_backend import OnnxBackend

        return OnnxBackend(export.path(key), threads=target.num_threads)
    # OpenVINO's int8 file needs a calibration: made only when asked for
    export = export_model("openvino", model, encoder, target, token_budget=token_budget, int8=key != "fp32")
    from jp_rerank.rerank.openvino_backend import OpenVINOBackend

    return OpenVINOBackend(export.path(key), precision=plan.precision, threads=target.num_threads)  # type: ignore[arg-type]


def export_model(
    kind: ExportKind,
    model: Any,
    encoder: PairEncoder,
    target: ExportTarget,
    *,
    token_budget: int,
    int8: bool,
    force: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
) -> Export:
    """The cached ``kind`` export of ``model`` (fp32, plus int8 for this CPU's kernel when ``int8``), made if needed.

    Args:
        kind: ``"onnx"`` or ``"openvino"``.
        model: The torch model.
        encoder: Its pair encoder (token types; OpenVINO int8 calibrates on pairs encoded by it).
        target: Whose model it is (the cache key and its folder).
        token_budget: Tokens per calibration batch.
        int8: Also make the int8 file.
        force: Make it again even if an up-to-date export exists.
        out_dir: Folder to write instead of the default place.
    """
    from jp_rerank.rerank.exports import build_export, fingerprint

    kernel = int8_kernel()
    token_types = encoder.template.uses_token_types
    wanted = {"fp32", int8_file_key(kernel)} if int8 else {"fp32"}
    if kind == "onnx":
        from jp_rerank.rerank.onnx_backend import EXPORT_RECIPE, write_onnx_export

        def write(folder: Path) -> tuple[dict[str, str], tuple[str, ...], dict[str, Any]]:
            return write_onnx_export(model, folder, token_types=token_types, int8=int8, kernel=kernel)

    else:
        from jp_rerank.rerank.openvino_backend import EXPORT_RECIPE, write_openvino_export

        def write(folder: Path) -> tuple[dict[str, str], tuple[str, ...], dict[str, Any]]:
            pad_id = encoder.tokenizer.pad_token_id or 0
            calibration = calibration_batches(encoder.encode, pad_id, token_budget=token_budget) if int8 else []
            return write_openvino_export(
                model, folder, token_types=token_types, int8=int8, kernel=kernel, calibration=calibration
            )

    name = "ONNX" if kind == "onnx" else "OpenVINO"
    return build_export(
        target.source,
        fingerprint(target.folder, model.config),
        kind,
        write,
        wanted=wanted,
        description=f"the {name} {'int8' if int8 else 'fp32'} export of {target.source.model_id}",
        recipe=EXPORT_RECIPE,
        force=force,
        out_dir=out_dir,
    )
