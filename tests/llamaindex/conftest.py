"""Nodes and instrumentation events shared by the LlamaIndex adapter tests (engines: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.schema import TextNode


@pytest.fixture
def corpus_nodes(demo_corpus: list[dict[str, str]]) -> list[TextNode]:
    """The demo corpus as TextNodes with the passage id as node id and the title as metadata."""
    return [TextNode(id_=d["id"], text=d["text"], metadata={"title": d["title"]}) for d in demo_corpus]


class _Collect(BaseEventHandler):
    events: list[Any] = Field(default_factory=list)

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.fixture
def instrument_events() -> Iterator[list[Any]]:
    """Events seen by LlamaIndex's root instrumentation dispatcher during the test."""
    handler = _Collect()
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        yield handler.events
    finally:
        root.event_handlers.remove(handler)
