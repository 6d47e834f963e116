"""Subcommands of the ``jp-rerank`` command line, one module each (registered in :mod:`jp_rerank.cli`)."""
