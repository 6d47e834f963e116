"""Input checks shared by the engine and the adapters (one wording for every entry point; public API).

Besides type and emptiness checks, this module holds the resource caps every model-backed engine applies before
doing any model work: at most :data:`DEFAULT_MAX_DOCUMENTS` texts per call and :data:`DEFAULT_MAX_CHARS`
characters per text unless the engine is built with other ``max_documents`` / ``max_chars`` values (``None``
removes a cap).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from jp_rerank.types import Metadata, MetadataValue

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_DOCUMENTS",
    "NFKC_MAX_EXPANSION",
    "check_ids",
    "check_k",
    "check_metadata",
    "check_metadata_value",
    "check_metadatas",
    "check_optional_positive_int",
    "check_pairs",
    "check_positive_int",
    "check_query",
    "check_texts",
    "check_where",
    "is_blank",
    "storable_metadata",
    "too_many_error",
]

DEFAULT_MAX_DOCUMENTS = 100_000
"""Default cap on the texts one engine call accepts (all queries' passages together)."""

DEFAULT_MAX_CHARS = 1_000_000
"""Default cap on the characters of one text (query or passage) an engine accepts."""

# Lone UTF-16 surrogates (e.g. from ``json.loads('"\\ud800"')``) are not text: they cannot be encoded as UTF-8,
# so tokenizers, JSON files and Chroma all reject them with obscure errors. They are refused up front instead.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


# Characters that normalisation removes or that render as nothing: controls (Cc), format characters (Cf: U+200B
# zero-width space, U+FEFF BOM, U+2060 word joiner, U+00AD soft hyphen...), and the other default-ignorable code
# points (variation selectors, Hangul fillers, Mongolian free variation selectors, tags).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf"})
_IGNORABLE_RE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0000-\U000e0fff]"
)

NFKC_MAX_EXPANSION = 18
"""Most characters NFKC makes of one character (U+FDFA); texts shorter than ``max_chars / 18`` cannot exceed it."""


def is_blank(text: str) -> bool:
    r"""Whether ``text`` holds nothing a model could read: only whitespace, control and format characters.

    That is what is left of it after :func:`jp_rerank.text.normalize_text` plus the characters that render as
    nothing (zero-width space, BOM, word joiner, soft hyphen, variation selectors...).

    Example:
        >>> is_blank("\u200b\ufeff \x00"), is_blank("富士山")
        (True, False)
    """
    return all(
        char.isspace() or unicodedata.category(char) in _INVISIBLE_CATEGORIES or _IGNORABLE_RE.match(char) is not None
        for char in text
    )


def _surrogate_error(text: str, name: str) -> ValueError:
    found = _SURROGATE_RE.search(text)
    assert found is not None
    return ValueError(
        f"{name} contains a lone surrogate U+{ord(found.group()):04X} at character {found.start()}, which is "
        "not valid Unicode text; decode the source with errors='replace' (or clean it) first"
    )


def _too_long(text: str, name: str, max_chars: int, owner: str) -> ValueError:
    hint = f"split it first (jp_rerank.text.chunk_text) or raise the cap with {owner}(max_chars=...) (None removes it)"
    if len(text) > max_chars:
        return ValueError(f"{name} has {len(text)} characters, over the cap max_chars={max_chars}; {hint}")
    expanded = len(unicodedata.normalize("NFKC", text))
    return ValueError(
        f"{name} has {len(text)} characters but {expanded} after NFKC normalisation, over the cap "
        f"max_chars={max_chars}; {hint}"
    )


def too_many_error(count: int, max_documents: int, *, name: str = "documents", owner: str = "Reranker") -> ValueError:
    """The error of a call holding more texts than an engine's ``max_documents`` cap (raised by the caller).

    Example:
        >>> too_many_error(6, 5)
        ValueError('6 documents in one call is over the cap max_documents=5; send fewer per call or raise the cap \
with Reranker(max_documents=...) (None removes it)')
    """
    return ValueError(
        f"{count} {name} in one call is over the cap max_documents={max_documents}; send fewer per call or raise the "
        f"cap with {owner}(max_documents=...) (None removes it)"
    )


