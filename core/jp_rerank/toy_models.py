"""Deprecated: use :mod:`jp_rerank.testing` (same builders; this alias goes in the next release)."""

from __future__ import annotations

import warnings

from jp_rerank.testing import *  # noqa: F403
from jp_rerank.testing import __all__  # noqa: F401

warnings.warn("jp_rerank.toy_models is deprecated; import jp_rerank.testing instead", DeprecationWarning, stacklevel=2)
