"""Deprecated: dataset loaders moved to :mod:`jp_rerank.evaluation.datasets` (removed in the next release)."""

from __future__ import annotations

from jp_rerank._deprecation import moved

__getattr__ = moved(
    __name__,
    {
        name: f"jp_rerank.evaluation.datasets:{name}"
        for name in (
            "DATA_ENV",
            "BeirDataset",
            "DatasetUnavailableError",
            "default_data_dir",
            "jacwir_from_rows",
            "jqara_from_rows",
            "load_beir",
            "load_jacwir",
            "load_jqara",
            "save_beir",
        )
    },
)