def check_query(
    query: object, *, name: str = "query", max_chars: int | None = None, nfkc: bool = False, owner: str = "Reranker"
) -> str:
    r"""Return ``query`` if it is a non-blank string of valid Unicode within the ``max_chars`` cap.

    A query of only control, format or other invisible characters (``"\x00"``, ``"\u200b"``, ``"\ufeff"``...)
    is blank too: normalisation leaves nothing of it, so scoring it would rank passages by noise.

    Args:
        query: The query.
        name: Argument name used in error messages.
        max_chars: Most characters accepted (``None``: no cap).
        nfkc: The engine NFKC-normalises texts: the cap then also holds after normalisation, which can make one
            character into up to 18 (U+FDFA).
        owner: Engine class named in the hint on how to raise the cap.

    Raises:
        TypeError: If it is not a ``str``.
        ValueError: If it is empty, only whitespace or only invisible characters (see :func:`is_blank`), holds a
            lone surrogate, or is longer than ``max_chars`` before or (with ``nfkc``) after normalisation.

    Example:
        >>> check_query("富士山の高さ")
        '富士山の高さ'
        >>> check_query("\u200b")
        Traceback (most recent call last):
        ...
        ValueError: query is empty or whitespace only once control and format characters (e.g. U+200B) are removed
    """
    text = check_texts([query], name=name, max_chars=max_chars, nfkc=nfkc, owner=owner, one=True)[0]
    if not text.strip():
        raise ValueError(f"{name} is empty or whitespace only")
    # printable text without ignorable characters holds a visible one: the per-character look only for the rest
    if (not text.isprintable() or _IGNORABLE_RE.search(text) is not None) and is_blank(text):
        raise ValueError(
            f"{name} is empty or whitespace only once control and format characters (e.g. U+200B) are removed"
        )
    return text


def check_pairs(pairs: object, *, name: str = "pairs") -> dict[str, list[tuple[int, str]]]:
    """Check ``(query, passage)`` pairs and group them by query: ``{query: [(position, passage), ...]}``.

    Raises:
        TypeError: Not a sequence, an item that is not a two-item tuple or list, or a non-string text (names its
            position).
        ValueError: A text holding a lone surrogate (names its position).

    Example:
        >>> check_pairs([("q1", "a"), ("q2", "b"), ("q1", "c")])
        {'q1': [(0, 'a'), (2, 'c')], 'q2': [(1, 'b')]}
    """
    if isinstance(pairs, str | bytes | Mapping) or not isinstance(pairs, Iterable):
        raise TypeError(f"{name} must be a sequence of (query, passage) pairs, got {type(pairs).__name__}")
    groups: dict[str, list[tuple[int, str]]] = {}
    for i, pair in enumerate(pairs):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(f"{name}[{i}] must be a (query, passage) pair, got {pair!r:.40}")
        query, passage = check_texts(pair, name=f"{name}[{i}]")
        groups.setdefault(query, []).append((i, passage))
    return groups


