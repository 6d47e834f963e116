"""The state of a BM25 index (immutable arrays) and how it is saved and read back as a snapshot.

A saved BM25 index is a :mod:`jp_rerank.snapshots` folder whose snapshot holds:

* ``docs.jsonl``: one ``{"id", "text", "metadata"}`` object per document, in index order;
* ``vocab.json``: the tokens, by token id;
* ``arrays.npz``: the document token ids and the BM25 weight matrix (CSC arrays), no pickle.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank._version import __version__
from jp_rerank.checks import check_metadata
from jp_rerank.errors import IndexCorruptedError, IndexMismatchError
from jp_rerank.snapshots import CURRENT_FILE, read_snapshot, write_snapshot
from jp_rerank.types import Metadata

__all__ = ["BACKEND", "BM25State", "empty_state", "read_state", "write_state"]

logger = logging.getLogger(__name__)

BACKEND = "bm25"
"""Backend name in the snapshot manifest."""

_FORMAT_VERSION = 2
_DOCS, _VOCAB, _ARRAYS = "docs.jsonl", "vocab.json", "arrays.npz"


@dataclass(frozen=True)
class BM25State:
    """An immutable snapshot of a BM25 index; writers replace it whole so readers never see a half update."""

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    metadatas: tuple[Metadata, ...]
    vocab: dict[str, int]
    doc_offsets: np.ndarray  # int64, len n_docs + 1: document i's token ids are doc_tokens[o[i]:o[i+1]]
    doc_tokens: np.ndarray  # int32 token ids
    data: np.ndarray  # float32 BM25 weights, column-major by token (CSC)
    indices: np.ndarray  # int32 document index of each weight
    indptr: np.ndarray  # int64, len vocab + 1: token t's weights are data[indptr[t]:indptr[t+1]]


def empty_state() -> BM25State:
    """The state of an index with no documents."""
    return BM25State(
        ids=(),
        texts=(),
        metadatas=(),
        vocab={},
        doc_offsets=np.zeros(1, dtype=np.int64),
        doc_tokens=np.zeros(0, dtype=np.int32),
        data=np.zeros(0, dtype=np.float32),
        indices=np.zeros(0, dtype=np.int32),
        indptr=np.zeros(1, dtype=np.int64),
    )


def _replaceable(target: Path) -> bool:
    """Whether a save may write into ``target``: an empty folder, or a snapshot folder of a BM25 index."""
    if not target.is_dir():
        return False
    if not any(target.iterdir()):
        return True
    if not (target / CURRENT_FILE).is_file():
        return False
    try:
        _, manifest = read_snapshot(target, verify=False)
    except IndexCorruptedError:
        return True  # a damaged snapshot folder: replacing it is how it gets repaired
    return manifest.get("backend") == BACKEND


def write_state(target: Path, state: BM25State, settings: Mapping[str, Any]) -> Path:
    """Save ``state`` with the index's ``settings`` (tokenizer, k1, b, method...) as a snapshot in ``target``.

    Returns:
        The snapshot folder.

    Raises:
        FileExistsError: If ``target`` exists and is not an empty folder or a saved BM25 index.
    """
    if target.exists() and not _replaceable(target):
        raise FileExistsError(f"{target} exists and is not a saved BM25 index; refusing to overwrite it")
    manifest = {
        "backend": BACKEND,
        "bm25_format_version": _FORMAT_VERSION,
        "count": len(state.ids),
        **settings,
        "num_docs": len(state.ids),
        "vocabulary_size": len(state.vocab),
    }

    def write_payload(folder: Path) -> None:
        vocab_list = sorted(state.vocab, key=state.vocab.__getitem__)
        with (folder / _DOCS).open("w", encoding="utf-8", newline="\n") as fh:
            for doc_id, text, meta in zip(state.ids, state.texts, state.metadatas, strict=True):
                fh.write(json.dumps({"id": doc_id, "text": text, "metadata": meta}, ensure_ascii=False) + "\n")
        (folder / _VOCAB).write_text(json.dumps(vocab_list, ensure_ascii=False), encoding="utf-8")
        with (folder / _ARRAYS).open("wb") as fh:
            np.savez(
                fh,
                doc_offsets=state.doc_offsets,
                doc_tokens=state.doc_tokens,
                data=state.data,
                indices=state.indices,
                indptr=state.indptr,
            )

    return write_snapshot(target, manifest, write_payload)


def _read_docs(snapshot: Path) -> tuple[tuple[str, ...], tuple[str, ...], tuple[Metadata, ...]]:
    ids: list[str] = []
    texts: list[str] = []
    metas: list[Metadata] = []
    with (snapshot / _DOCS).open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("text"), str):
                raise IndexCorruptedError(f"{_DOCS} line {line_no} is not a valid record")
            ids.append(row["id"])
            texts.append(row["text"])
            metas.append(check_metadata(row.get("metadata"), name=f"metadata of {_DOCS} line {line_no}"))
    return tuple(ids), tuple(texts), tuple(metas)


def read_state(root: Path, *, verify: bool = True) -> tuple[BM25State, dict[str, Any]]:
    """Read a saved BM25 index: its state and its manifest (the settings it was built with).

    Raises:
        FileNotFoundError: If ``root`` is not a saved index.
        IndexMismatchError: If it holds another kind of index or an unsupported BM25 format version.
        IndexCorruptedError: If a file is missing, truncated, altered or inconsistent.
    """
    snapshot, manifest = read_snapshot(root, verify=verify)
    version = manifest.get("bm25_format_version")
    if manifest.get("backend") != BACKEND or version != _FORMAT_VERSION:
        raise IndexMismatchError(
            f"{root} holds a {manifest.get('backend')!r} index of BM25 format version {version!r}; "
            f"this jp-rerank reads {BACKEND!r} version {_FORMAT_VERSION}"
        )
    if manifest.get("jp_rerank_version") != __version__:
        saved = manifest.get("jp_rerank_version")
        logger.warning("BM25 index %s was saved by jp-rerank %s, loading with %s", root, saved, __version__)
    try:
        ids, texts, metas = _read_docs(snapshot)
        vocab_list = json.loads((snapshot / _VOCAB).read_text(encoding="utf-8"))
        with np.load(snapshot / _ARRAYS, allow_pickle=False) as arrays:
            state = BM25State(
                ids=ids,
                texts=texts,
                metadatas=metas,
                vocab={token: i for i, token in enumerate(vocab_list)},
                doc_offsets=arrays["doc_offsets"].astype(np.int64),
                doc_tokens=arrays["doc_tokens"].astype(np.int32),
                data=arrays["data"].astype(np.float32),
                indices=arrays["indices"].astype(np.int32),
                indptr=arrays["indptr"].astype(np.int64),
            )
    except IndexCorruptedError:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:  # ValueError: bad JSON, a pickle
        raise IndexCorruptedError(f"{root}: cannot read the BM25 files of {snapshot.name}: {exc}") from exc
    _check_state(root, state, manifest)
    return state, manifest


def _check_state(root: Path, state: BM25State, manifest: Mapping[str, Any]) -> None:
    n_docs, n_vocab = len(state.ids), len(state.vocab)
    problems = []
    if n_docs != manifest.get("num_docs") or len(state.doc_offsets) != n_docs + 1:
        problems.append("document count")
    if n_vocab != manifest.get("vocabulary_size") or len(state.indptr) != n_vocab + 1:
        problems.append("vocabulary size")
    if int(state.doc_offsets[-1]) != len(state.doc_tokens) or int(state.indptr[-1]) != len(state.data):
        problems.append("array lengths")
    if len(state.indices) != len(state.data) or len(set(state.ids)) != n_docs:
        problems.append("postings or ids")
    if state.indices.size and (state.indices.min() < 0 or state.indices.max() >= n_docs):
        problems.append("document indices")
    if problems:
        raise IndexCorruptedError(f"{root}: saved BM25 index is inconsistent ({', '.join(problems)})")
