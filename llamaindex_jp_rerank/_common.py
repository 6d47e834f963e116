"""What the LlamaIndex adapters share: one configuration pattern, engine building and sharing, pickling.

The configuration pattern (every adapter of this package and of ``langchain_jp_rerank``):

- the model, first argument (``model_name`` for the embedding, ``model`` for the postprocessor, as LlamaIndex's
  ``HuggingFaceEmbedding`` / ``SentenceTransformerRerank`` call it);
- named arguments for the options those wrappers name (``device``, ``cache_folder``, ``trust_remote_code``,
  ``max_length``...) and ``preset`` (the preset a local folder is a copy of, for its prompts and limits);
- ``model_kwargs`` for every other engine argument (:class:`jp_rerank.Reranker` / :class:`jp_rerank.Embedder`);
  it also takes the named options, and a name given both ways must agree;
- or an engine passed in (``reranker=`` / ``embedder=``), whose loaded model is then used as is.

Adapters configured alike share one engine and one loaded model (:func:`jp_rerank.loading.shared_engine`), across
LlamaIndex and LangChain.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.callbacks import CallbackManager

from jp_rerank.loading import ModelHandle, engine_options, shared_engine

__all__ = ["PlainPickle", "build_engine"]

logger = logging.getLogger(__name__)
E = TypeVar("E", bound=ModelHandle)


def build_engine(
    kind: type[E],
    injected: E | None,
    model: str | os.PathLike[str] | None,
    default: str,
    options: Mapping[str, Any],
    model_kwargs: Mapping[str, Any] | None = None,
) -> E:
    """Return the injected engine, or the shared engine of ``kind`` for the model and options set.

    Options left at ``None`` are not passed, so the engine's own defaults apply; ``model_kwargs`` adds any other
    engine argument (see :func:`jp_rerank.loading.engine_options`).

    Raises:
        TypeError: If ``injected`` is not a ``kind``, or ``model_kwargs`` has a key the engine does not take.
        ValueError: If an engine is injected together with a model or engine options (they would be ignored), or
            an option is given twice with different values.
    """
    if injected is None:
        kwargs = engine_options(kind, options, model_kwargs)
        return shared_engine(kind, default if model is None else model, **kwargs)
    if not isinstance(injected, kind):
        raise TypeError(f"expected a jp_rerank.{kind.__name__}, got {type(injected).__name__}")
    given = sorted(k for k, v in options.items() if v is not None) + (["model_kwargs"] if model_kwargs else [])
    if model is not None or given:
        names = ["model"] * (model is not None) + given
        raise ValueError(f"an engine was injected, so {names} cannot be set here: configure the engine itself")
    return injected


class PlainPickle:
    """Mixin: pickle as a plain pydantic model, engine included (it pickles without its loaded model).

    LlamaIndex's ``BaseComponent`` drops attributes it cannot pickle and rebuilds the object through ``__init__``
    on unpickling, which loses the engine's options. Here nothing is dropped but a callback manager whose handlers
    cannot be pickled (replaced by an empty one, with a warning, as LlamaIndex does).
    """

    def __getstate__(self) -> dict[Any, Any]:
        state = BaseModel.__getstate__(cast(BaseModel, self))
        values = dict(state["__dict__"])
        manager = values.get("callback_manager")
        if manager is not None:
            try:
                pickle.dumps(manager)
            except Exception:  # handlers holding locks, files or sockets cannot cross a pickle
                logger.warning("%s: its callback handlers cannot be pickled; the copy has none", type(self).__name__)
                values["callback_manager"] = CallbackManager([])
        state["__dict__"] = values
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        BaseModel.__setstate__(cast(BaseModel, self), state)