def check_texts(
    texts: object,
    *,
    name: str = "documents",
    max_documents: int | None = None,
    max_chars: int | None = None,
    nfkc: bool = False,
    owner: str = "Reranker",
    one: bool = False,
) -> list[str]:
    """Return ``texts`` as a list after checking every item is a string of valid Unicode, within the caps.

    Empty strings are allowed (they get a model score like any other text); ``None``, numbers and bytes are not,
    and neither are strings holding lone surrogates (not encodable as UTF-8). A mapping or a pandas ``DataFrame``
    is refused although it is iterable: iterating it gives its keys or column names, not its texts.

    Args:
        texts: The texts.
        name: Argument name used in error messages.
        max_documents: Most texts accepted (``None``: no cap).
        max_chars: Most characters accepted in one text (``None``: no cap).
        nfkc: The engine NFKC-normalises texts: the cap then also holds after normalisation, which can make one
            character into up to 18 (U+FDFA). Only texts longer than ``max_chars / 18`` are normalised to check it.
        owner: Engine class named in the hint on how to raise a cap.
        one: ``texts`` holds one argument's value: messages name it ``name``, without a position.

    Raises:
        TypeError: If ``texts`` is a single string, a mapping, a DataFrame or not a sequence, or an item is not a
            ``str`` (names its position).
        ValueError: If an item holds a lone surrogate, there are more than ``max_documents`` texts or one is longer
            than ``max_chars`` before or (with ``nfkc``) after normalisation (names its position, its length, the cap
            and how to raise it).

    Example:
        >>> check_texts(("a", "b"))
        ['a', 'b']
        >>> check_texts({"d1": "a"})
        Traceback (most recent call last):
        ...
        TypeError: documents must be a sequence of str, got a dict (iterating it gives its keys); pass \
list(d.values()) or the texts themselves
    """
    if isinstance(texts, str | bytes):
        raise TypeError(f"{name} must be a sequence of str, not a single {type(texts).__name__}")
    if isinstance(texts, Mapping):
        raise TypeError(
            f"{name} must be a sequence of str, got a {type(texts).__name__} (iterating it gives its keys); pass "
            "list(d.values()) or the texts themselves"
        )
    kind = type(texts)
    if kind.__name__ == "DataFrame" and kind.__module__.split(".")[0] in ("pandas", "modin", "dask"):
        raise TypeError(
            f"{name} must be a sequence of str, got a pandas DataFrame (iterating it gives its column names); pass "
            "one column, e.g. df['text'].tolist()"
        )
    if not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be a sequence of str, got {type(texts).__name__}")
    items = list(texts)
    if max_documents is not None and len(items) > max_documents:
        raise too_many_error(len(items), max_documents, name=name, owner=owner)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name if one else f'{name}[{i}]'} must be a str, got {type(item).__name__}")
        if _SURROGATE_RE.search(item) is not None:
            raise _surrogate_error(item, name if one else f"{name}[{i}]")
        if max_chars is not None and (
            len(item) > max_chars
            or (
                nfkc
                and len(item) * NFKC_MAX_EXPANSION > max_chars
                and len(unicodedata.normalize("NFKC", item)) > max_chars
            )
        ):
            raise _too_long(item, name if one else f"{name}[{i}]", max_chars, owner)
    return items


