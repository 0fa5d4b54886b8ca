"""Kept so ``from tinylora.checkpoint import ...`` keeps working; see ``tinylora.io`` and
``tinylora.models``."""
from .io import (
    atomic_writer,
    load_arrays,
    load_safetensors,
    load_weights,
    save_arrays,
    save_model,
    save_safetensors,
)
from .models import load_model

__all__ = ["atomic_writer", "save_arrays", "load_arrays", "save_model", "load_model", "load_weights",
           "save_safetensors", "load_safetensors"]
