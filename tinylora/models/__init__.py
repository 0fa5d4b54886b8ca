"""The models: each reads top to bottom in one file, with Hugging Face's parameter names.

``load_model(path)`` rebuilds whichever model a checkpoint (``tinylora.io.save_model``) holds.

>>> import tempfile, os
>>> from tinylora.io import save_model
>>> model = GPT(GPTConfig.preset("nano"))
>>> path = os.path.join(tempfile.mkdtemp(), "nano.npz")
>>> save_model(model, path)
>>> load_model(path).config == model.config
True
"""
from __future__ import annotations

import os

from ..io import load_arrays
from ..nn import no_init
from .generation import generate
from .gpt import GPT, GPTConfig
from .kv_cache import KVCache
from .llama import Llama, LlamaConfig

# checkpoint's "model" field -> (model class, config class)
MODELS = {"GPT": (GPT, GPTConfig), "Llama": (Llama, LlamaConfig)}

__all__ = ["GPT", "GPTConfig", "Llama", "LlamaConfig", "KVCache", "generate", "MODELS", "load_model"]


def load_model(path, device: str = "cpu", with_metadata: bool = False):
    """Rebuild the model saved at ``path``; optionally also return its metadata dict."""
    arrays, config, metadata = load_arrays(path)
    name = config.pop("model", None)
    if name not in MODELS:
        raise ValueError(f"{os.fspath(path)!r} holds no known model "
                         f"(model {name!r}; known: {sorted(MODELS)})")
    model_cls, config_cls = MODELS[name]
    with no_init():  # every weight comes from the file
        model = model_cls(config_cls(**config), seed=None)
    model.load_state_dict(arrays)
    if device != "cpu":
        model.to(device)
    return (model, metadata) if with_metadata else model
