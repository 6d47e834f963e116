"""``python -m jp_rerank``: the command line (the same as the ``jp-rerank`` script)."""

from __future__ import annotations

from jp_rerank.cli import main

raise SystemExit(main())