def check_positive_int(value: object, *, name: str) -> int:
    """Return ``value`` if it is a positive ``int`` (not a bool).

    Raises:
        TypeError: If it is not an int.
        ValueError: If it is not positive.

    Example:
        >>> check_positive_int(8, name="batch_size")
        8
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def check_optional_positive_int(value: object, *, name: str) -> int | None:
    """Return ``value`` if it is ``None`` or a positive ``int`` (for caps where ``None`` means "no cap").

    Raises:
        TypeError: If it is neither ``None`` nor an int.
        ValueError: If it is not positive.

    Example:
        >>> check_optional_positive_int(None, name="max_chars") is None
        True
    """
    return None if value is None else check_positive_int(value, name=name)


def check_k(k: object) -> int:
    """Return ``k`` if it is a positive int (numpy integers accepted).

    Raises:
        TypeError: If it is not an integer.
        ValueError: If it is zero or negative.

    Example:
        >>> check_k(10)
        10
    """
    if not isinstance(k, bool) and hasattr(k, "__index__") and not isinstance(k, int):
        k = k.__index__()  # numpy integers
    return check_positive_int(k, name="k")


def check_ids(ids: object, *, name: str = "ids") -> list[str]:
    """Return ``ids`` as a list of non-empty strings with no repeats.

    Raises:
        TypeError: If ``ids`` is a single string or an item is not a ``str``.
        ValueError: If an id is empty or repeated.

    Example:
        >>> check_ids(("a", "b"))
        ['a', 'b']
    """
    items = check_texts(ids, name=name)
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not item:
            raise ValueError(f"{name}[{i}] is an empty string")
        if item in seen:
            raise ValueError(f"{name} contains {item!r} more than once (at position {i})")
        seen.add(item)
    return items


def check_metadata_value(key: str, value: object, *, name: str) -> MetadataValue:
    """Return ``value`` if it is a storable metadata value (``str``, ``int``, finite ``float``, ``bool``).

    Raises:
        TypeError: If the value has another type (``None``, lists, dicts...).
        ValueError: If it is a NaN or infinite float.
    """
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name}[{key!r}] is {value}; metadata floats must be finite")
        return value
    raise TypeError(f"{name}[{key!r}] must be str, int, float or bool, got {type(value).__name__}")


def storable_metadata(metadata: Mapping[str, object] | None, *, name: str = "metadata") -> Metadata:
    """What an index stores of a caller's metadata: scalars as they are, anything else as its JSON text.

    ``str``, ``int``, finite ``float`` and ``bool`` values are kept; every other value (lists, dicts, ``None``,
    NaN...) becomes its JSON text (keys sorted, non-ASCII kept). The one rule of every entry point that takes
    free-form metadata (``jp-rerank index``, the Ray index job, the LangChain retriever); the caller's mapping is
    not modified.

    Raises:
        TypeError: If ``metadata`` is not a mapping, or a value cannot be written as JSON (e.g. it contains itself).

    Example:
        >>> storable_metadata({"title": "富士山", "tags": ["山"], "page": 3})
        {'title': '富士山', 'tags': '["山"]', 'page': 3}
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(metadata).__name__}")
    out: dict[str, MetadataValue] = {}
    for key, value in metadata.items():
        if isinstance(value, bool | str | int) or (isinstance(value, float) and math.isfinite(value)):
            out[key] = value
            continue
        try:
            out[key] = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        except (TypeError, ValueError) as exc:  # e.g. a structure that contains itself
            raise TypeError(f"{name}[{key!r}] cannot be stored: {exc}") from exc
    return out


def check_metadata(metadata: object, *, name: str = "metadata") -> Metadata:
    """Return a checked shallow copy of one metadata mapping (``None`` means ``{}``).

    Raises:
        TypeError: If it is not a mapping, a key is not a ``str`` or a value has an unsupported type.
        ValueError: If a key is empty or a float value is not finite.

    Example:
        >>> check_metadata({"lang": "ja", "year": 2024})
        {'lang': 'ja', 'year': 2024}
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(metadata).__name__}")
    out: Metadata = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{name} keys must be non-empty str, got {key!r}")
        out[key] = check_metadata_value(key, value, name=name)
    return out


def check_metadatas(metadatas: Sequence[Mapping[str, MetadataValue] | None] | None, n: int) -> list[Metadata]:
    """Check and copy one flat metadata mapping per passage (the vector indexes' rules; ``None`` → ``{}``).

    Raises:
        TypeError: Not a sequence of mappings, or a key/value of an unsupported type.
        ValueError: A length other than ``n``, an empty key or a non-finite float.
    """
    if metadatas is None:
        return [{} for _ in range(n)]
    if isinstance(metadatas, Mapping) or not isinstance(metadatas, Sequence):
        raise TypeError("metadatas must be a sequence with one mapping per text, not a single mapping")
    if len(metadatas) != n:
        raise ValueError(f"got {n} texts but {len(metadatas)} metadatas")
    return [check_metadata(meta, name=f"metadatas[{i}]") for i, meta in enumerate(metadatas)]


def check_where(where: object) -> dict[str, MetadataValue] | None:
    """Return a checked copy of an equality filter, or ``None`` for no filter.

    Raises:
        TypeError: If it is not a mapping of str keys to metadata values.
        ValueError: If a key is empty or a float value is not finite.

    Example:
        >>> check_where({"lang": "ja"})
        {'lang': 'ja'}
    """
    if where is None:
        return None
    return check_metadata(where, name="where")
