"""What the LlamaIndex adapters share: one configuration pattern, engine building and sharing, pickling.

The configuration pattern (every adapter of this package and of ``langchain_jp_rerank``):

- the model, first argument (``model_name`` for the embedding, ``model`` for the postprocessor, as LlamaIndex's
  ``HuggingFaceEmbedding`` / ``SentenceTransformerRerank`` call it);
- named arguments for the options those wrappers name (``device``, ``cache_folder``, ``trust_remote_code``,
  ``max_length``...) and ``preset`` (the preset a local folder is a copy of, for its prompts and limits);
- ``model_kwargs`` for every other engine argument (:class:`jp_rerank.Reranker` / :class:`jp_rerank.Embedder`);
  it also takes the named options, and a name given both ways must agree;
- or an engine passed in (``reranker=`` / ``embedder=``), whose loaded model is then used as is.

Adapters configured alike share one engine and one loaded model (:func:`jp_rerank.engines.shared_engine`), across
LlamaIndex and LangChain.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any, cast

from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.callbacks import CallbackManager

__all__ = ["PlainPickle"]

logger = logging.getLogger(__name__)


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
