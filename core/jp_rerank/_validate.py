"""Input checks shared by the engine and the adapters (one wording for every entry point)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["check_positive_int", "check_query", "check_texts"]


def check_query(query: object, *, name: str = "query") -> str:
    """Return ``query`` if it is a non-blank string.

    Raises:
        TypeError: If it is not a ``str``.
        ValueError: If it is empty or only whitespace.

    Example:
        >>> check_query("富士山の高さ")
        '富士山の高さ'
    """
    if not isinstance(query, str):
        raise TypeError(f"{name} must be a str, got {type(query).__name__}")
    if not query.strip():
        raise ValueError(f"{name} is empty or whitespace only")
    return query


def check_texts(texts: object, *, name: str = "documents") -> list[str]:
    """Return ``texts`` as a list after checking every item is a string.

    Empty strings are allowed (they get a model score like any other text); ``None``, numbers and bytes are not.

    Raises:
        TypeError: If ``texts`` is a single string or not a sequence, or an item is not a ``str`` (names its position).

    Example:
        >>> check_texts(("a", "b"))
        ['a', 'b']
    """
    if isinstance(texts, str | bytes):
        raise TypeError(f"{name} must be a sequence of str, not a single {type(texts).__name__}")
    if not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be a sequence of str, got {type(texts).__name__}")
    items = list(texts)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(item).__name__}")
    return items


def check_positive_int(value: object, *, name: str) -> int:
    """Return ``value`` if it is a positive ``int`` (not a bool).

    Raises:
        TypeError: If it is not an int.
        ValueError: If it is not positive.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value
